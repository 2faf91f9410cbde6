"""evaluate --heldout: realism, colour and memorisation against photos the model never
trained on; photos also in the training data dropped; bad held-out data refused."""

from __future__ import annotations

import json

import pytest
import torch
from evaluate_helpers import SIZE, faces_and_untrained_run, write_prepared, write_samples
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
    assert report["realism"]["judge"]["pooled"]["n_real"] == len(unseen)
    assert report["memorisation"]["baseline"].startswith("held-out photos the model never trained")
    md = (tmp_path / "ev" / "report.md").read_text()
    assert f"Real photos: `{held}`, {len(unseen)} photos the model never trained on; 4 " in md
    assert any("never trained on" in n for n in report["notes"])

    # without --heldout: the judge's split of the training data, and the report says so
    default = evaluate(run, out=tmp_path / "ev0", **kw).report
    assert "heldout" not in default["data"]
    judge_split = default["judge"]["split"]["heldout_count"]
    assert default["realism"]["judge"]["pooled"]["n_real"] == judge_split
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
