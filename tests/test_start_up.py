"""benchmarks/start_up.py --smoke: where the time to the first image goes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from script_helpers import script_env

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "start_up.py"


@pytest.mark.slow
def test_smoke_times_each_stage_to_the_first_image_in_a_fresh_process(tmp_path):
    env = script_env()
    out = tmp_path / "rows.json"
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), "--smoke", "--json", str(out)],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    header = "| row | autotune | interpreter | import torch | device | facediff imports |"
    assert header in proc.stdout
    rows = json.loads(out.read_text())["rows"]
    names = ["autotune on, all imports (before)", "all imports", "default"]
    assert [r["row"] for r in rows] == [*names, "facediff sample, all imports", "facediff sample"]
    stages = ["interpreter", "import torch", "device", "facediff imports", "load"]
    stages += ["first batch", "second batch"]
    for r in rows[:3]:
        times = [r[s] for s in stages]
        assert times[0] > 0 and times == sorted(times)  # cumulative, in order
        assert r["import torch"] > 0.1  # a fresh process: torch is really imported
        assert r["autotune"] is None  # the CPU has no cuDNN
    # Only the default kept diffusers' unused imports out (none was imported before).
    assert [r["kept out"] for r in rows[:3]] == [[], [], ["transformers", "peft", "scipy"]]
    # and the eager job never imported the compiler, which a plain import of diffusers does.
    assert [r["compiler imported"] for r in rows[:3]] == [True, True, False]
    for r in rows[3:]:  # the command as typed: its first PNG comes before it exits
        assert 0.5 < r["first batch"] <= r["exit"]


def test_a_missing_run_is_one_line_from_argparse():
    proc = subprocess.run([sys.executable, str(SCRIPT)], capture_output=True, text=True)
    assert proc.returncode == 2 and "RUN is required" in proc.stderr
