"""Runs that would not do what their user expects say so: warm-up, big models on the CPU."""

from __future__ import annotations

import json

import torch
from sampling_helpers import invoke
from train_helpers import faces_dataset, tiny

import facediff.training.loop
from facediff.config import TrainConfig
from facediff.training import train
from facediff.training.loop import run_warnings

CPU, GPU = torch.device("cpu"), torch.device("cuda")
FAST = ["--preset", "tiny", "--batch-size", "4", "--preview-every", "0", "--device", "cpu"]


def test_warmup_longer_than_the_run_is_reported():
    cfg = TrainConfig(lr_warmup_steps=500)
    (note,) = run_warnings(cfg, GPU, 1_000_000, target=200)
    assert "warm-up (500 steps) is longer than the run (200 steps)" in note
    assert "--lr-warmup-steps (e.g. 20)" in note
    assert run_warnings(cfg, GPU, 1_000_000, target=500) == []


def test_large_preset_on_the_cpu_is_reported():
    cfg = TrainConfig(preset="base", lr_warmup_steps=0)
    (note,) = run_warnings(cfg, CPU, 77_500_000, target=10)
    assert "'base' preset (77.5M parameters) on the CPU" in note
    assert run_warnings(cfg, GPU, 77_500_000, target=10) == []
    assert run_warnings(TrainConfig(preset="tiny"), CPU, 1_200_000, target=1000) == []


def test_cli_warns_and_lr_warmup_steps_option_fixes_it(tmp_path):
    data = faces_dataset(tmp_path / "data", per_category=2)
    r = invoke(["train", data, "--out", tmp_path / "a", "--max-steps", "2", *FAST])
    assert r.exit_code == 0, r.output
    default = TrainConfig().lr_warmup_steps
    assert f"warning: the LR warm-up ({default} steps) is longer than the run (2 steps)" in r.stderr
    r = invoke(
        [
            "train",
            data,
            "--out",
            tmp_path / "b",
            "--max-steps",
            "2",
            "--lr-warmup-steps",
            "1",
            *FAST,
        ]
    )
    assert r.exit_code == 0, r.output
    assert "warm-up" not in r.output
    config = json.loads((tmp_path / "b" / "config.json").read_text())
    assert config["train"]["lr_warmup_steps"] == 1


def test_end_of_run_preview_skipped_for_large_models_on_the_cpu(tmp_path, monkeypatch):
    data = faces_dataset(tmp_path / "data", per_category=2)
    cfg = tiny(max_steps=2, preview_every=1000)
    messages = []
    train(data, tmp_path / "small", cfg, progress=lambda e: messages.append(e.message))
    assert len(list((tmp_path / "small" / "previews").glob("*.png"))) == 1
    # The tiny preset counts as large:
    monkeypatch.setattr(facediff.training.loop, "CPU_LARGE_PARAMETERS", 1000)
    messages.clear()
    train(data, tmp_path / "large", cfg, progress=lambda e: messages.append(e.message))
    assert not (tmp_path / "large" / "previews").exists()
    assert any(m and "preview skipped on the CPU" in m for m in messages)
    assert any(m and "on the CPU takes seconds to minutes per step" in m for m in messages)


def test_resuming_on_other_images_warns_even_when_quiet(tmp_path):
    first = faces_dataset(tmp_path / "first", per_category=2, seed=0)
    other = faces_dataset(tmp_path / "other", per_category=2, seed=1)
    run = tmp_path / "run"
    steps = ["--lr-warmup-steps", "0", "--quiet", *FAST]
    assert invoke(["train", first, "--out", run, "--max-steps", "1", *steps]).exit_code == 0
    same = invoke(["train", first, "--out", run, "--max-steps", "2", *steps])
    assert same.exit_code == 0 and "warning" not in same.stderr, same.output
    moved = invoke(["train", other, "--out", run, "--max-steps", "3", *steps])
    assert moved.exit_code == 0, moved.output
    (line,) = [x for x in moved.stderr.splitlines() if x.startswith("warning:")]
    assert str(other) in line and str(first.resolve()) in line and "other images" in line
