"""Colour-cast rate: the share of images whose overall colour no real photo would have.

Each image is summarised by six numbers, the mean and standard deviation of each RGB
channel (in [0, 1]). A Gaussian fitted to these statistics of real photos defines a
Mahalanobis ellipse; its radius is the ``coverage`` quantile (99% by default) of the
real photos' own distances. A generated image outside the ellipse has a colour balance or
contrast that fewer than 1% of real photos have — the green, blue or magenta faces of a
sampler that saturates — so real photos score about 1% and a tinted copy of them close
to 100%. The statistic is deliberately crude: it sees global colour, not faces, which is
what FID in a face-feature space can miss.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from facediff.evaluation.maths import check_reference

DEFAULT_COVERAGE = 0.99


def colour_statistics(images: torch.Tensor) -> np.ndarray:
    """Per-image ``[mean R, mean G, mean B, std R, std G, std B]`` of uint8 N×3×H×W images."""
    if images.ndim != 4 or images.shape[1] != 3:
        raise ValueError("images must be N×3×H×W")
    x = images.detach().to("cpu", torch.float64).flatten(2) / 255.0
    return torch.cat([x.mean(dim=2), x.std(dim=2)], dim=1).numpy()


def _mahalanobis(stats: np.ndarray, mean: np.ndarray, inv_cov: np.ndarray) -> np.ndarray:
    d = stats - mean
    return np.sqrt(np.einsum("ni,ij,nj->n", d, inv_cov, d).clip(min=0))


@dataclass(frozen=True)
class ColourReference:
    """The real photos' colour statistics: mean, inverse covariance and ellipse radius."""

    mean: np.ndarray  # [6]
    inv_cov: np.ndarray  # [6, 6]
    radius: float  # Mahalanobis distance that holds ``coverage`` of the real photos
    coverage: float

    def distances(self, images: torch.Tensor) -> np.ndarray:
        return _mahalanobis(colour_statistics(images), self.mean, self.inv_cov)

    def cast_rate(self, images: torch.Tensor) -> float:
        """Share of ``images`` outside the real photos' ellipse (nan for no images)."""
        if images.shape[0] == 0:
            return float("nan")
        return float((self.distances(images) > self.radius).mean())

    def mean_rgb(self) -> tuple[float, float, float]:
        """The real photos' mean colour in 0..255 (for reports)."""
        return tuple(float(v * 255.0) for v in self.mean[:3])  # type: ignore[return-value]


def fit_colour_reference(real: torch.Tensor, coverage: float = DEFAULT_COVERAGE) -> ColourReference:
    """Fit the ellipse to uint8 real photos (at least 8, so the covariance is defined)."""
    check_reference(real.shape[0], coverage, "colour")
    stats = colour_statistics(real)
    mean = stats.mean(axis=0)
    # A small ridge keeps the inverse finite for flat synthetic images (zero variance).
    cov = np.cov(stats, rowvar=False) + np.eye(stats.shape[1]) * 1e-8
    inv_cov = np.linalg.inv(cov)
    radius = float(np.quantile(_mahalanobis(stats, mean, inv_cov), coverage))
    return ColourReference(mean=mean, inv_cov=inv_cov, radius=radius, coverage=coverage)


def mean_rgb(images: torch.Tensor) -> tuple[float, float, float]:
    """Mean pixel colour of uint8 images, 0..255 per channel."""
    m = images.detach().to("cpu", torch.float64).mean(dim=(0, 2, 3))
    return tuple(float(v) for v in m)  # type: ignore[return-value]
