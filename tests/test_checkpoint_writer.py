"""Periodic checkpoints are written in the background while training goes on."""

from __future__ import annotations

import errno
import threading
import time

import pytest
import torch
from safetensors.torch import load_file
from sampling_helpers import error_lines, invoke
from train_helpers import blocks_dataset, tiny

import facediff.checkpoint as checkpoint
from facediff.checkpoint import list_checkpoints, load_training_state, verify_checkpoint
from facediff.training import train
from facediff.training.writer import BackgroundWriter, snapshot

FAST = ["--preset", "tiny", "--batch-size", "4", "--preview-every", "0", "--device", "cpu"]


@pytest.fixture
def data(tmp_path):
    return blocks_dataset(tmp_path / "data", per_category=4)


def _contents(ckpt) -> tuple[dict, dict, dict]:
    state = load_training_state(ckpt)
    return (
        load_file(str(ckpt / "model.safetensors")),
        load_file(str(ckpt / "ema.safetensors")),
        {"optimizer": state["optimizer"]["state"], "rng": state["rng"]},
    )


def _assert_same(a, b) -> None:
    if isinstance(a, dict):
        assert a.keys() == b.keys()
        for k in a:
            _assert_same(a[k], b[k])
    elif isinstance(a, (tuple, list)):
        assert len(a) == len(b)
        for x, y in zip(a, b):
            _assert_same(x, y)
    else:
        assert torch.equal(a, b)


def _slow_writes(monkeypatch, seconds: float) -> list[str]:
    """Make every checkpoint file write take ``seconds`` longer; returns the threads that
    wrote them."""
    threads, save_file = [], checkpoint.save_file

    def slow(tensors, path, *a, **k):
        threads.append(threading.current_thread().name)
        time.sleep(seconds)
        return save_file(tensors, path, *a, **k)

    monkeypatch.setattr(checkpoint, "save_file", slow)
    return threads


def test_a_periodic_checkpoint_holds_its_own_step_while_training_goes_on(
    tmp_path, data, monkeypatch
):
    threads = _slow_writes(monkeypatch, 0.3)
    events = []
    cfg = tiny(max_steps=7, checkpoint_every=3, batch_size=4)
    result = train(data, tmp_path / "a", cfg, progress=events.append)
    assert [s for s, _ in list_checkpoints(tmp_path / "a")] == [3, 6, 7]
    assert result.checkpoint == tmp_path / "a" / "checkpoints" / "step-00000007"
    # steps 3 and 6 were written on the writer thread, the final one (7) in the foreground
    assert threads == ["facediff-checkpoint-writer"] * 4 + ["MainThread"] * 2
    saved = {
        e.message.rsplit("step-", 1)[1]: e.completed
        for e in events
        if e.message and e.message.startswith("checkpoint saved")
    }
    assert saved["00000003"] > 3  # taken after training went on
    # what the writer wrote for step 3 is the state of step 3, not of a later step
    train(data, tmp_path / "b", tiny(max_steps=3, checkpoint_every=1000, batch_size=4))
    a, b = (run / "checkpoints" / "step-00000003" for run in (tmp_path / "a", tmp_path / "b"))
    _assert_same(_contents(a), _contents(b))
    verify_checkpoint(a)


def test_a_failed_background_write_stops_the_run_in_one_line(tmp_path, data, monkeypatch):
    save_file = checkpoint.save_file

    def full_disk_at_step_4(tensors, path, *a, **k):
        if "step-00000004" in str(path):
            raise OSError(errno.ENOSPC, "No space left on device")
        return save_file(tensors, path, *a, **k)

    monkeypatch.setattr(checkpoint, "save_file", full_disk_at_step_4)
    run = tmp_path / "run"
    result = invoke(
        ["train", data, "--out", run, "--max-steps", "50", "--checkpoint-every", "2", *FAST]
    )
    assert result.exit_code != 0, result.output
    lines = error_lines(result)  # no traceback
    assert len(lines) == 1 and "step-00000004" in lines[0] and "No space left" in lines[0]
    assert "step-00000002 is intact" in lines[0]
    # the loop took the error at the next step: no later checkpoint was started
    assert [s for s, _ in list_checkpoints(run)] == [2]
    assert not [p for p in run.rglob("*") if p.name.startswith(".tmp-")]


