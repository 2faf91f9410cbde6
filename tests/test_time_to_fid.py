"""benchmarks/time_to_fid.py run --cpu: the split, a recipe trained as a user runs it,
samples in proportion to the held-out split, and the scored table."""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
from pathlib import Path

import pytest
from safetensors.torch import load_file
from script_helpers import import_script, script_env

from facediff.training_log import read_metrics

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "time_to_fid.py"


@pytest.mark.slow
def test_run_splits_trains_a_recipe_samples_and_scores(tmp_path):
    from facediff.dataset import load_prepared
    from facediff.evaluation import inception_weights
    from facediff.preparation import prepare
    from facediff.synthetic import make_demo_data

    make_demo_data(tmp_path / "raw", per_category=8, size=16, seed=0, people=False)
    prepare(tmp_path / "raw", tmp_path / "data", size=16)
    work = tmp_path / "w"
    # --max-steps in a recipe stops its run (the script adds --epochs only without it), so
    # the steps do not depend on how fast this machine is within the generous budget.
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), "run", str(tmp_path / "data"), "--work", str(work),
         "--cpu", "--holdout", "0.5", "--budgets", "120", "--samples", "6",
         "--recipes", "b4", "--recipe", "b4=--batch-size 4 --max-steps 6 --log-every 1"],
        capture_output=True, text=True, env=script_env(tmp_path / "xdg"), timeout=900,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]

    split = json.loads((work / "split.json").read_text())
    train, held = load_prepared(work / "data"), load_file(str(work / "heldout.safetensors"))
    assert split["train"] == len(train.labels) and split["heldout"] == len(held["labels"])
    assert split["train"] + split["heldout"] == 24 and split["heldout"] > 0
    # The held-out photos are not in the training data.
    sources = {Path(e["source"]).name for e in train.manifest["images"]}
    every = {Path(e["source"]).name for e in load_prepared(tmp_path / "data").manifest["images"]}
    assert len(sources) == split["train"] and len(every - sources) == split["heldout"]

    (row,) = json.loads((work / "rows.json").read_text())
    assert row["recipe"] == "b4" and row["step"] == 6 and row["images_seen"] == 24
    # The training speed: the median window after the first (start-up), the slowest full
    # one, and how the step ran (on the CPU neither compiled nor graphed).
    windows = [r["images_per_s"] for r in read_metrics(work / "runs" / "b4")]
    assert len(windows) >= 6
    assert row["train_images_per_s"] == statistics.median(windows[1:])
    assert row["slowest_window_images_per_s"] == min(windows[1:-1])
    assert row["compiled"] is False and row["graphed"] is False
    assert sum(row["per_category"]) == 6 and len(row["per_category"]) == 3
    samples = load_file(str(work / row["samples"]))
    assert tuple(samples["images"].shape) == (6, 3, 16, 16)
    counts = samples["labels"].bincount(minlength=3).tolist()
    assert counts == row["per_category"]

    results = json.loads((work / "results.json").read_text())
    scored, floor = results["rows"][0], results["floor"]
    assert 0.0 <= scored["cast_rate"] <= 1.0 and len(scored["mean_rgb"]) == 3
    # The colour shift needs 7 more training photos than categories to measure their
    # spread: this split has fewer, so it is left out, not made up.
    assert split["train"] < 10 and scored["colour_shift"] is None
    assert floor["colour_shift"] is None and "| cast rate | shift | look-alike |" in proc.stdout
    # two samples per category are too few to say which look alike: left out, not made up
    assert scored["look_alike"] is None and floor["look_alike"] is None
    if inception_weights() is not None:  # FID needs the optional Inception package
        assert scored["fid"] > 0 and floor["fid"] >= 0
    assert "| recipe | budget s | train wall s |" in proc.stdout
    assert "| b4 | 120 |" in proc.stdout and "| real vs real" in proc.stdout
    speed = f"| {row['train_images_per_s']:,.0f} (min {min(windows[1:-1]):,.0f}) |"
    assert "| train img/s |" in proc.stdout and speed in proc.stdout


def test_a_dataset_prepared_with_holdout_keeps_its_held_out_photos_out(tmp_path, monkeypatch):
    """Its own held-out photos join the split's: never in WORK/data, always scored against
    (the same name hash: at the same fraction the split itself holds out nothing more)."""
    from facediff.dataset import load_held_out, load_prepared
    from facediff.preparation import prepare
    from facediff.synthetic import make_demo_data

    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))
    import time_to_fid

    make_demo_data(tmp_path / "raw", per_category=8, size=16, seed=0, people=False)
    data = prepare(tmp_path / "raw", tmp_path / "data", size=16, workers=1, holdout=0.3).out
    own = load_held_out(load_prepared(data))
    info = time_to_fid.prepare_work(data, tmp_path / "w", 0.3)
    held = load_file(str(tmp_path / "w" / "heldout.safetensors"))
    assert info["heldout"] == len(own) > 0 and held["images"].equal(own.images)
    train = load_prepared(tmp_path / "w" / "data")  # a valid dataset without a holdout file
    assert len(train) == info["train"] == len(load_prepared(data))
    assert load_held_out(train) is None


def test_the_colour_shift_column_is_the_worst_categorys():
    import torch

    from facediff.evaluation.colour import fit_shift_reference
    from facediff.synthetic import make_faces

    module = import_script(SCRIPT)
    images, labels = make_faces(100, size=16, seed=0)
    fresh, fresh_labels = make_faces(40, size=16, seed=5)
    shifts = fit_shift_reference(images, labels, 3)
    clean = module.worst_shift(shifts, fresh, fresh_labels)
    green = fresh.clone()
    e = fresh_labels == 2
    green[e] = (0.8 * fresh[e].float() + 0.2 * torch.tensor([0.0, 200.0, 0.0]).view(1, 3, 1, 1)).to(
        torch.uint8
    )
    assert module.worst_shift(shifts, green, fresh_labels) == round(
        shifts.shift(green[e], {2: 1.0}), 3
    )
    assert module.worst_shift(shifts, green, fresh_labels) > clean
    assert module.worst_shift(None, fresh, fresh_labels) is None


def test_the_look_alike_column_is_the_worst_categorys():
    import torch

    from facediff.synthetic import make_faces

    module = import_script(SCRIPT)
    photos, photo_labels = make_faces(100, size=16, seed=0)
    fresh, labels = make_faces(40, size=16, seed=5)
    clean = module.worst_look_alike(fresh, labels, photos, photo_labels)
    assert clean is not None and clean <= 0.15
    e = torch.nonzero(labels == 2).flatten()
    twins = fresh.clone()
    twins[e[: len(e) // 2]] = fresh[e[len(e) // 2 : 2 * (len(e) // 2)]]  # E's faces, twice
    assert module.worst_look_alike(twins, labels, photos, photo_labels) == 1.0
    assert module.worst_look_alike(fresh[:6], labels[:6], photos, photo_labels) is None
