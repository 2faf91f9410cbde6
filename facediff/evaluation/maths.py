"""Pure metric functions used by ``facediff evaluate`` (no I/O, no models).

Features are ``N×D`` float tensors or arrays. Distances are computed with torch in
float64 (so they run on the GPU when the inputs live there, and TF32 matmuls cannot blur
near-duplicates: ``cdist`` expands ||a−b||² = ||a||² + ||b||² − 2aᵀb, which loses
precision for close pairs of long vectors); statistics use float64 numpy.
"""

from __future__ import annotations

import math

import numpy as np
import torch


def _np64(x: torch.Tensor | np.ndarray) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        x = x.detach().to("cpu", torch.float64).numpy()
    return np.asarray(x, dtype=np.float64)


def _sqrtm_psd(a: np.ndarray) -> np.ndarray:
    """Square root of a symmetric positive semi-definite matrix (eigen-decomposition)."""
    vals, vecs = np.linalg.eigh((a + a.T) / 2)
    return (vecs * np.sqrt(np.clip(vals, 0, None))) @ vecs.T


def frechet_distance_from_stats(
    mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray
) -> float:
    """Fréchet distance between two Gaussians (Dowson & Landau 1982; FID, Heusel et al. 2017).

    d² = ||μ1 − μ2||² + Tr(Σ1 + Σ2 − 2 (Σ1 Σ2)^½). The trace of (Σ1 Σ2)^½ is computed as the
    sum of square roots of the eigenvalues of Σ1^½ Σ2 Σ1^½, which is symmetric PSD, so no
    complex arithmetic or ill-conditioned ``sqrtm`` of a non-symmetric product is needed.
    """
    mu1, mu2 = np.atleast_1d(mu1), np.atleast_1d(mu2)
    sigma1, sigma2 = np.atleast_2d(sigma1), np.atleast_2d(sigma2)
    s1 = _sqrtm_psd(sigma1)
    eig = np.linalg.eigvalsh(s1 @ sigma2 @ s1)
    tr_covmean = float(np.sqrt(np.clip(eig, 0, None)).sum())
    diff = mu1 - mu2
    d = float(diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2 * tr_covmean)
    return max(d, 0.0)


