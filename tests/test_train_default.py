"""benchmarks/train_default.py --smoke: the default ``facediff train`` against eager."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from script_helpers import script_env

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "train_default.py"


@pytest.mark.slow
def test_smoke_times_default_training_against_eager_in_one_run(tmp_path):
    env = script_env(tmp_path / "xdg")
    out = tmp_path / "rows.json"
    work = tmp_path / "w"
    cmd = [sys.executable, str(SCRIPT), "--smoke", "--work", str(work), "--baseline-steps", "4"]
    proc = subprocess.run(
        [*cmd, "--json", str(out)], capture_output=True, text=True, env=env, timeout=600
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    header = "| row | flags | cache | steps | compiled | graphed | first step s | wall s | steady"
    assert header in proc.stdout
    rows = json.loads(out.read_text())["rows"]
    assert [(r["row"], r["cache"]) for r in rows] == [
        ("eager baseline", "-"),
        ("default (auto)", "cold"),
        ("default (auto)", "warm"),
    ]
    for r in rows:
        assert not r["compiled"]  # the CPU default stays eager
        assert r["steady images/s"] > 0 and 0 < r["first step s"] < r["wall s"]
        assert r["images/wall s"] < r["steady images/s"]  # start-up is counted
    assert [r["steps"] for r in rows] == [4, 6, 6]  # --baseline-steps shortens eager only
    assert rows[0]["vs eager"] == 1.0
    # The same training, only timed: eager's last loss (step 4) is the default's at step 4.
    logged = [json.loads(line) for line in (work / "run-1" / "metrics.jsonl").open()]
    at4 = [r["loss"] for r in logged if r.get("step") == 4 and "loss" in r]
    assert at4 == [rows[0]["loss"]]
    assert rows[1]["loss"] == rows[2]["loss"]


@pytest.mark.slow
def test_a_run_cut_short_keeps_the_rows_it_finished(tmp_path):
    """The GPU call has a time limit: each finished row is written before the next starts."""
    env = script_env(tmp_path / "xdg")
    out = tmp_path / "rows.json"
    cmd = [sys.executable, str(SCRIPT), "--smoke", "--work", str(tmp_path / "w")]
    cmd += ["--json", str(out), "--extra=--no-such-option"]  # the fourth process fails
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode != 0 and "--no-such-option" in proc.stderr
    kept = json.loads(out.read_text())
    assert kept["policy"] == "partial"
    finished = ["eager baseline", "default (auto)", "default (auto)"]
    assert [r["row"] for r in kept["rows"]] == finished
    printed = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    assert printed == kept["rows"]


@pytest.mark.slow
def test_rows_split_over_two_calls_share_the_work_folder(tmp_path):
    """A GPU call can run eager and cold, do other work, then the warm row in a second call:
    the warm row has its own steps, its run folder keeps its number, and it is compared
    with the first call's eager row."""
    env = script_env(tmp_path / "xdg")
    work = tmp_path / "w"
    base = [sys.executable, str(SCRIPT), "--smoke", "--work", str(work)]
    first = subprocess.run(
        [*base, "--rows", "eager,cold", "--json", str(tmp_path / "a.json")],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    assert first.returncode == 0, first.stderr[-3000:]
    a = json.loads((tmp_path / "a.json").read_text())["rows"]
    assert [r["cache"] for r in a] == ["-", "cold"] and not (work / "run-2").exists()
    second = subprocess.run(
        [*base, "--rows", "warm", "--warm-steps", "4", "--json", str(tmp_path / "b.json")],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    assert second.returncode == 0, second.stderr[-3000:]
    (b,) = json.loads((tmp_path / "b.json").read_text())["rows"]
    assert (b["cache"], b["steps"]) == ("warm", 4)
    assert (work / "run-2" / "metrics.jsonl").is_file()
    assert b["vs eager"] == pytest.approx(b["steady images/s"] / a[0]["steady images/s"])
    bad = subprocess.run([*base, "--rows", "hot"], capture_output=True, text=True, env=env)
    assert bad.returncode == 2 and "--rows" in bad.stderr


@pytest.mark.slow
def test_no_default_compares_extra_rows_with_eager_alone(tmp_path):
    """How a GPU call times ``--cuda-graphs``: eager against the extra row only. On the
    CPU the flag notes that it does not apply, so both rows train the same steps alike."""
    env = script_env(tmp_path / "xdg")
    out = tmp_path / "rows.json"
    cmd = [sys.executable, str(SCRIPT), "--smoke", "--work", str(tmp_path / "w")]
    cmd += ["--no-default", "--rows", "eager,cold", "--extra", "--no-compile --cuda-graphs"]
    proc = subprocess.run(
        [*cmd, "--json", str(out)], capture_output=True, text=True, env=env, timeout=600
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = json.loads(out.read_text())["rows"]
    assert [(r["row"], r["cache"]) for r in rows] == [
        ("eager baseline", "-"),
        ("--no-compile --cuda-graphs", "cold"),
    ]
    assert rows[0]["loss"] == rows[1]["loss"] and rows[1]["vs eager"] > 0
    assert not rows[0]["graphed"] and not rows[1]["graphed"]  # the CPU trains eagerly
