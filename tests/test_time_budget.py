"""``train --time-budget``: stop cleanly at the budget with a checkpoint; resume exactly."""

from __future__ import annotations

import json
import time

import pytest
import torch
from safetensors.torch import load_file
from train_helpers import blocks_dataset, tiny
from typer.testing import CliRunner

from facediff.cli import app
from facediff.errors import FacediffError
from facediff.training import loop as loop_module
from facediff.training import train


class Clock:
    """time.perf_counter that can be pushed forward, so a budget runs out at a chosen step;
    ``real_scale`` < 1 slows the real time it adds, so the machine's speed hardly counts."""

    def __init__(self, real_scale: float = 1.0) -> None:
        self.offset = 0.0
        self.real = time.perf_counter
        self.scale = real_scale
        self.start = self.real()

    def __call__(self) -> float:
        return self.start + (self.real() - self.start) * self.scale + self.offset


def _weights(result):
    return load_file(str(result.checkpoint / "model.safetensors"))


def test_budget_stops_with_checkpoint_and_resumes_exactly(tmp_path, monkeypatch):
    data = blocks_dataset(tmp_path / "data", per_category=4)
    cfg = tiny(max_steps=6, log_every=1)
    straight = train(data, tmp_path / "a", cfg)

    clock = Clock()
    monkeypatch.setattr(time, "perf_counter", clock)

    def spend_budget_after_step_3(event):
        if event.task == "train" and event.completed == 3:
            clock.offset += 10_000.0  # far past the 1,000-s budget

    stopped = train(
        data, tmp_path / "b", cfg, progress=spend_budget_after_step_3, time_budget_s=1000.0
    )
    monkeypatch.undo()
    assert stopped.budget_reached and not stopped.interrupted
    assert stopped.step == 3 and stopped.checkpoint.name == "step-00000003"

    resumed = train(data, tmp_path / "b", cfg, time_budget_s=1000.0)  # a new budget
    assert resumed.step == 6 and not resumed.budget_reached
    a, b = _weights(straight), _weights(resumed)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    steps = [
        json.loads(x)["step"] for x in (tmp_path / "b" / "metrics.jsonl").read_text().splitlines()
    ]
    assert steps == [1, 2, 3, 4, 5, 6]


def test_spent_budget_trains_nothing(tmp_path):
    data = blocks_dataset(tmp_path / "data", per_category=4)
    result = train(data, tmp_path / "run", tiny(max_steps=50), time_budget_s=1e-9)
    assert result.budget_reached and result.step == 0 and result.checkpoint is None


@pytest.mark.parametrize("budget", [0.0, -1.0, float("nan")])
def test_bad_budget_is_refused(tmp_path, budget):
    data = blocks_dataset(tmp_path / "data", per_category=4)
    with pytest.raises(FacediffError, match="time budget"):
        train(data, tmp_path / "run", tiny(), time_budget_s=budget)


def test_cli_time_budget(tmp_path):
    data = blocks_dataset(tmp_path / "data", per_category=4)
    runner = CliRunner()
    args = ["train", str(data), "--out", str(tmp_path / "run"), "--preset", "tiny"]
    args += ["--device", "cpu", "--batch-size", "4", "--preview-every", "0", "--max-steps", "3"]
    ok = runner.invoke(app, [*args, "--time-budget", "1h"])
    assert ok.exit_code == 0, ok.output
    assert (tmp_path / "run" / "checkpoints" / "step-00000003").is_dir()
    bad = runner.invoke(app, [*args, "--time-budget", "soon"])
    assert bad.exit_code != 0
    assert "--time-budget" in bad.output and "Traceback" not in bad.output


def test_progress_under_a_budget_counts_to_where_the_budget_ends(tmp_path, monkeypatch):
    data = blocks_dataset(tmp_path / "data", per_category=4)
    # Simulated time only: real time runs 1,000× slower (so the clock still moves) and
    # every step takes exactly one simulated second, however fast this machine runs it.
    clock = Clock(real_scale=1e-3)
    monkeypatch.setattr(time, "perf_counter", clock)
    real_advance = loop_module.advance

    def one_second_step(*args, **kwargs):
        real_advance(*args, **kwargs)
        clock.offset += 1.0

    monkeypatch.setattr(loop_module, "advance", one_second_step)
    totals = []

    def record(event):
        if event.task == "train" and event.total is not None and event.completed > 0:
            totals.append((event.completed, event.total))

    # 1,000 steps planned, a budget of 5.5 s of 1-s steps: the bar counts to 6, not 1,000.
    result = train(
        data, tmp_path / "run", tiny(max_steps=1000), progress=record, time_budget_s=5.5
    )  # fmt: skip
    assert result.budget_reached and result.step == 6
    assert totals[0][1] < 1000  # projected from the first step already
    assert all(total <= 6 for _, total in totals), totals
    assert totals[-1][1] == totals[-1][0] == result.step  # full when the budget ends
    monkeypatch.undo()
    unbudgeted = []
    train(
        data, tmp_path / "free", tiny(max_steps=3),
        progress=lambda e: unbudgeted.append(e.total) if e.task == "train" and e.completed else 0,
    )  # fmt: skip
    assert set(unbudgeted) == {3}  # without a budget the bar counts to the target step
