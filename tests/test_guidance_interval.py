"""Guidance in a limited interval of noise levels (Kynkäänniemi et al. 2024)."""

from __future__ import annotations

import json
import math

import pytest
import torch
from sampling_helpers import EXACT, error_lines, invoke, make_run
from sampling_helpers import fake_loaded as fake_model

from facediff.categories import DEFAULT_CATEGORIES
from facediff.config import SampleConfig
from facediff.errors import FacediffError
from facediff.generation import generate, make_scheduler
from facediff.guidance import check_interval, conditions, noise_levels, unguided
from facediff.loading import LoadedModel
from facediff.mix import parse_mix
from facediff.model import scheduler_config

CATS = DEFAULT_CATEGORIES
NULL = CATS.null_label
SCHEDULE = scheduler_config(
    num_train_timesteps=1000, beta_schedule="squaredcos_cap_v2", prediction_type="v_prediction"
)
KW = dict(steps=10, guidance=3.0, device="cpu", precision="fp32", **EXACT)


def fake_loaded() -> LoadedModel:
    return fake_model(SCHEDULE, eps_error=0.02)


def sigmas(sampler: str, steps: int) -> list[float]:
    sched = make_scheduler(sampler, SCHEDULE)
    sched.set_timesteps(steps)
    return noise_levels(sched, sched.timesteps.tolist())


def test_noise_levels_are_the_schedules_sigma():
    sched = make_scheduler("dpmsolver++", SCHEDULE)
    sched.set_timesteps(25)
    got = noise_levels(sched, sched.timesteps.tolist())
    assert got == sorted(got, reverse=True) and len(got) == 25
    ab = sched.alphas_cumprod.double()
    for t, s in zip(sched.timesteps.tolist(), got):
        assert s == pytest.approx(math.sqrt((1 - ab[t]) / ab[t]))
    assert got[0] > 100 and got[-1] < 0.1  # the cosine schedule spans pure noise to clean


@pytest.mark.parametrize("sampler", ["dpmsolver++", "unipc", "ddim", "euler"])
def test_only_steps_inside_the_interval_evaluate_the_unconditional_rows(sampler):
    lm = fake_loaded()
    interval = (0.28, 5.42)
    generate(lm, parse_mix("OIE", CATS), [0, 1], sampler=sampler, guidance_interval=interval, **KW)
    inside = [0.28 < s <= 5.42 for s in sigmas(sampler, 10)]
    assert 0 < sum(inside) < len(inside)  # the test covers both kinds of step
    assert len(lm.unet.calls) == len(inside)
    for (size, labels), guided in zip(lm.unet.calls, inside):
        if guided:
            assert size == 8 and labels == [1, 1, 0, 0, 2, 2, NULL, NULL]
        else:  # the three category terms alone: a quarter fewer evaluations
            assert size == 6 and labels == [1, 1, 0, 0, 2, 2]


def test_an_interval_holding_every_step_is_plain_guidance_and_one_holding_none_is_guidance_1():
    lm = fake_loaded()
    mix = parse_mix("O:0.3,E:0.7", CATS)
    seeds = [3, 4, 5]
    plain = generate(lm, mix, seeds, **KW)
    assert torch.equal(generate(lm, mix, seeds, guidance_interval=(0, math.inf), **KW), plain)
    none = generate(lm, mix, seeds, guidance_interval=(1e6, 1e7), **KW)
    assert torch.equal(none, generate(lm, mix, seeds, **{**KW, "guidance": 1.0}))
    middle = generate(lm, mix, seeds, guidance_interval=(0.28, 5.42), **KW)
    assert not torch.equal(middle, plain) and not torch.equal(middle, none)


def test_outside_the_interval_attribute_terms_and_the_null_row_are_dropped():
    # Category O with gender riding along, age as its own term at scale 5.
    cond = conditions(
        (1,), (1.0,), "compose", 3.0, NULL, attributes=(1, 2), nulls=(2, 3),
        attribute_scales=(None, 5.0),
    )  # fmt: skip
    assert cond.labels == ((1, 1, 3), (NULL, 2, 2), (NULL, 2, 3))
    plain = unguided(cond)
    assert plain.labels == ((1, 1, 3),) and not plain.unconditional
    assert plain.weights == (1.0,) and plain.attribute_scales == ()


@pytest.mark.parametrize(
    "value", [(0.5, 0.2), (-1, 2), (1, 1), ("a", 1), (1,), (math.nan, 2), (math.inf, math.inf)]
)
def test_bad_intervals_are_refused(value):
    with pytest.raises(ValueError, match="interval"):
        check_interval(value)
    with pytest.raises(FacediffError, match="invalid guidance interval"):
        SampleConfig(guidance_interval=value)


def test_the_cli_records_the_interval_and_refuses_a_bad_one(tmp_path):
    run = make_run(tmp_path / "run", prediction_type="v_prediction")
    out = tmp_path / "s"
    args = ["sample", run, "-c", "O", "-n", "2", "--steps", "6", "--device", "cpu"]
    r = invoke([*args, "--guidance-interval", "0.28,5.42", "--out", out])
    assert r.exit_code == 0, r.output
    (entry,) = json.loads((out / "samples.json").read_text())["entries"]
    assert entry["guidance_interval"] == [0.28, 5.42]
    for bad in ("5", "3,1", "a,b", "1,2,3"):
        r = invoke([*args, "--guidance-interval", bad, "--out", tmp_path / bad])
        assert r.exit_code != 0
        (line,) = error_lines(r)
        assert "--guidance-interval" in line
        assert not (tmp_path / bad).exists()
