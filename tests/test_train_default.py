"""benchmarks/train_default.py --smoke: the default ``facediff train`` against eager."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "train_default.py"


@pytest.mark.slow
def test_smoke_times_default_training_against_eager_in_one_run(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    env["XDG_CACHE_HOME"] = str(tmp_path / "xdg")
    out = tmp_path / "rows.json"
    cmd = [sys.executable, str(SCRIPT), "--smoke", "--work", str(tmp_path / "w")]
    proc = subprocess.run(
        [*cmd, "--json", str(out)], capture_output=True, text=True, env=env, timeout=600
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    header = "| row | flags | cache | compiled | first step s | wall s | steady images/s"
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
    assert rows[0]["vs eager"] == 1.0
    assert rows[1]["loss"] == rows[0]["loss"]  # the same training, only timed
