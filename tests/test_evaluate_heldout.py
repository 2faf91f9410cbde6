"""evaluate --heldout: realism, colour and memorisation against photos the model never
trained on; photos also in the training data dropped; bad held-out data refused."""

from __future__ import annotations

import json

import pytest
import torch
from evaluate_helpers import (
    SIZE,
    faces_and_untrained_run,
    make_untrained_run,
    write_prepared,
    write_samples,
)
from typer.testing import CliRunner

from facediff.categories import DEFAULT_CATEGORIES, CategoryMap
from facediff.cli import app
from facediff.errors import ConfigError
from facediff.evaluation import evaluate
from facediff.evaluation.judge_training import JudgeConfig
from facediff.synthetic import make_faces

JUDGE = JudgeConfig(width=8, epochs=1)


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    root = tmp_path_factory.mktemp("heldout")
    data, run, images, labels = faces_and_untrained_run(root)
    fresh, fresh_labels = make_faces(20, size=SIZE, seed=11)
    o = DEFAULT_CATEGORIES.index("O")
    samples = write_samples(
        root / "samples",
        {
            "O": ({"O": 1.0}, fresh[fresh_labels == o][:6]),
            "I": ({"I": 1.0}, fresh[fresh_labels == DEFAULT_CATEGORIES.index("I")][:6]),
        },
    )
    return data, run, samples, images, labels


def _heldout(root, images, labels, name="held"):
    return write_prepared(root / name, images, labels)


def test_realism_and_memorisation_use_the_heldout_photos(env, tmp_path):
    data, run, samples, train_images, train_labels = env
    unseen, unseen_labels = make_faces(30, size=SIZE, seed=5)
    o = DEFAULT_CATEGORIES.index("O")
    # 4 training photos slipped in: dropped, and counted
    images = torch.cat([unseen, train_images[:4]])
    labels = torch.cat([unseen_labels, train_labels[:4]])
    held = _heldout(tmp_path, images, labels)
    kw = dict(data=data, samples=samples, judge_config=JUDGE, device="cpu")
    report = evaluate(run, heldout=held, out=tmp_path / "ev", **kw).report
    assert report["data"]["heldout"] == {
        "path": str(held),
        "fingerprint": json.loads((held / "manifest.json").read_text())["packed"]["sha256"],
        "images": len(unseen),
        "dropped": 4,
    }
    per_cat = report["realism"]["judge"]["per_category"]
    assert per_cat["O"]["n_real"] == int((unseen_labels == o).sum())
    i = DEFAULT_CATEGORIES.index("I")
    sampled = int(((unseen_labels == o) | (unseen_labels == i)).sum())  # O and I were sampled
    assert report["realism"]["judge"]["pooled"]["n_real"] == sampled
    assert report["memorisation"]["baseline"].startswith("held-out photos the model never trained")
    md = (tmp_path / "ev" / "report.md").read_text()
    assert f"Real photos: `{held}`, {len(unseen)} photos the model never trained on; 4 " in md
    assert any("never trained on" in n for n in report["notes"])

    # without --heldout: the judge's split of the training data, and the report says so
    default = evaluate(run, out=tmp_path / "ev0", **kw).report
    assert "heldout" not in default["data"]
    split = default["judge"]["heldout_accuracy"]["per_category"]
    assert default["realism"]["judge"]["pooled"]["n_real"] == split["O"]["n"] + split["I"]["n"]
    assert "which the model trained on" in (tmp_path / "ev0" / "report.md").read_text()


def test_the_memorisation_baseline_is_the_unseen_photos_distance_to_the_training_set(env, tmp_path):
    """Held-out photos that are near-copies of training photos (a few grey levels off)
    make a tiny baseline: samples as far from the training set as fresh faces are then
    not counted as memorised."""
    data, run, samples, train_images, train_labels = env
    near = (train_images[:30].int() + 3).clamp(0, 255).to(torch.uint8)
    held = _heldout(tmp_path, near, train_labels[:30], "near")
    kw = dict(data=data, samples=samples, judge_config=JUDGE, device="cpu")
    memo = evaluate(run, heldout=held, out=tmp_path / "ev", **kw).report["memorisation"]
    assert memo["real_median_nn_distance"] < 0.02
    assert memo["memorised_share"] == 0.0


@pytest.mark.parametrize("case", ["missing", "size", "categories", "all_trained"])
def test_bad_heldout_data_is_refused_naming_the_option(env, tmp_path, case):
    data, run, samples, train_images, train_labels = env
    if case == "missing":
        held, match = tmp_path / "nope", "prepared data not found"
    elif case == "size":
        big, big_labels = make_faces(10, size=2 * SIZE, seed=3)
        held, match = _heldout(tmp_path, big, big_labels), f"prepare it with --size {SIZE}"
    elif case == "categories":
        two = CategoryMap.from_list(DEFAULT_CATEGORIES.to_list()[:2])
        few, few_labels = make_faces(10, size=SIZE, seed=3)
        keep = few_labels < 2
        held = write_prepared(tmp_path / "two", few[keep], few_labels[keep], categories=two)
        match = "prepare both with the same categories"
    else:
        held, match = _heldout(tmp_path, train_images, train_labels), "also in the training data"
    with pytest.raises(ConfigError, match=match):
        evaluate(run, data=data, samples=samples, heldout=held, out=tmp_path / "ev")
    assert not (tmp_path / "ev").exists()  # refused before anything is written
    args = ["evaluate", str(run), "--data", str(data), "--samples", str(samples)]
    result = CliRunner().invoke(app, [*args, "--heldout", str(held), "--out", str(tmp_path / "ev")])
    out = result.output  # typer's runner mixes stderr into output
    if "facediff: error:" not in out:
        out += getattr(result, "stderr", "") or ""
    errors = [line for line in out.splitlines() if line.startswith("facediff: error:")]
    assert result.exit_code == 2 and "Traceback" not in out  # a usage error
    assert len(errors) == 1 and errors[0].startswith(f"facediff: error: --heldout {held}")


