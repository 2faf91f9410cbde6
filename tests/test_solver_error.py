"""benchmarks/solver_error.py: each sampler's distance from the many-step ODE solution."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from script_helpers import script_env

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "solver_error.py"


def run_script(*args: str, tmp_path: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(SCRIPT), *args],
        capture_output=True,
        text=True,
        env=script_env(tmp_path / "xdg"),
        timeout=600,
    )


def test_more_steps_land_closer_to_the_reference_and_the_table_names_the_default(tmp_path):
    out = tmp_path / "rows.json"
    proc = run_script(
        "--smoke",
        "--samplers",
        "dpmsolver++,unipc,ddim",
        "--steps",
        "2,8",
        "--reference-steps",
        "40",
        "--json",
        str(out),
        tmp_path=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(out.read_text())
    rms = {(r["sampler"], r["steps"]): r["rms"] for r in result["rows"] if r["spacing"] == "time"}
    logsnr = {r["steps"]: r["rms"] for r in result["rows"] if r["spacing"] == "logsnr"}
    # Every sampler at every step count, and the default recipe (the yardstick) as well;
    # DPM-Solver++ with log-SNR spacing too (UniPC and DDIM take no custom timesteps).
    assert set(rms) == {
        *((s, n) for s in ("dpmsolver++", "unipc", "ddim") for n in (2, 8)),
        ("dpmsolver++", 25),
    }
    assert set(logsnr) == {2, 8} and logsnr[8] < logsnr[2]
    assert all(r["sampler"] == "dpmsolver++" for r in result["rows"] if r["spacing"] != "time")
    for sampler in ("dpmsolver++", "unipc", "ddim"):
        assert rms[sampler, 8] < rms[sampler, 2], sampler
    # The many-step solvers converge on the reference; first-order DDIM lags behind.
    assert rms["dpmsolver++", 8] < rms["ddim", 8]
    assert rms["unipc", 8] < rms["ddim", 8]
    refs = result["references"]  # each sampler against its own 40-step solution
    assert set(refs) == {"dpmsolver++", "unipc", "ddim"}
    for sampler in ("dpmsolver++", "unipc"):
        assert 0 < refs[sampler]["half_steps_rms"] < rms[sampler, 8] < rms[sampler, 2]
    assert refs["dpmsolver++"]["from_default_limit"] == 0 < refs["unipc"]["from_default_limit"]
    assert result["images"] == 6 and result["categories"] == ["I", "O", "E"]
    assert "| sampler | 2 steps | 8 steps | 25 steps |" in proc.stdout
    target = rms["dpmsolver++", 25]
    assert f"(dpmsolver++ 25 steps: {target:.2f}) at 25 steps" in proc.stdout
    assert "| dpmsolver++, logsnr spacing |" in proc.stdout
    assert "unipc: its 40-step solution (time spacing) moves" in proc.stdout
    assert "ddim: its 40-step solution (time spacing) moves" in proc.stdout
    assert "its limit lies" in proc.stdout


def test_bad_options_and_a_missing_run_are_refused_in_one_line(tmp_path):
    proc = run_script("--smoke", "--samplers", "dpmsolver++,ddpm", tmp_path=tmp_path)
    assert proc.returncode == 2
    assert "--samplers: ddpm is not one of" in proc.stderr
    assert "Traceback" not in proc.stderr
    proc = run_script("--smoke", "--steps", "10,x", tmp_path=tmp_path)
    assert proc.returncode == 2 and "--steps: expected" in proc.stderr
    proc = run_script("--smoke", "--spacings", "time,karras", tmp_path=tmp_path)
    assert proc.returncode == 2 and "--spacings: karras is not one of time, logsnr" in proc.stderr
    missing = tmp_path / "no-such-run"
    proc = run_script(str(missing), tmp_path=tmp_path)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert proc.stderr.startswith("solver_error.py: error: ") and str(missing) in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