def gaussian_stats(feats: torch.Tensor | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and (unbiased) covariance of features, in float64."""
    x = _np64(feats)
    if x.shape[0] < 2:
        raise ValueError("need at least 2 feature vectors for a covariance")
    return x.mean(axis=0), np.cov(x, rowvar=False)


def frechet_distance(a: torch.Tensor | np.ndarray, b: torch.Tensor | np.ndarray) -> float:
    """Fréchet distance between Gaussians fitted to two feature sets (FID when the features
    are Inception-v3 pool features). Biased upward for small sets (Bińkowski et al. 2018)."""
    return frechet_distance_from_stats(*gaussian_stats(a), *gaussian_stats(b))


def _poly_kernel(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    return (x @ y.T / x.shape[1] + 1.0) ** 3


def mmd2_unbiased(x: np.ndarray, y: np.ndarray) -> float:
    """Unbiased MMD² with the cubic polynomial kernel k(a,b) = (aᵀb/d + 1)³."""
    m, n = x.shape[0], y.shape[0]
    kxx, kyy, kxy = _poly_kernel(x, x), _poly_kernel(y, y), _poly_kernel(x, y)
    sxx = (kxx.sum() - np.trace(kxx)) / (m * (m - 1))
    syy = (kyy.sum() - np.trace(kyy)) / (n * (n - 1))
    return float(sxx + syy - 2 * kxy.mean())


def kernel_inception_distance(
    a: torch.Tensor | np.ndarray,
    b: torch.Tensor | np.ndarray,
    *,
    subset_size: int = 1000,
    subsets: int = 50,
    seed: int = 0,
) -> tuple[float, float]:
    """KID (Bińkowski et al. 2018, "Demystifying MMD GANs"): mean and std of the unbiased
    polynomial-kernel MMD² over random subsets. Unbiased, so it can be slightly negative
    when both sets come from one distribution, and it is usable with few samples."""
    x, y = _np64(a), _np64(b)
    size = min(subset_size, x.shape[0], y.shape[0])
    if size < 2:
        raise ValueError("KID needs at least 2 samples in each set")
    rng = np.random.default_rng(seed)
    if size == x.shape[0] and size == y.shape[0]:
        subsets = 1
    vals = [
        mmd2_unbiased(
            x[rng.choice(x.shape[0], size, replace=False)],
            y[rng.choice(y.shape[0], size, replace=False)],
        )
        for _ in range(subsets)
    ]
    return float(np.mean(vals)), float(np.std(vals))


def pairwise_nearest(
    queries: torch.Tensor,
    reference: torch.Tensor,
    *,
    exclude: torch.Tensor | None = None,
    chunk: int = 1024,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Euclidean distance from each query to its nearest reference row, and that row's index.

    ``exclude[i]`` (optional) is a reference index that query ``i`` may not match (itself,
    for leave-one-out distances); -1 means none.
    """
    q = queries.flatten(1).double()
    r = reference.flatten(1).double().to(q.device)
    dists, idx = [], []
    for start in range(0, q.shape[0], chunk):
        d = torch.cdist(q[start : start + chunk], r)
        if exclude is not None:
            ex = exclude[start : start + chunk].to(q.device)
            rows = torch.nonzero(ex >= 0).flatten()
            d[rows, ex[rows]] = float("inf")
        v, i = d.min(dim=1)
        dists.append(v)
        idx.append(i)
    return torch.cat(dists).cpu(), torch.cat(idx).cpu()


def kth_neighbour_radii(feats: torch.Tensor, k: int = 3, chunk: int = 1024) -> torch.Tensor:
    """Distance from each row to its k-th nearest *other* row (the k-NN ball radius)."""
    f = feats.flatten(1).double()
    if f.shape[0] <= k:
        raise ValueError(f"need more than k={k} points for k-NN radii")
    out = []
    for start in range(0, f.shape[0], chunk):
        d = torch.cdist(f[start : start + chunk], f)
        # The smallest distance is the point itself (0); the k-th neighbour is at position k.
        out.append(d.kthvalue(k + 1, dim=1).values)
    return torch.cat(out).cpu()


def _inside_any_ball(points: torch.Tensor, centres: torch.Tensor, radii: torch.Tensor) -> float:
    p, c = points.flatten(1).double(), centres.flatten(1).double().to(points.device)
    r = radii.to(points.device)
    inside = []
    for start in range(0, p.shape[0], 1024):
        d = torch.cdist(p[start : start + 1024], c)
        inside.append((d <= r.unsqueeze(0)).any(dim=1))
    return float(torch.cat(inside).float().mean())


def precision_recall(real: torch.Tensor, fake: torch.Tensor, k: int = 3) -> tuple[float, float]:
    """Improved precision and recall (Kynkäänniemi et al. 2019).

    Each set's manifold is the union of balls around its points with radius = distance to
    the point's k-th nearest neighbour. Precision = share of fake points inside the real
    manifold (realism); recall = share of real points inside the fake manifold (coverage).
    """
    precision = _inside_any_ball(fake, real, kth_neighbour_radii(real, k))
    recall = _inside_any_ball(real, fake, kth_neighbour_radii(fake, k))
    return precision, recall


def total_variation(p: np.ndarray | list[float], q: np.ndarray | list[float]) -> float:
    """Total variation distance ½ Σ|pᵢ − qᵢ| between two probability vectors."""
    return 0.5 * float(np.abs(np.asarray(p, np.float64) - np.asarray(q, np.float64)).sum())


def balance_score(mean_probs: np.ndarray | list[float], weights: np.ndarray | list[float]) -> float:
    """1 − TVD between the judge's mean probability vector and the requested weights
    (both over all K categories): 1 = exactly the requested mix, 0 = disjoint."""
    return 1.0 - total_variation(mean_probs, weights)


def wilson_interval(successes: float, n: float, z: float = 1.959964) -> tuple[float, float]:
    """Wilson score interval for a binomial proportion (Wilson 1927); 95% by default."""
    if n <= 0:
        return 0.0, 1.0
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)


def memorisation_share(
    sample_nn: torch.Tensor, real_nn: torch.Tensor, quantile: float = 0.05
) -> tuple[float, float]:
    """(threshold, share): threshold = the ``quantile`` of real images' nearest-neighbour
    distances to the training set; share = fraction of samples whose nearest training image
    is closer than that threshold ("memorised-like")."""
    threshold = float(torch.quantile(real_nn.double(), quantile))
    return threshold, float((sample_nn.double() < threshold).double().mean())


def check_reference(real_count: int, coverage: float, what: str) -> None:
    """A reference fitted to real photos (colour ellipse, noise threshold) needs at least 8
    of them and a coverage strictly between 0 and 1."""
    if real_count < 8:
        raise ValueError(f"the {what} reference needs at least 8 real images")
    if not 0.0 < coverage < 1.0:
        raise ValueError("coverage must be in (0, 1)")