def test_the_writer_hands_over_results_and_errors_one_write_at_a_time():
    writer, gate = BackgroundWriter(), threading.Event()
    assert not writer.busy and writer.wait() is None
    writer.submit(lambda: gate.wait(5) and "written")
    assert writer.busy and not writer.done()
    with pytest.raises(RuntimeError, match="still in flight"):
        writer.submit(lambda: None)
    gate.set()
    assert writer.wait() == "written" and not writer.busy
    writer.submit(lambda: 1 / 0)
    with pytest.raises(ZeroDivisionError):
        writer.wait()
    assert not writer.busy


def test_a_snapshot_keeps_its_values_when_the_tensors_change():
    live = {"w": torch.ones(3), "state": {0: {"exp_avg": torch.zeros(2), "step": 4}}, "lr": [1e-4]}
    copy = snapshot(live)
    live["w"].add_(1)
    live["state"][0]["exp_avg"].add_(1)
    assert torch.equal(copy["w"], torch.ones(3))
    assert torch.equal(copy["state"][0]["exp_avg"], torch.zeros(2))
    assert copy["state"][0]["step"] == 4 and copy["lr"] == [1e-4]


def test_the_stall_benchmark_times_both_ways_against_the_foreground(tmp_path):
    import json
    import subprocess
    import sys
    from pathlib import Path

    from script_helpers import script_env

    script = Path(__file__).resolve().parents[1] / "benchmarks" / "checkpoint_stall.py"
    out = tmp_path / "rows.json"
    proc = subprocess.run(
        [sys.executable, str(script), "--smoke", "--json", str(out)],
        capture_output=True,
        text=True,
        env=script_env(tmp_path / "xdg"),
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "| checkpoint | blocked s | complete s | blocked vs foreground |" in proc.stdout
    fore, back = json.loads(out.read_text())
    assert fore["checkpoint"] == "foreground (baseline)" and fore["blocked vs foreground"] == 1.0
    assert back["checkpoint"] == "background"
    for row in (fore, back):
        assert 0 < row["blocked s"] <= row["complete s"]


def test_a_second_ctrl_c_lets_the_write_in_flight_finish(tmp_path, data, monkeypatch):
    """Two real SIGINTs: the first while the step-2 checkpoint is written in the background
    (stop after this step), the second while the loop waits for that write. The write
    finishes (a Ctrl-C interrupting ``Thread.join`` would mark the writer stopped, and the
    process would exit under it, leaving a half-written folder)."""
    import os
    import signal

    import facediff.training.loop as training

    _slow_writes(monkeypatch, 0.5)
    advance = training.advance

    def advance_then_ctrl_c(loop, *a, **k):
        advance(loop, *a, **k)
        if loop.step == 3:
            os.kill(os.getpid(), signal.SIGINT)
            threading.Timer(0.3, os.kill, (os.getpid(), signal.SIGINT)).start()

    monkeypatch.setattr(training, "advance", advance_then_ctrl_c)
    run = tmp_path / "run"
    result = invoke(
        ["train", data, "--out", run, "--max-steps", "100", "--checkpoint-every", "2", *FAST]
    )
    assert result.exit_code == 130, result.output
    lines = error_lines(result)
    assert len(lines) == 1 and "second Ctrl-C" in lines[0]
    # train returned only once the write had ended: a process exits under no writer
    assert "facediff-checkpoint-writer" not in [t.name for t in threading.enumerate()]
    assert [s for s, _ in list_checkpoints(run)] == [2]
    assert not [p for p in run.rglob("*") if p.name.startswith(".tmp-")]
    verify_checkpoint(run / "checkpoints" / "step-00000002")
