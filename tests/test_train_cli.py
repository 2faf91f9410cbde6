"""`facediff train` on the command line: errors, signals, crash recovery."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from train_helpers import blocks_dataset, write_dataset
from typer.testing import CliRunner

from facediff.categories import CategoryMap, make_category
from facediff.checkpoint import list_checkpoints
from facediff.cli import app

FAST = ["--preset", "tiny", "--batch-size", "4", "--preview-every", "0", "--device", "cpu"]


def _run(*args: str):
    return CliRunner().invoke(app, ["train", *args])


def _assert_one_line_error(result, fragment: str) -> None:
    out = result.output  # stdout and stderr together
    assert result.exit_code != 0, out
    assert "Traceback" not in out
    lines = [line for line in out.splitlines() if line.startswith("facediff: error:")]
    assert len(lines) == 1, out
    assert fragment in lines[0], lines[0]


@pytest.fixture
def data(tmp_path) -> Path:
    return blocks_dataset(tmp_path / "data", per_category=4)


def test_cli_trains_and_resumes(tmp_path, data):
    run = tmp_path / "run"
    first = _run(str(data), "--out", str(run), "--max-steps", "2", *FAST)
    assert first.exit_code == 0, first.output
    again = _run(str(data), "--out", str(run), "--max-steps", "3")  # options inherited
    assert again.exit_code == 0, again.output
    assert "resuming from step 2" in again.output
    assert [s for s, _ in list_checkpoints(run)] == [2, 3]


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["--batch-size", "0"], "--batch-size"),
        (["--cond-drop", "1.5"], "--cond-drop"),
        (["--precision", "fp8"], "--precision"),
        (["--preset", "huge"], "--preset"),
        (["--epochs", "1", "--max-steps", "3"], "--epochs"),
    ],
)
def test_bad_options(tmp_path, data, args, fragment):
    _assert_one_line_error(_run(str(data), "--out", str(tmp_path / "run"), *args), fragment)


def test_missing_data(tmp_path):
    _assert_one_line_error(_run(str(tmp_path / "nope"), "--out", str(tmp_path / "r")), "not found")


def test_empty_dataset(tmp_path):
    empty = write_dataset(
        tmp_path / "empty", torch.zeros(0, 3, 16, 16, dtype=torch.uint8), torch.zeros(0).long()
    )
    _assert_one_line_error(_run(str(empty), "--out", str(tmp_path / "r")), "no images")


def test_other_dataset_version(tmp_path):
    old = blocks_dataset(tmp_path / "old", version=99)
    _assert_one_line_error(_run(str(old), "--out", str(tmp_path / "r")), "version")


def test_corrupt_checkpoint(tmp_path, data):
    run = tmp_path / "run"
    assert _run(str(data), "--out", str(run), "--max-steps", "1", *FAST).exit_code == 0
    weights = run / "checkpoints" / "step-00000001" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])
    _assert_one_line_error(_run(str(data), "--out", str(run), "--max-steps", "2"), "damaged")


def test_resume_with_other_categories_is_refused(tmp_path, data):
    run = tmp_path / "run"
    assert _run(str(data), "--out", str(run), "--max-steps", "1", *FAST).exit_code == 0
    cats = CategoryMap((make_category("a", "Alpha", "A"), make_category("b", "Beta", "B")))
    other = blocks_dataset(tmp_path / "other", categories=cats)
    _assert_one_line_error(_run(str(other), "--out", str(run), "--max-steps", "2"), "categories")


def test_resume_with_other_preset_is_refused(tmp_path, data):
    run = tmp_path / "run"
    assert _run(str(data), "--out", str(run), "--max-steps", "1", *FAST).exit_code == 0
    _assert_one_line_error(
        _run(str(data), "--out", str(run), "--max-steps", "2", "--preset", "base"), "preset"
    )


def _start(data: Path, run: Path) -> subprocess.Popen:
    cmd = [
        sys.executable,
        "-m",
        "facediff",
        "train",
        str(data),
        "--out",
        str(run),
        "--max-steps",
        "100000",
        "--checkpoint-every",
        "2",
        "--keep",
        "2",
        *FAST,
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)


def _wait_for_checkpoint(proc: subprocess.Popen, run: Path, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not list_checkpoints(run):
        if proc.poll() is not None:
            raise AssertionError(proc.communicate()[1][-2000:])
        if time.monotonic() > deadline:
            proc.kill()
            raise AssertionError("no checkpoint written in time")
        time.sleep(0.2)


def test_sigkill_then_resume_from_last_complete_checkpoint(tmp_path, data):
    run = tmp_path / "run"
    proc = _start(data, run)
    _wait_for_checkpoint(proc, run)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    last = list_checkpoints(run)[-1][0]
    torn = run / "checkpoints" / f"step-{last + 2:08d}"  # as if killed mid-write
    torn.mkdir()
    (torn / "state.json").write_text("{")
    result = _run(str(data), "--out", str(run), "--max-steps", str(last + 1))
    assert result.exit_code == 0, result.output
    assert f"resuming from step {last}" in result.output


def test_sigterm_saves_a_checkpoint_and_exits_cleanly(tmp_path, data):
    run = tmp_path / "run"
    proc = _start(data, run)
    _wait_for_checkpoint(proc, run)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "Traceback" not in err
    assert f"resume with: facediff train {data} --out {run}" in err
    state_steps = [s for s, _ in list_checkpoints(run)]
    assert state_steps and f"checkpoint: {run / 'checkpoints'}" in out


def test_api_and_cli_resume_give_the_same_config(tmp_path, data):
    from facediff.training import train

    runs = {"cli": tmp_path / "cli", "api": tmp_path / "api"}
    for run in runs.values():
        assert (
            _run(str(data), "--out", str(run), "--max-steps", "1", "--lr", "1e-3", *FAST).exit_code
            == 0
        )
    resumed = _run(str(data), "--out", str(runs["cli"]), "--max-steps", "2", "--min-snr-gamma", "0")
    assert resumed.exit_code == 0, resumed.output
    train(data, runs["api"], max_steps=2, min_snr_gamma=0)
    configs = {k: json.loads((run / "config.json").read_text())["train"] for k, run in runs.items()}
    assert configs["api"] == configs["cli"]
    assert configs["api"]["lr"] == 1e-3 and configs["api"]["max_steps"] == 2  # inherited, given
    assert configs["api"]["min_snr_gamma"] is None and configs["api"]["preset"] == "tiny"


def test_a_run_stopped_before_its_first_checkpoint_restarts_with_its_settings(tmp_path, data):
    """Killed before any checkpoint (SIGKILL, power loss): a bare `facediff train` starts
    the run again with the options it was started with, not with the defaults."""
    import shutil

    from facediff.training import resume_config

    run = tmp_path / "run"
    started = [str(data), "--out", str(run), "--max-steps", "1", "--lr", "1e-3", *FAST]
    assert _run(*started, "--seed", "7").exit_code == 0
    shutil.rmtree(run / "checkpoints")  # what a kill before the first checkpoint leaves
    assert resume_config(run).preset == "tiny"
    again = _run(str(data), "--out", str(run), "--max-steps", "2")
    assert again.exit_code == 0, again.output
    assert "stopped before its first checkpoint" in again.output
    train = json.loads((run / "config.json").read_text())["train"]
    assert (train["preset"], train["lr"], train["seed"], train["max_steps"]) == ("tiny", 1e-3, 7, 2)
    assert [s for s, _ in list_checkpoints(run)] == [2]
    resumed = _run(str(data), "--out", str(run), "--max-steps", "3")
    assert "stopped before" not in resumed.output and "resuming from step 2" in resumed.output
