"""Preview grids during training: a few EMA samples per category on fixed seeds.

Sampled by :func:`facediff.generation.generate` (DDIM, Song et al. 2021,
arXiv:2010.02502, ~20 steps, classifier-free guidance against the null class). Column
*j* uses seed ``PREVIEW_SEED + j`` in every row, so successive previews of a run, and
the rows of one preview, are directly comparable.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from facediff.attributes import AttributeSet
from facediff.config import SampleConfig
from facediff.files import save_image_atomic
from facediff.generation import Denoiser, generate
from facediff.mix import Mix

PREVIEW_SEED = 1234


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
    attributes: AttributeSet | None = None,
) -> torch.Tensor:
    """uint8 images (num_categories·columns)×3×size×size, category-major. A model with
    ``attributes`` is sampled with every attribute free (its null): the rows are the
    categories alone."""
    den = Denoiser(
        net=unet,
        module=unet,
        device=device,
        dtype=next(unet.parameters()).dtype,
        scheduler_config=dict(scheduler_config),
        null_label=num_categories,
        sample_size=size,
        compiled=False,
        attributes=attributes or AttributeSet(),
    )
    config = SampleConfig(sampler="ddim", steps=steps, guidance=guidance, batch_size=columns)
    seeds = [PREVIEW_SEED + j for j in range(columns)]
    rows = [generate(den, Mix(str(k), (k,), (1.0,)), seeds, config) for k in range(num_categories)]
    return torch.cat(rows)


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
    save_image_atomic(Image.fromarray(canvas), path)
    return path
