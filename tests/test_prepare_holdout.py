"""prepare --holdout: photos kept out of training by a hash of their names, packed apart;
train never reads them, --force replaces them, evaluate measures against them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from evaluate_helpers import make_untrained_run, write_samples
from PIL import Image
from typer.testing import CliRunner

from facediff.cli import app
from facediff.config import HELDOUT_FILE, MANIFEST_FILE, PACKED_FILE
from facediff.dataset import load_held_out, load_prepared
from facediff.errors import ConfigError, FacediffError
from facediff.evaluation import evaluate
from facediff.evaluation.judge_training import JudgeConfig
from facediff.preparation import held_out_by_name, prepare
from facediff.synthetic import make_demo_data, make_faces


@pytest.fixture(scope="module")
def raw(tmp_path_factory):
    raw = tmp_path_factory.mktemp("raw") / "raw"
    make_demo_data(raw, per_category=20, size=24, seed=3)
    return raw


def _names(entries) -> set[str]:
    return {Path(e["source"]).name for e in entries}


def test_held_out_photos_are_packed_apart_and_never_in_the_training_set(raw, tmp_path):
    plain = load_prepared(prepare(raw, tmp_path / "plain", size=16, workers=1).out)
    report = prepare(raw, tmp_path / "d", size=16, workers=1, attributes="utkface", holdout=0.3)
    data = load_prepared(report.out)
    held = load_held_out(data)
    assert held is not None and load_held_out(plain) is None
    manifest = json.loads((report.out / MANIFEST_FILE).read_text())
    expected = {n for n in _names(plain.manifest["images"]) if held_out_by_name(n, 0.3)}
    assert 0 < len(expected) < len(plain)
    assert _names(manifest["holdout"]["images"]) == expected
    assert _names(manifest["images"]).isdisjoint(expected)
    assert len(data) + len(held) == len(plain) and len(held) == len(expected)
    assert report.held_out == len(expected) and report.kept == len(plain)
    # each packed image is the photo its entry names, labels and attributes alike
    by_name = {Path(e["source"]).name: i for i, e in enumerate(plain.manifest["images"])}
    for part, entries in ((data, manifest["images"]), (held, manifest["holdout"]["images"])):
        rows = [by_name[Path(e["source"]).name] for e in entries]
        assert torch.equal(part.images, plain.images[rows])
        assert torch.equal(part.labels, plain.labels[rows])
        assert part.attribute_labels is not None and len(part.attribute_labels) == len(rows)
    counts = [c["count"] for c in manifest["categories"]]
    assert counts == torch.bincount(data.labels, minlength=3).tolist()  # what train reads
    assert all((report.out / e["file"]).is_file() for e in manifest["holdout"]["images"])


def test_a_larger_fraction_holds_out_a_superset(raw, tmp_path):
    small = prepare(raw, tmp_path / "a", size=16, workers=1, holdout=0.1).out
    large = prepare(raw, tmp_path / "b", size=16, workers=1, holdout=0.4).out
    held = [
        json.loads((d / MANIFEST_FILE).read_text())["holdout"]["images"] for d in (small, large)
    ]
    assert _names(held[0]) < _names(held[1])


def test_force_replaces_a_held_out_dataset_and_all_its_files(raw, tmp_path):
    out = tmp_path / "d"
    prepare(raw, out, size=16, workers=1, holdout=0.3)
    prepare(raw, out, size=16, workers=1, force=True)
    assert not (out / HELDOUT_FILE).exists()
    manifest = json.loads((out / MANIFEST_FILE).read_text())
    assert "holdout" not in manifest
    pngs = {str(p.relative_to(out)) for p in out.rglob("*.png")}
    assert pngs == {e["file"] for e in manifest["images"]}  # no held-out PNG left over
    prepare(raw, out, size=16, workers=1, holdout=0.3, force=True)
    assert (out / HELDOUT_FILE).is_file()


def test_an_interrupted_prepare_leaves_no_held_out_file(raw, tmp_path, monkeypatch):
    from facediff import preparation

    real = preparation._write_packed

    def full_disk_on_the_training_set(out, images, labels, attributes, file=PACKED_FILE):
        if file == PACKED_FILE:
            raise OSError(28, "No space left on device")
        return real(out, images, labels, attributes, file)

    monkeypatch.setattr(preparation, "_write_packed", full_disk_on_the_training_set)
    with pytest.raises(OSError):
        prepare(raw, tmp_path / "d", size=16, workers=1, holdout=0.3)
    assert not (tmp_path / "d").exists()


def test_bad_fractions_are_refused_naming_the_option(tmp_path):
    raw = tmp_path / "raw"
    raw.mkdir()
    # one photo whose name is held out at 0.5: nothing would be left to train on
    name = next(f"indian_{i}.png" for i in range(1000) if held_out_by_name(f"indian_{i}.png", 0.5))
    Image.new("RGB", (32, 32), (150, 110, 90)).save(raw / name)
    with pytest.raises(FacediffError, match="leaving none to train on"):
        prepare(raw, tmp_path / "d", size=16, workers=1, holdout=0.5)
    assert not (tmp_path / "d").exists()
    with pytest.raises(ConfigError, match=r"must be from 0 to 0\.5"):
        prepare(raw, tmp_path / "d", size=16, workers=1, holdout=0.6)
    result = CliRunner().invoke(
        app, ["prepare", str(raw), "--out", str(tmp_path / "d"), "--holdout", "-0.1"]
    )
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert "--holdout must be from 0 to 0.5, got -0.1" in result.output


def test_evaluate_measures_against_the_held_out_photos_by_default(raw, tmp_path):
    data = prepare(raw, tmp_path / "d", size=16, workers=1, holdout=0.3).out
    held = load_held_out(load_prepared(data))
    run = make_untrained_run(tmp_path / "run", data)
    faces, labels = make_faces(12, size=16, seed=9)
    samples = write_samples(tmp_path / "s", {"O": ({"O": 1.0}, faces[labels == 1][:4])})
    kw = dict(samples=samples, judge_config=JudgeConfig(width=8, epochs=1), device="cpu")
    report = evaluate(run, out=tmp_path / "ev", **kw).report
    assert report["data"]["heldout"]["path"] == str(data / HELDOUT_FILE)
    assert report["data"]["heldout"]["images"] == len(held)
    assert report["realism"]["judge"]["pooled"]["n_real"] == int((held.labels == 1).sum())  # O
    assert report["judge"]["split"]["train_count"] + report["judge"]["split"]["heldout_count"] == (
        len(load_prepared(data))
    )  # the judge learns the training set only


def test_train_reads_the_training_set_only_and_says_what_it_left_out(raw, tmp_path):
    data = prepare(raw, tmp_path / "d", size=16, workers=1, holdout=0.3).out
    n_train = len(load_prepared(data))
    n_held = len(load_held_out(load_prepared(data)))
    args = ["train", str(data), "--out", str(tmp_path / "run"), "--preset", "tiny"]
    args += ["--device", "cpu", "--batch-size", str(n_train), "--max-steps", "1"]
    result = CliRunner().invoke(app, [*args, "--lr-warmup-steps", "0"])
    assert result.exit_code == 0, result.output
    assert (
        f"training on {n_train} images; the {n_held} prepare --holdout kept out are left for "
        "evaluate" in result.output
    )
    (metrics,) = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").open()]
    assert metrics["epoch"] == 1  # one batch of every training image is one whole epoch
