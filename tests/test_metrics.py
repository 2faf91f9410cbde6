import numpy as np
import pytest
import torch

from facediff.evaluation.maths import (
    balance_score,
    frechet_distance,
    frechet_distance_from_stats,
    kernel_inception_distance,
    memorisation_share,
    pairwise_nearest,
    precision_recall,
    total_variation,
    wilson_interval,
)


def test_frechet_identical_sets_is_zero():
    x = torch.randn(200, 8, generator=torch.Generator().manual_seed(0))
    assert frechet_distance(x, x) == pytest.approx(0.0, abs=1e-8)


def test_frechet_matches_closed_form_for_diagonal_gaussians():
    mu1, mu2 = np.array([0.0, 1.0, -2.0]), np.array([1.0, 1.0, 0.5])
    var1, var2 = np.array([1.0, 4.0, 0.25]), np.array([9.0, 1.0, 0.25])
    expected = ((mu1 - mu2) ** 2).sum() + (var1 + var2 - 2 * np.sqrt(var1 * var2)).sum()
    got = frechet_distance_from_stats(mu1, np.diag(var1), mu2, np.diag(var2))
    assert got == pytest.approx(expected, rel=1e-9)


def test_frechet_full_covariance_against_scipy_formula():
    rng = np.random.default_rng(1)
    a, b = rng.normal(size=(4, 4)), rng.normal(size=(4, 4))
    s1, s2 = a @ a.T + np.eye(4), b @ b.T + np.eye(4)
    mu1, mu2 = rng.normal(size=4), rng.normal(size=4)
    # Reference: Tr((S1 S2)^½) = Σ sqrt(eig(S1 S2)) (eigenvalues are real and non-negative).
    tr = np.sqrt(np.linalg.eigvals(s1 @ s2).real).sum()
    expected = ((mu1 - mu2) ** 2).sum() + np.trace(s1) + np.trace(s2) - 2 * tr
    assert frechet_distance_from_stats(mu1, s1, mu2, s2) == pytest.approx(expected, rel=1e-8)


def test_frechet_of_samples_approaches_closed_form():
    g = torch.Generator().manual_seed(2)
    a = torch.randn(20000, 2, generator=g)
    b = torch.randn(20000, 2, generator=g) * 2 + torch.tensor([3.0, 0.0])
    expected = 9 + 2 * (1 + 4 - 2 * 2)
    assert frechet_distance(a, b) == pytest.approx(expected, rel=0.05)


def test_kid_near_zero_for_same_distribution_and_positive_when_shifted():
    g = torch.Generator().manual_seed(3)
    a, b = torch.randn(300, 16, generator=g), torch.randn(300, 16, generator=g)
    same, _ = kernel_inception_distance(a, b, subset_size=100, subsets=20)
    shifted, _ = kernel_inception_distance(a, b + 1.0, subset_size=100, subsets=20)
    assert abs(same) < 0.02
    assert shifted > 0.3
    assert shifted > 20 * abs(same)


def test_precision_recall_identical_and_disjoint():
    g = torch.Generator().manual_seed(4)
    x = torch.randn(100, 5, generator=g)
    assert precision_recall(x, x.clone(), k=3) == (1.0, 1.0)
    p, r = precision_recall(x, x + 100.0, k=3)
    assert p == 0.0 and r == 0.0


def test_precision_recall_detects_mode_dropping():
    g = torch.Generator().manual_seed(5)
    real = torch.cat([torch.randn(100, 2, generator=g), torch.randn(100, 2, generator=g) + 50])
    fake = torch.randn(100, 2, generator=g)  # covers only one of the two real modes
    p, r = precision_recall(real, fake, k=3)
    assert p > 0.9
    assert 0.3 < r < 0.6


def test_tvd_and_balance_score():
    assert total_variation([0.5, 0.5, 0.0], [0.5, 0.5, 0.0]) == 0.0
    assert balance_score([0.2, 0.8, 0.0], [0.2, 0.8, 0.0]) == pytest.approx(1.0)
    assert total_variation([1, 0, 0], [0, 1, 0]) == pytest.approx(1.0)
    # Hand case: |0.6-0.5| + |0.3-0.5| + |0.1-0| = 0.4 -> TVD 0.2 -> balance 0.8
    assert balance_score([0.6, 0.3, 0.1], [0.5, 0.5, 0.0]) == pytest.approx(0.8)


def test_wilson_interval_known_values():
    lo, hi = wilson_interval(8, 10)
    assert (lo, hi) == (pytest.approx(0.4902, abs=1e-4), pytest.approx(0.9433, abs=1e-4))
    lo, hi = wilson_interval(10, 10)
    assert hi == pytest.approx(1.0) and 0.69 < lo < 0.73
    assert wilson_interval(0, 0) == (0.0, 1.0)


def test_pairwise_nearest_and_leave_one_out():
    ref = torch.tensor([[0.0, 0.0], [3.0, 4.0], [10.0, 0.0]])
    d, i = pairwise_nearest(torch.tensor([[3.0, 4.5]]), ref)
    assert i.tolist() == [1] and d.tolist() == pytest.approx([0.5])
    d, i = pairwise_nearest(ref, ref, exclude=torch.arange(3))
    assert i.tolist() == [1, 0, 1]
    assert d.tolist() == pytest.approx([5.0, 5.0, 65**0.5])


def test_memorisation_share():
    real = torch.arange(1, 101, dtype=torch.float64)  # 5% quantile ≈ 5.95
    samples = torch.tensor([0.5, 1.0, 50.0, 80.0])
    threshold, share = memorisation_share(samples, real, 0.05)
    assert threshold == pytest.approx(5.95)
    assert share == 0.5
