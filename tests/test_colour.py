"""Colour-cast rate: ~1% on real photos it was not fitted on, high on tinted copies.
Colour shift: within chance for unseen photos, beyond it for a mild tint every image
shares, which the cast rate misses."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from facediff.evaluation.colour import (
    SHIFT_WARNING,
    colour_statistics,
    fit_colour_reference,
    fit_shift_reference,
    mean_rgb,
    shifted,
)
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


@pytest.fixture(scope="module")
def split():
    """(images, labels) of 800 fitted and ~400 unseen synthetic faces, three categories."""
    images, labels = make_faces(400, size=32, seed=3)
    order = torch.randperm(len(images), generator=torch.Generator().manual_seed(0))
    fit, held = order[:800], order[800:]
    return (images[fit], labels[fit]), (images[held], labels[held])


def test_unseen_photos_are_not_shifted(split):
    (fit, fit_labels), (held, held_labels) = split
    reference = fit_shift_reference(fit, fit_labels, 3)
    for k in range(3):
        mine = held[held_labels == k]
        shift, chance = reference.shift(mine, {k: 1.0}), reference.chance(len(mine), {k: 1.0})
        assert shift < chance and not shifted(shift, chance)
        # Another category's photos are not what this category looks like on average.
        other = held[held_labels == (k + 1) % 3]
        assert reference.shift(other, {k: 1.0}) > reference.shift(mine, {k: 1.0})


@pytest.mark.parametrize("colour", TINTS)
def test_mild_tint_every_image_shares_is_shifted_though_no_image_is_cast(split, colour):
    (fit, fit_labels), (held, held_labels) = split
    casts = fit_colour_reference(fit)
    reference = fit_shift_reference(fit, fit_labels, 3)
    for k in range(3):
        tinted = tint(held[held_labels == k], colour, amount=0.2)
        assert casts.cast_rate(tinted) <= 0.1  # nearly every image alone looks like a photo
        shift = reference.shift(tinted, {k: 1.0})
        assert shifted(shift, reference.chance(len(tinted), {k: 1.0})), (k, shift)
        # The tint says which way: its hue leans towards the colour's.
        lean = np.array(reference.tint(tinted, {k: 1.0}))
        hue = np.array(colour, dtype=float)
        assert np.dot(lean - lean.mean(), hue - hue.mean()) > 0


def test_a_mix_is_set_against_its_categories_weighted_average(split):
    (fit, fit_labels), (held, held_labels) = split
    reference = fit_shift_reference(fit, fit_labels, 3)
    half = torch.cat([held[held_labels == 0][:50], held[held_labels == 1][:50]])
    mix = {0: 0.5, 1: 0.5}
    assert reference.shift(half, mix) < reference.chance(len(half), mix)
    assert reference.shift(half, mix) < reference.shift(half, {0: 1.0})
    assert reference.shift(half, mix) < reference.shift(half, {1: 1.0})


def test_category_without_photos_has_no_shift(split):
    (fit, fit_labels), (held, _) = split
    keep = fit_labels != 2
    reference = fit_shift_reference(fit[keep], fit_labels[keep], 3)
    assert np.isnan(reference.shift(held[:20], {2: 1.0}))
    assert np.isnan(reference.shift(held[:20], {0: 0.5, 2: 0.5}))
    assert not shifted(None, None)
    # Too few photos to measure their spread: no reference, no shift (evaluate says n/a).
    assert fit_shift_reference(fit[:9], torch.tensor([0, 1, 2] * 3), 3) is None
    assert fit_shift_reference(fit[:10], torch.tensor([0, 1, 2] * 3 + [0]), 3) is not None


def test_variety_is_about_one_for_photos_and_low_for_look_alikes(split):
    (fit, fit_labels), (held, held_labels) = split
    reference = fit_shift_reference(fit, fit_labels, 3)
    for k in range(3):
        mine = held[held_labels == k]
        assert 0.8 < reference.variety(mine) < 1.3
        # Every image halfway to one of them: backgrounds and skins alike, as in a model
        # that has collapsed onto a few colours. Neither cast nor (much) shifted.
        alike = (0.5 * mine.float() + 0.5 * mine[:1].float()).round().to(torch.uint8)
        assert reference.variety(alike) < 0.6 * reference.variety(mine)
    assert np.isnan(reference.variety(held[:1]))


def test_shift_warning_needs_both_size_and_chance():
    assert shifted(SHIFT_WARNING + 0.01, 0.1)
    assert not shifted(SHIFT_WARNING - 0.01, 0.1)  # beyond chance, but small
    assert not shifted(1.5, 2.0)  # large, but a small set can be that far by chance


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
    # One category (labels unknown here): unseen photos within chance, a 5% tint beyond it.
    shifts = fit_shift_reference(photos[order[:600]], torch.zeros(600, dtype=torch.long), 1)
    chance = shifts.chance(len(held), {0: 1.0})
    assert shifts.shift(held, {0: 1.0}) < chance
    for colour in TINTS:
        assert shifted(shifts.shift(tint(held, colour, amount=0.05), {0: 1.0}), chance)
