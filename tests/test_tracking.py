"""`train --log tensorboard`: scalars and previews in RUN/tensorboard, or a clear error."""

from __future__ import annotations

import importlib.util

import pytest
from sampling_helpers import error_lines, invoke
from train_helpers import faces_dataset, tiny

from facediff.training import train

FAST = ["--preset", "tiny", "--batch-size", "4", "--preview-every", "0", "--device", "cpu"]
HAVE_TENSORBOARD = importlib.util.find_spec("tensorboard") is not None


def test_unknown_tracker_is_a_usage_error(tmp_path):
    r = invoke(["train", tmp_path / "data", "--out", tmp_path / "run", "--log", "wandb"])
    assert r.exit_code == 2
    assert error_lines(r) == ["facediff: error: invalid --log 'wandb': use none or tensorboard"]


@pytest.mark.skipif(HAVE_TENSORBOARD, reason="tensorboard is installed")
def test_missing_tensorboard_is_a_clear_error(tmp_path):
    data = faces_dataset(tmp_path / "data", per_category=2)
    r = invoke(["train", data, "--out", tmp_path / "run", "--log", "tensorboard", *FAST])
    assert r.exit_code == 1
    assert error_lines(r) == [
        "facediff: error: --log tensorboard needs the tensorboard package: pip install tensorboard"
    ]
    assert not (tmp_path / "run").exists()  # refused before anything was written


@pytest.mark.skipif(not HAVE_TENSORBOARD, reason="tensorboard is not installed")
def test_tensorboard_gets_scalars_and_previews(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    data = faces_dataset(tmp_path / "data", per_category=2)
    run = tmp_path / "run"
    train(data, run, tiny(max_steps=4, log_every=2, preview_every=2), log="tensorboard")
    events = EventAccumulator(str(run / "tensorboard"))
    events.Reload()
    assert {"train/loss", "train/lr", "train/images_per_s"} <= set(events.Tags()["scalars"])
    assert [e.step for e in events.Scalars("train/loss")] == [2, 4]
    assert [e.step for e in events.Images("preview")] == [2, 4]
