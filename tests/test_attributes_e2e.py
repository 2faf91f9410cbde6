"""Issue 14's "Done when" on the CPU: on demo-data's synthetic people (age and gender cues
drawn visibly, UTKFace-style names read back by ``prepare --attributes utkface``), a tiny
model follows a requested attribute far above chance, and leaving it free gives the data's
mix — both measured by the judge of ``evaluate``.

A model that ignores its attributes would fail: its samples asked for a value are judged
that value exactly as often as its samples with the attribute left free (the *free rate*,
whose mean over an attribute's values is chance), which the hit rates are compared with.
The free mix is measured at guidance 1, i.e. sampling the model's conditional p(x | c)
itself; classifier-free guidance above 1 sharpens each category toward its mode (Ho &
Salimans 2022) and, on this tiny model, narrows the free attributes' mix (at the default
guidance 3 the free samples of one category came out 96% female).
Measured (one CPU thread, 3.5 minutes of CPU time): judge balanced accuracy gender 0.92, age
0.92; mean hit rate gender 0.92 (worst cell E male 0.75), age 0.99 at guidance 3; free mix's
TVD from the data's, pooled over the categories: gender 0.15, age 0.22 (at guidance 3 it is
0.35 for gender, which this test would refuse).
"""

from __future__ import annotations

import pytest

from facediff.config import SampleConfig, TrainConfig
from facediff.evaluation import evaluate
from facediff.evaluation.judge_training import JudgeConfig
from facediff.evaluation.maths import total_variation

CHANCE = {"gender": 1 / 2, "age": 1 / 3}


def _pooled_tvd(report: dict, attribute: str) -> float:
    """TVD between the free samples' mix and the data's, pooled over the categories
    (each category has as many samples; the data's mixes are averaged likewise)."""
    rows = [f for f in report["attributes"]["free"] if f["attribute"] == attribute]
    values = list(rows[0]["data"])
    samples = [sum(r["samples"][v] for r in rows) / len(rows) for v in values]
    data = [sum(r["data"][v] for r in rows) / len(rows) for v in values]
    return total_variation(samples, data)


@pytest.mark.slow
def test_a_tiny_model_follows_requested_attributes_and_free_gives_the_data_mix(tmp_path):
    from facediff.preparation import prepare
    from facediff.synthetic import make_demo_data
    from facediff.training import train

    make_demo_data(tmp_path / "raw", per_category=80, size=32, seed=0)
    prepare(tmp_path / "raw", tmp_path / "data", size=32, attributes="utkface", age_edges="30,60")
    config = TrainConfig(
        preset="tiny",
        max_steps=400,
        batch_size=16,
        lr=2e-3,
        lr_warmup_steps=20,
        checkpoint_every=10**6,
        preview_every=0,
        log_every=100,
        ema_decay=0.99,
        attribute_dropout=0.3,  # the free (null) value of each attribute is trained often
        device="cpu",
    )
    run = tmp_path / "run"
    train(tmp_path / "data", run, config)
    kw = dict(
        mixes=["I", "O", "E"],
        judge_config=JudgeConfig(width=16, epochs=30),
        inception=False,
        device="cpu",
    )
    # Requested: 16 samples per category × value, at the default guidance.
    asked = evaluate(
        run, per_group=16, per_cell=16, sample_config=SampleConfig(steps=10), **kw
    ).report
    judge = asked["judge"]["attribute_accuracy"]
    section = asked["attributes"]
    assert section["per_cell"] == 16 and len(section["cells"]) == 3 * (2 + 3)
    for name, chance in CHANCE.items():
        assert judge[name]["balanced"] > 0.8, judge[name]  # the judge can be trusted
        cells = [c for c in section["cells"] if name in c["requested"]]
        hit = sum(c["hit_rate"] for c in cells) / len(cells)
        free = sum(c["per_attribute"][name]["free_rate"] for c in cells) / len(cells)
        assert free == pytest.approx(chance)  # the free rates of a category sum to 1
        assert hit > chance + 0.35, (name, hit)  # gender > 0.85, age > 0.68
    assert section["worst_cell"]["hit_rate"] == min(c["hit_rate"] for c in section["cells"])

    # Free: 48 samples per category with every attribute left free, no guidance.
    free = evaluate(
        run,
        per_group=48,
        per_cell=0,
        sample_config=SampleConfig(steps=10, guidance=1.0),
        out=tmp_path / "free",
        **kw,
    ).report
    assert free["attributes"]["cells"] == [] and free["attributes"]["worst_cell"] is None
    # A model that always gave one value would be 0.5 (gender) or 0.67 (age) away.
    for name in CHANCE:
        assert _pooled_tvd(free, name) < 0.3, free["attributes"]["free"]
