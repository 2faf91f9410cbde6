"""Step spacing: steps evenly in time (the scheduler's own) or evenly in log-SNR."""

from __future__ import annotations

import itertools
import json
import math

import pytest
import torch
from sampling_helpers import EXACT, error_lines, fake_loaded, invoke, make_run

from facediff.categories import DEFAULT_CATEGORIES
from facediff.config import LOGSNR_SAMPLERS, SAMPLERS, SPACINGS, SampleConfig
from facediff.errors import FacediffError
from facediff.generation import generate, make_scheduler, max_steps
from facediff.guidance import SPACINGS as GUIDANCE_SPACINGS
from facediff.guidance import logsnr_timesteps, set_timesteps, takes_timesteps
from facediff.mix import parse_mix
from facediff.model import scheduler_config

CATS = DEFAULT_CATEGORIES
COSINE = scheduler_config(
    num_train_timesteps=1000, beta_schedule="squaredcos_cap_v2", prediction_type="epsilon"
)


def log_snr(scheduler, t: int) -> float:
    a = float(scheduler.alphas_cumprod.double()[t])
    return 0.5 * math.log(a / (1 - a))


def test_the_config_and_the_exported_module_agree_on_the_spacings():
    assert SPACINGS == GUIDANCE_SPACINGS == ("time", "logsnr")
    for sampler in SAMPLERS:  # logsnr where the scheduler takes a list of timesteps
        assert takes_timesteps(make_scheduler(sampler, COSINE)) == (sampler in LOGSNR_SAMPLERS)


@pytest.mark.parametrize("steps", [2, 10, 15, 25])
def test_logsnr_steps_run_from_the_same_start_to_0_evenly_in_log_snr(steps):
    time, logsnr = make_scheduler("dpmsolver++", COSINE), make_scheduler("dpmsolver++", COSINE)
    set_timesteps(time, steps, "time")
    set_timesteps(logsnr, steps, "logsnr")
    t = [int(x) for x in logsnr.timesteps]
    assert len(t) == steps and t[0] == int(time.timesteps[0]) == 995 and t[-1] == 0
    assert t == sorted(set(t), reverse=True)
    gaps = [log_snr(logsnr, b) - log_snr(logsnr, a) for a, b in itertools.pairwise(t)]
    even = (log_snr(logsnr, 0) - log_snr(logsnr, 995)) / (steps - 1)
    # Each gap is the even gap, up to rounding to whole timesteps (steep only near t = 0).
    assert all(abs(g - even) < 0.35 * even for g in gaps[:-2]), (gaps, even)
    # Time spacing is far from even in log-SNR: its first gap is many times its last.
    assert t != [int(x) for x in time.timesteps]


def test_many_logsnr_steps_stay_distinct_down_to_every_timestep():
    sched = make_scheduler("dpmsolver++", COSINE)
    alphas = sched.alphas_cumprod
    assert logsnr_timesteps(alphas, 995, 996) == list(range(995, -1, -1))
    t = logsnr_timesteps(alphas, 995, 500)  # rounding repeats many low timesteps
    assert len(set(t)) == 500 and t == sorted(t, reverse=True) and t[0] <= 995 and t[-1] == 0
    assert logsnr_timesteps(alphas, 995, 1) == [995]
    with pytest.raises(ValueError, match="takes 1 to 996 steps"):
        logsnr_timesteps(alphas, 995, 997)
    assert max_steps("dpmsolver++", COSINE, "logsnr") == 996
    assert max_steps("dpmsolver++", COSINE) == 1000


def rms(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.float() - b.float()).pow(2).mean().sqrt())


def test_logsnr_solves_the_same_ode_as_time_spacing():
    """Per-pixel Gaussian data with its exact ε: both spacings approach one solution."""
    lm, mix, seeds = fake_loaded(COSINE, spread=0.3), parse_mix("O", CATS), list(range(8))

    def solve(steps: int, spacing: str) -> torch.Tensor:
        return generate(lm, mix, seeds, steps=steps, spacing=spacing, device="cpu", **EXACT)

    limit = solve(600, "time")
    few, many = rms(solve(6, "logsnr"), limit), rms(solve(200, "logsnr"), limit)
    assert many < 0.1 < few / 10, (few, many)  # grey levels


def test_spacing_changes_the_faces_and_is_recorded(tmp_path):
    run = make_run(tmp_path / "run")
    args = ["sample", run, "-c", "O", "-n", "2", "--steps", "6", "--device", "cpu"]
    assert invoke([*args, "--out", tmp_path / "t"]).exit_code == 0
    r = invoke([*args, "--spacing", "logsnr", "--out", tmp_path / "l"])
    assert r.exit_code == 0, r.output
    time_entry = json.loads((tmp_path / "t" / "samples.json").read_text())["entries"][0]
    (entry,) = json.loads((tmp_path / "l" / "samples.json").read_text())["entries"]
    assert entry["spacing"] == "logsnr" and "spacing" not in time_entry  # absent: time
    png = sorted((tmp_path / "l").rglob("*.png"))
    assert png and [p.read_bytes() for p in png] != [
        p.read_bytes() for p in sorted((tmp_path / "t").rglob("*.png"))
    ]


@pytest.mark.parametrize(
    "extra",
    [
        ["--spacing", "karras"],
        ["--spacing", "logsnr", "--sampler", "unipc"],
        ["--spacing", "logsnr", "--sampler", "ddim"],
        ["--spacing", "logsnr", "--steps", "997"],
    ],
)
def test_a_bad_spacing_is_one_line_naming_the_option(tmp_path, extra):
    run = make_run(tmp_path / "run")
    out = tmp_path / "s"
    r = invoke(["sample", run, "-c", "O", "-n", "1", "--device", "cpu", "--out", out, *extra])
    assert r.exit_code != 0
    (line,) = error_lines(r)
    assert ("--steps" if "997" in extra else "--spacing") in line, line
    assert not out.exists() or not any(out.rglob("*.png"))


def test_the_config_refuses_logsnr_for_samplers_without_custom_timesteps():
    for sampler in ("unipc", "ddim"):
        with pytest.raises(FacediffError, match="needs the dpmsolver\\+\\+, euler or ddpm"):
            SampleConfig(sampler=sampler, spacing="logsnr")
    with pytest.raises(FacediffError, match="unknown spacing"):
        SampleConfig(spacing="uniform")
    for sampler in LOGSNR_SAMPLERS:
        assert SampleConfig(sampler=sampler, spacing="logsnr").spacing == "logsnr"
