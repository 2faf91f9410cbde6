"""Colour-cast rate: the share of images whose overall colour no real photo would have.

Each image is summarised by six numbers, the mean and standard deviation of each RGB
channel (in [0, 1]). A Gaussian fitted to these statistics of real photos defines a
Mahalanobis ellipse; its radius is the ``coverage`` quantile (99% by default) of the
real photos' own distances. A generated image outside the ellipse has a colour balance or
contrast that fewer than 1% of real photos have — the green, blue or magenta faces of a
sampler that saturates — so real photos score about 1% and a tinted copy of them close
to 100%. The statistic is deliberately crude: it sees global colour, not faces, which is
what FID in a face-feature space can miss.

The cast rate judges each image alone, so it misses a tint that every image shares but
no image overdoes: all backgrounds a little green, every face a little magenta. The
*colour shift* judges the set: the distance between the samples' average statistics and
the average of the photos of the same categories (for a mix, the mix's weighted average
of its categories'), in units of how much photos of one category vary (the pooled
within-category covariance, whitened). On UTKFace at 64×64 (``benchmarks/colour_shift.py``)
the three categories' photos lie 0.49–0.58 apart in these units; 100 unseen photos of a
category lie 0.22–0.24 from the rest of it (the median of 200 draws; about √(6/n) for n
photos), while the same photos blended 5% towards green, blue or magenta lie 1.4–1.7 away
and their cast rate stays at 1–2%. The *variety* is the set's own spread in the same
units: about 1 for photos, well under for samples whose backgrounds and skins all look
alike.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from facediff.evaluation.maths import check_reference

DEFAULT_COVERAGE = 0.99
#: The 99.9% quantile of χ² with 6 degrees of freedom: n·shift² of n photos drawn from a
#: category follows it by chance (Hotelling), so shifts within √(22.46/n) are noise.
SHIFT_CHANCE_CHI2 = 22.458
#: The shift above which a set is called tinted, when it is also beyond chance: about twice
#: as far as UTKFace's categories lie apart (0.49–0.58), where every photo blended 3%
#: towards green, blue or magenta lands (``benchmarks/colour_shift.py``).
SHIFT_WARNING = 1.0


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
    return colour_reference_from_statistics(colour_statistics(real), coverage)


def colour_reference_from_statistics(
    stats: np.ndarray, coverage: float = DEFAULT_COVERAGE
) -> ColourReference:
    """:func:`fit_colour_reference` from the photos' :func:`colour_statistics`."""
    check_reference(stats.shape[0], coverage, "colour")
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


@dataclass(frozen=True)
class ShiftReference:
    """The photos' average colour statistics per category and their within-category spread."""

    means: np.ndarray  # [K, 6]; a category without photos has a row of nan
    counts: np.ndarray  # [K] photos per category
    whiten: np.ndarray  # [6, 6]: inverse Cholesky factor of the pooled within-category cov

    def _difference(self, images: torch.Tensor, weights: dict[int, float]) -> np.ndarray:
        """The images' average statistics less the photos' for the mix ``weights``."""
        expected = sum(w * self.means[i] for i, w in weights.items())
        return colour_statistics(images).mean(axis=0) - expected

    def shift(self, images: torch.Tensor, weights: dict[int, float]) -> float:
        """Distance of ``images``' average statistics from the photos' for the mix
        ``weights`` (``{category index: weight}``); nan without images or without photos
        of a category in the mix."""
        if images.shape[0] == 0:
            return float("nan")
        return float(np.linalg.norm(self.whiten @ self._difference(images, weights)))

    def tint(self, images: torch.Tensor, weights: dict[int, float]) -> list[float]:
        """Signed per-channel difference of the average colour, 0..255 (e.g. ``[-67, 20,
        11]``: less red, more green and blue than the photos)."""
        if images.shape[0] == 0:
            return [float("nan")] * 3
        return [float(v * 255.0) for v in self._difference(images, weights)[:3]]

    def variety(self, images: torch.Tensor) -> float:
        """How much the images' colour statistics vary from one image to the next, in the
        same units (the root mean variance): photos of one category score about 1, samples
        whose backgrounds and skins all look alike much less; nan for fewer than 2 images."""
        if images.shape[0] < 2:
            return float("nan")
        z = colour_statistics(images) @ self.whiten.T
        return float(np.sqrt(np.trace(np.cov(z, rowvar=False)) / z.shape[1]))

    def chance(self, n: int, weights: dict[int, float]) -> float:
        """The shift that ``n`` photos drawn like the reference exceed by chance only
        0.1% of the time (the reference's own sampling error included)."""
        if n == 0:
            return float("nan")
        ref = sum(w * w / self.counts[i] for i, w in weights.items() if self.counts[i] > 0)
        return float(np.sqrt(SHIFT_CHANCE_CHI2 * (1.0 / n + ref)))


def shifted(shift: float | None, chance: float | None) -> bool:
    """Whether a set's colour shift is both large (> :data:`SHIFT_WARNING`) and beyond
    chance for its size."""
    if shift is None or chance is None:
        return False
    return shift > max(SHIFT_WARNING, chance)


def fit_shift_reference(
    real: torch.Tensor, labels: torch.Tensor, categories: int
) -> ShiftReference | None:
    """Fit per-category averages and the pooled within-category covariance to uint8 photos;
    None for fewer than 7 more photos than categories (the covariance is then undefined)."""
    return shift_reference_from_statistics(colour_statistics(real), labels, categories)


def shift_reference_from_statistics(
    stats: np.ndarray, labels: torch.Tensor, categories: int
) -> ShiftReference | None:
    """:func:`fit_shift_reference` from the photos' :func:`colour_statistics`."""
    present = torch.unique(labels).numel()
    if stats.shape[0] < present + 7:
        return None
    lab = labels.cpu().numpy()
    means = np.full((categories, stats.shape[1]), np.nan)
    counts = np.zeros(categories, dtype=np.int64)
    scatter = np.zeros((stats.shape[1], stats.shape[1]))
    for k in range(categories):
        rows = stats[lab == k]
        counts[k] = len(rows)
        if len(rows):
            means[k] = rows.mean(axis=0)
            centred = rows - means[k]
            scatter += centred.T @ centred
    cov = scatter / (len(stats) - present) + np.eye(stats.shape[1]) * 1e-8
    whiten = np.linalg.inv(np.linalg.cholesky(cov))
    return ShiftReference(means=means, counts=counts, whiten=whiten)
