"""A CPU sampling batch too large for memory is split into batches that fit, with a
warning, and makes the same images; a model that cannot sample even one image is refused
before any is written, instead of the kernel killing the process (exit 137)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from sampling_helpers import TINY, error_lines, invoke, make_run

import facediff.sample_memory as sample_memory
from facediff.config import PRESETS, preset
from facediff.model import build_unet
from facediff.training.memory import activation_bytes

FAST = ["--steps", "2", "--device", "cpu", "-c", "O", "--seed", "3"]
#: UNet rows of a guided image of one category: the category and the null condition.
ROWS = 2


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    return make_run(tmp_path_factory.mktemp("m") / "run")


def per_image() -> int:
    unet = build_unet(TINY).eval()
    return int(ROWS * sample_memory.row_bytes(unet, TINY, torch.float32) * sample_memory.MARGIN)


def pixels(folder) -> dict[str, np.ndarray]:
    return {p.name: np.asarray(Image.open(p)) for p in sorted(folder.glob("*.png"))}


def test_a_batch_too_big_is_split_and_makes_the_same_images(run, tmp_path, monkeypatch):
    whole = tmp_path / "whole"
    result = invoke(["sample", run, "-n", "6", "--batch-size", "6", "--out", whole, *FAST])
    assert result.exit_code == 0, result.output
    assert "warning" not in result.output

    monkeypatch.setattr(sample_memory, "available_bytes", lambda: int(2.5 * per_image()))
    split = tmp_path / "split"
    result = invoke(["sample", run, "-n", "6", "--batch-size", "6", "--out", split, *FAST])
    assert result.exit_code == 0, result.output
    (line,) = [
        ln.partition(" warning: ")[2] for ln in result.output.splitlines() if "warning" in ln
    ]
    assert line.startswith("batches of 6 images would need about"), line
    assert "sampling 2 at a time instead" in line, line

    made, expected = pixels(split / "O"), pixels(whole / "O")
    assert sorted(made) == [f"O_{s}.png" for s in range(3, 9)] == sorted(expected)
    for name, image in made.items():  # equal up to rounding across batch shapes
        diff = np.abs(image.astype(int) - expected[name].astype(int))
        assert diff.max() <= 1 and (diff == 0).mean() > 0.99, name


def test_a_model_that_cannot_sample_one_image_is_refused_before_writing(run, tmp_path, monkeypatch):
    monkeypatch.setattr(sample_memory, "available_bytes", lambda: per_image() // 2)
    out = tmp_path / "out"
    result = invoke(["sample", run, "-n", "2", "--out", out, *FAST])
    assert result.exit_code == 2, result.output
    (line,) = error_lines(result)
    assert line.startswith("facediff: error: sampling this model on the CPU needs about"), line
    assert not list(out.rglob("*.png"))


def test_a_batch_that_fits_is_left_alone_and_unknown_memory_checks_nothing(monkeypatch):
    unet = build_unet(TINY).eval()
    monkeypatch.setattr(sample_memory, "available_bytes", lambda: 64 * per_image())
    assert sample_memory.fitting_batch(unet, TINY, torch.float32, ROWS, 64) == (64, None)
    monkeypatch.setattr(sample_memory, "available_bytes", lambda: None)
    assert sample_memory.fitting_batch(unet, TINY, torch.float32, ROWS, 10**6) == (10**6, None)


def test_the_peak_counts_live_tensors_once():
    """Per row, the peak lies between one layer's input and output (both alive while it
    runs) and every layer output at once (what training keeps); it grows with the area
    and halves in bf16."""

    def peak(size: int, dtype: torch.dtype = torch.float32) -> int:
        model = preset("tiny", sample_size=size, num_categories=3)
        unet = torch.nn.Module.to(build_unet(model), dtype=dtype).eval()
        return sample_memory.row_bytes(unet, model, dtype)

    model = preset("tiny", sample_size=32, num_categories=3)
    widest = model.block_out_channels[0] * 32 * 32 * 4  # the first conv's output, fp32
    kept, _ = activation_bytes(model, torch.float32)
    assert 2 * widest <= peak(32) < kept
    assert 3.5 < peak(64) / peak(32) < 4.5
    assert peak(64, torch.bfloat16) == pytest.approx(peak(64) / 2, rel=0.01)


def test_grid_says_when_it_splits_a_batch(run, tmp_path, monkeypatch):
    monkeypatch.setattr(sample_memory, "available_bytes", lambda: int(2.5 * per_image()))
    out = tmp_path / "grid.png"
    args = ["grid", run, "--out", out, "--seeds", "4", "-c", "O"]
    result = invoke([*args, "--steps", "2", "--device", "cpu"])
    assert result.exit_code == 0, result.output
    assert "warning: batches of 4 images would need about" in result.output, result.output
    assert out.is_file()


@pytest.mark.parametrize("name", list(PRESETS))
def test_the_bound_that_skips_measuring_lies_above_every_presets_peak(name):
    """A batch the feature-map bound clears is not measured: the bound must hold."""
    model = preset(name, sample_size=32, num_categories=3)
    peak = sample_memory.row_bytes(build_unet(model).eval(), model, torch.float32)
    bound = sample_memory.FEATURE_MULTIPLE * sample_memory.feature_bytes(model, torch.float32)
    assert peak <= bound / 1.5, (peak, bound)  # with room to spare
