"""Preview grids during training: a few EMA samples per category on fixed seeds.

A quick deterministic sampler (DDIM, Song et al. 2021, arXiv:2010.02502, ~20 steps) with
classifier-free guidance against the null class (Ho & Salimans 2022, arXiv:2207.12598):
ε = ε(x, ∅) + s·(ε(x, c) − ε(x, ∅)). One row per category, fixed noise, so successive
previews of a run are directly comparable.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from diffusers import DDIMScheduler
from PIL import Image

from facediff.device import autocast
from facediff.files import atomic_path

PREVIEW_SEED = 1234


@torch.no_grad()
def sample_preview(
    unet: torch.nn.Module,
    scheduler_config: dict[str, Any],
    *,
    num_categories: int,
    columns: int,
    size: int,
    steps: int,
    guidance: float,
    device: torch.device,
    dtype: torch.dtype,
) -> torch.Tensor:
    """uint8 images (num_categories·columns)×3×size×size, category-major."""
    sched = DDIMScheduler(**scheduler_config)
    sched.set_timesteps(steps)
    n = num_categories * columns
    g = torch.Generator().manual_seed(PREVIEW_SEED)
    noise = torch.randn(columns, 3, size, size, generator=g)
    x = noise.repeat(num_categories, 1, 1, 1).to(device)
    labels = torch.arange(num_categories).repeat_interleave(columns).to(device)
    both = torch.cat([labels, torch.full_like(labels, num_categories)])
    for t in sched.timesteps:
        with autocast(device, dtype):
            out = unet(torch.cat([x, x]), t.to(device), both, return_dict=False)[0]
        cond, uncond = out.float().chunk(2)
        x = sched.step(uncond + guidance * (cond - uncond), t, x).prev_sample
    return ((x.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).cpu()[:n]


def save_grid(images: torch.Tensor, rows: int, path: Path) -> Path:
    """Tile N×3×S×S uint8 images into ``rows`` rows with a 2-px gap; write a PNG atomically."""
    n, _, s, _ = images.shape
    cols = n // rows
    pad = 2
    canvas = np.full((rows * (s + pad) + pad, cols * (s + pad) + pad, 3), 255, np.uint8)
    arr = images.permute(0, 2, 3, 1).numpy()
    for i in range(n):
        r, c = divmod(i, cols)
        y, x = pad + r * (s + pad), pad + c * (s + pad)
        canvas[y : y + s, x : x + s] = arr[i]
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        Image.fromarray(canvas).save(tmp, format="PNG")
    return path
