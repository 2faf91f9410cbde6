"""benchmarks/demo_budget.py: the demo's recipes for the same wall-clock budget, scored
against synthetic faces the model never trained on."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from script_helpers import script_env

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "demo_budget.py"


def _run(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    env = script_env(tmp_path / "xdg")
    cmd = [sys.executable, str(SCRIPT), "--work", str(tmp_path / "w"), *args]
    return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=900)


@pytest.mark.slow
def test_arms_train_for_one_budget_and_are_scored_on_unseen_faces(tmp_path):
    args = ["--minutes", "0.1", "--per-group", "4", "--heldout", "6", "--judge-epochs", "1"]
    from facediff.demo import DemoConfig

    demo = DemoConfig().guidance  # the arms sample at the demo's guidance but for -g
    arms = "b16,b16-raw,b16-g4,b4-lr5e-4"
    proc = _run(tmp_path, *args, "--arms", arms, "--mixes", "OI")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "| arm | guidance | steps | images | judge FD | vs baseline |" in proc.stdout
    assert "| cast rate | shift | look-alike | mix balance |" in proc.stdout
    rows = json.loads((tmp_path / "w" / "demo_budget.json").read_text())
    assert demo != 4.0
    assert [(r["arm"], r["batch"], r["lr"], r["ema"], r["guidance"]) for r in rows] == [
        ("b16", 16, 1e-3, True, demo),
        ("b16-raw", 16, 1e-3, False, demo),
        ("b16-g4", 16, 1e-3, True, 4.0),
        ("b4-lr5e-4", 4, 5e-4, True, demo),
    ]
    # -raw and -g score the same run
    assert rows[0]["steps"] == rows[1]["steps"] == rows[2]["steps"] > 0
    assert rows[3]["steps"] > 0
    assert rows[0]["fd"] != rows[2]["fd"]  # sampled at another guidance
    for r in rows:  # the OI mix's balance: the judge's view of it against 50/50
        assert 0 <= r["mix_balance"] <= 1
    for r in rows:  # each arm's own samples, scored against the unseen faces
        assert r["fd"] > 0 and r["fd_I"] is not None and 0 <= r["noise_rate"] <= 1
        assert r["colour_shift"] > 0  # the worst category's, from the report
        assert r["look_alike"] is None  # 4 samples a category: too few to say
    assert rows[0]["fd"] != rows[1]["fd"]  # EMA and raw weights draw different faces
    heldout = json.loads((tmp_path / "w" / "heldout" / "manifest.json").read_text())
    trained = json.loads((tmp_path / "w" / "data" / "manifest.json").read_text())
    unseen = {i["sha256"] for i in heldout["images"]}
    assert len(unseen) == 18 and not unseen & {i["sha256"] for i in trained["images"]}
    # the demo's raw weights at "b16-raw" come from the b16 run, not a second training
    runs = sorted(p.name for p in (tmp_path / "w").glob("run-*"))
    assert runs == ["run-0-b16", "run-3-b4-lr5e-4"]


def test_a_bad_arm_is_refused_in_one_line(tmp_path):
    for arms, said in [
        ("b16,x8", "bad arm 'x8'"),
        ("b16-raw", "the first arm trains"),
        ("b16-g2", "the first arm trains"),
        ("b16,b8-g2", "b8-g2 scores the run of b16: name its batch and rate"),
        ("b16,b16-lr5e-4-raw", "b16-lr5e-4-raw scores the run of b16"),
    ]:
        proc = _run(tmp_path, "--arms", arms)
        assert proc.returncode == 2 and said in proc.stderr
        assert "Traceback" not in proc.stderr