def test_thin_groups_are_named_and_the_pool_holds_the_same_categories(env, tmp_path):
    """Held-out photos with no European, 3 Oriental and 60 Indian: E's realism is not
    measured and the report says why, the few O photos are warned about, and 'pooled' compares the
    I and O samples with the I and O photos only (E's samples have no photos to meet)."""
    data, run, _, _, _ = env
    unseen, unseen_labels = make_faces(60, size=SIZE, seed=5)
    i, o, e = (DEFAULT_CATEGORIES.index(c) for c in "IOE")
    first_o = (unseen_labels == o) & (torch.cumsum((unseen_labels == o).int(), 0) <= 3)
    keep = (unseen_labels == i) | first_o
    held = _heldout(tmp_path, unseen[keep], unseen_labels[keep])
    n_i = int((unseen_labels == i).sum())
    fresh, fresh_labels = make_faces(30, size=SIZE, seed=12)
    samples = write_samples(
        tmp_path / "s",
        {c: ({c: 1.0}, fresh[fresh_labels == k][:6]) for c, k in (("I", i), ("O", o), ("E", e))},
    )
    kw = dict(data=data, samples=samples, judge_config=JUDGE, device="cpu")
    report = evaluate(run, heldout=held, out=tmp_path / "ev", **kw).report
    judge = report["realism"]["judge"]
    assert judge["per_category"]["E"]["n_real"] == 0 and judge["per_category"]["E"]["fd"] is None
    assert judge["per_category"]["O"]["n_real"] == 3
    assert judge["pooled"]["n_real"] == n_i + 3 and judge["pooled"]["n_samples"] == 12
    assert sorted(judge["pooled_categories"]) == ["I", "O"]
    (thin,) = [w for w in report["warnings"] if "real photos" in w]
    assert n_i >= 50 and "I (" not in thin  # enough I photos: not named
    assert "O (3)" in thin and "none of E (not measured)" in thin
    assert "--holdout" in str(thin) and str(held) not in thin  # warnings hold no path
    md = (tmp_path / "ev" / "report.md").read_text()
    assert "| pooled (I, O) | 12 |" in md

    # every category has photos: the pool is all of them, under its plain name
    full = evaluate(run, out=tmp_path / "ev2", **kw).report["realism"]["judge"]
    assert sorted(full["pooled_categories"]) == ["E", "I", "O"]
    assert "| pooled | 18 |" in (tmp_path / "ev2" / "report.md").read_text()


def test_a_category_the_judge_was_barely_tested_on_is_named(tmp_path):
    """E has 6 photos, so the judge is tested on 1 of them: even a right answer there
    says little (95% interval 0.21-1.00), and the report names E; I and O, with 120
    photos each (18 to test on) and a judge that knows them, are not named."""
    images, labels = make_faces(120, size=SIZE, seed=0)
    e = DEFAULT_CATEGORIES.index("E")
    keep = (labels != e) | (torch.cumsum((labels == e).int(), 0) <= 6)
    data = write_prepared(tmp_path / "data", images[keep], labels[keep])
    run = make_untrained_run(tmp_path / "run", data)
    fresh, fresh_labels = make_faces(10, size=SIZE, seed=12)
    samples = write_samples(tmp_path / "s", {"E": ({"E": 1.0}, fresh[fresh_labels == e][:4])})
    judge = JudgeConfig(width=8, epochs=8)
    report = evaluate(run, data=data, samples=samples, judge_config=judge, device="cpu").report
    accuracy = report["judge"]["heldout_accuracy"]["per_category"]
    assert accuracy["E"]["n"] == 1 and accuracy["I"]["n"] == 18 and accuracy["I"]["accuracy"] == 1
    (weak,) = [w for w in report["warnings"] if w.startswith("the judge's accuracy")]
    assert "E (" in weak and "of 1 held-out" in weak and "I (" not in weak and "O (" not in weak


def test_data_other_than_the_models_training_set_is_named(env, tmp_path):
    """`evaluate --data` takes the data as what the model trained on (its counts, the
    memorisation reference): data with another fingerprint than the run recorded is
    warned about, by a checkpoint and by an export alike."""
    data, run, samples, _, _ = env
    other_images, other_labels = make_faces(30, size=SIZE, seed=21)
    other = write_prepared(tmp_path / "other", other_images, other_labels)
    kw = dict(samples=samples, judge_config=JUDGE, device="cpu")
    same = evaluate(run, data=data, out=tmp_path / "ev", **kw).report["warnings"]
    assert not [w for w in same if "trained on" in w and "fingerprint" in w]
    report = evaluate(run, data=other, out=tmp_path / "ev2", **kw).report
    (line,) = [w for w in report["warnings"] if "fingerprint" in w]
    assert line.startswith("the prepared data is not the set the model trained on")
    assert str(other) not in line  # warnings hold no path
    export = tmp_path / "export"
    assert CliRunner().invoke(app, ["export", str(run), "--out", str(export)]).exit_code == 0
    exported = evaluate(export, data=other, out=tmp_path / "ev3", **kw).report["warnings"]
    assert [w for w in exported if "fingerprint" in w] == [line]
