"""Colour-cast rate: ~1% on real photos it was not fitted on, high on tinted copies."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from facediff.evaluation.colour import colour_statistics, fit_colour_reference, mean_rgb
from facediff.synthetic import make_faces


@pytest.fixture(scope="module")
def faces() -> torch.Tensor:
    images, _ = make_faces(400, size=32, seed=3)  # 1,200 synthetic faces
    return images


def test_statistics_are_channel_means_and_stds():
    img = torch.zeros(1, 3, 4, 4, dtype=torch.uint8)
    img[0, 0] = 255  # pure red
    img[0, 2, :2] = 255  # blue on half the pixels
    stats = colour_statistics(img)[0]
    assert stats[:3] == pytest.approx([1.0, 0.0, 0.5])
    assert stats[3] == pytest.approx(0.0) and stats[4] == pytest.approx(0.0)
    assert stats[5] == pytest.approx(torch.tensor([0.0] * 8 + [1.0] * 8).std().item())
    assert mean_rgb(img) == pytest.approx((255.0, 0.0, 127.5))


def test_real_images_score_about_one_percent(faces):
    g = torch.Generator().manual_seed(0)
    order = torch.randperm(len(faces), generator=g)
    fit, held = faces[order[:800]], faces[order[800:]]
    reference = fit_colour_reference(fit)
    assert reference.cast_rate(fit) == pytest.approx(0.01, abs=0.002)  # by construction
    # 400 unseen real images: 1% expected; 0–4% is the binomial range at this n.
    assert reference.cast_rate(held) <= 0.04


def tint(images: torch.Tensor, colour: tuple[int, int, int], amount: float = 0.3) -> torch.Tensor:
    """Blend towards a saturated colour: the green/blue/magenta faces of a bad sampler."""
    c = torch.tensor(colour, dtype=torch.float32).view(1, 3, 1, 1)
    return ((1 - amount) * images.float() + amount * c).round().to(torch.uint8)


TINTS = [(0, 200, 0), (0, 0, 255), (200, 0, 200)]


@pytest.mark.parametrize("colour", TINTS)
def test_tinted_copies_score_high(faces, colour):
    # Synthetic faces vary more in colour than photos, so the tint is stronger here.
    reference = fit_colour_reference(faces[:800])
    assert reference.cast_rate(tint(faces[800:], colour, amount=0.5)) > 0.9


def test_washed_out_copies_score_high(faces):
    reference = fit_colour_reference(faces[:800])
    grey = faces[800:].float().mean(dim=(1, 2, 3), keepdim=True)
    flat = (grey + 0.2 * (faces[800:].float() - grey)).round().to(torch.uint8)
    assert reference.cast_rate(flat) > 0.9


def test_needs_enough_real_images(faces):
    with pytest.raises(ValueError):
        fit_colour_reference(faces[:5])
    assert fit_colour_reference(faces[:50]).cast_rate(faces[:0]) != 0.0  # nan, not 0


UTKFACE = Path(__file__).resolve().parents[2] / "shared" / "data" / "utkface"


@pytest.mark.skipif(not UTKFACE.is_dir(), reason="../shared/data/utkface not present")
def test_real_photos():
    files = sorted(UTKFACE.iterdir())[::15][:1000]
    photos = torch.stack([
        torch.from_numpy(np.array(Image.open(f).convert("RGB").resize((32, 32)))).permute(2, 0, 1)
        for f in files
    ])  # fmt: skip
    order = torch.randperm(len(photos), generator=torch.Generator().manual_seed(0))
    reference = fit_colour_reference(photos[order[:600]])
    held = photos[order[600:]]
    assert reference.cast_rate(held) <= 0.04  # 1% expected
    for colour in TINTS:
        assert reference.cast_rate(tint(held, colour)) > 0.9
