"""End to end on synthetic faces: a briefly trained tiny model is judged better than an
untrained one, and its mixes move the judge's probabilities toward the weights."""

import pytest
from evaluate_helpers import make_untrained_run, write_prepared

from facediff.config import SampleConfig, TrainConfig
from facediff.evaluation import evaluate
from facediff.evaluation.judge_training import JudgeConfig
from facediff.synthetic import make_faces

MIXES = ["O", "I", "E", "O:0.8,I:0.2", "O:0.2,I:0.8"]


def _mean_hit_rate(report):
    rows = report["hit_rate"]
    return sum(r["hit_rate"] for r in rows) / len(rows)


@pytest.mark.slow
def test_trained_model_beats_untrained_and_mixes_follow_weights(tmp_path):
    from facediff.training import train

    images, labels = make_faces(40, size=16, seed=0)
    data = write_prepared(tmp_path / "data", images, labels)
    config = TrainConfig(
        preset="tiny",
        max_steps=200,
        batch_size=32,
        lr=2e-3,
        lr_warmup_steps=20,
        checkpoint_every=10**6,
        preview_every=0,
        log_every=50,
        ema_decay=0.99,
        device="cpu",
    )
    train(data, tmp_path / "trained", config)
    untrained = make_untrained_run(tmp_path / "untrained", data)
    kw = dict(
        per_group=12,
        mixes=MIXES,
        sample_config=SampleConfig(steps=10),
        judge_config=JudgeConfig(width=8, epochs=10),
        device="cpu",
    )
    trained = evaluate(tmp_path / "trained", **kw).report
    baseline = evaluate(untrained, **kw).report

    assert trained["judge"]["heldout_accuracy"]["overall"] > 0.9
    assert _mean_hit_rate(trained) > 0.6
    assert _mean_hit_rate(trained) > _mean_hit_rate(baseline) + 0.2
    p_o = {r["mix"]: r["mean_probability"]["O"] for r in trained["mix_balance"]}
    assert p_o["O80I20"] > p_o["O20I80"] + 0.2
    assert trained["samples"]["groups"]["O80I20"]["weights"] == pytest.approx([0.8, 0.2])
