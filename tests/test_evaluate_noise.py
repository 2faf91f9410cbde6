"""The noise rate: real photos score about 1%, speckled copies of them nearly all; evaluate
reports it per group, warns, and the model card carries it."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from evaluate_helpers import faces_and_untrained_run, write_samples

from facediff.categories import DEFAULT_CATEGORIES
from facediff.evaluation import evaluate
from facediff.evaluation.judge_training import JudgeConfig
from facediff.evaluation.noise import fit_noise_reference, grain
from facediff.synthetic import make_faces


def smooth_photos(n: int, seed: int, size: int = 32) -> torch.Tensor:
    """Photo-like images: smooth colour fields (8×8 random colours, bilinear upsampled)."""
    g = torch.Generator().manual_seed(seed)
    low = torch.rand((n, 3, 8, 8), generator=g)
    return (F.interpolate(low, size=(size, size), mode="bilinear") * 255).round().to(torch.uint8)


def speckled(images: torch.Tensor, sigma: float, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    noise = torch.randn(images.shape, generator=g) * sigma * 255
    return (images.float() + noise).clamp(0, 255).round().to(torch.uint8)


def test_real_photos_score_about_one_percent_and_speckled_ones_nearly_all():
    reference = fit_noise_reference(smooth_photos(400, seed=0))
    others = smooth_photos(400, seed=1)
    assert reference.noise_rate(others) <= 0.03
    assert reference.noise_rate(speckled(others, 0.03)) >= 0.9
    # colour statistics barely move under that noise: the mean colour is kept
    assert (speckled(others, 0.03).float().mean() - others.float().mean()).abs() < 1.0


def test_grain_ignores_a_few_sharp_edges_and_rejects_odd_shapes():
    flat = torch.full((1, 3, 16, 16), 128, dtype=torch.uint8)
    edged = flat.clone()
    edged[:, :, :, 8:] = 255  # one hard vertical edge
    assert grain(flat).item() == 0.0 and grain(edged).item() == 0.0
    assert grain(speckled(flat, 0.05)).item() > 0.05
    with pytest.raises(ValueError, match="N×3×H×W"):
        grain(torch.zeros((2, 1, 16, 16), dtype=torch.uint8))


def test_evaluate_reports_the_noise_rate_and_warns(tmp_path):
    data, run, _, _ = faces_and_untrained_run(tmp_path)
    faces, labels = make_faces(40, size=16, seed=7)
    o, e = (DEFAULT_CATEGORIES.index(c) for c in "OE")
    # 16-px cartoon faces are mostly edges (median grain 0.08): only strong speckle shows
    clean, noisy = faces[labels == o][:12], speckled(faces[labels == e][:12], 0.25)
    samples = write_samples(tmp_path / "s", {"O": ({"O": 1.0}, clean), "E": ({"E": 1.0}, noisy)})
    kw = dict(data=data, judge_config=JudgeConfig(width=8, epochs=1), device="cpu")
    report = evaluate(run, samples=samples, out=tmp_path / "ev", **kw).report
    per_group = report["noise"]["per_group"]
    assert per_group["O"]["noise_rate"] <= 0.1 and per_group["E"]["noise_rate"] == 1.0
    assert report["noise"]["real_noise_rate"] <= 0.1
    (warning,) = [w for w in report["warnings"] if w.startswith("noise in")]
    assert warning.startswith("noise in E (more than 5% of samples are grainier than 99%")
    md = (tmp_path / "ev" / "report.md").read_text()
    assert "## 6. Colour casts and noise" in md and "| E | 12 | 1.000 |" in md
