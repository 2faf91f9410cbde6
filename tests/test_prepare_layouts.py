"""`prepare` reads categories from prefixes, folders or a labels file, and refuses sources
that cannot make a face tile: all three layouts give the same dataset."""

from __future__ import annotations

import hashlib
import json
import shutil

import pytest
from PIL import Image
from sampling_helpers import invoke

from facediff.dataset import load_prepared
from facediff.preparation import prepare
from facediff.synthetic import make_demo_data

NAMES = {"indian": "Indian", "asian": "asian", "white": "WHITE"}  # folder names, any case
CODES = {"indian": "I", "asian": "Oriental", "white": "white"}  # CSV: code, name or prefix


@pytest.fixture(scope="module")
def layouts(tmp_path_factory):
    root = tmp_path_factory.mktemp("layouts")
    prefixed = root / "prefixes"
    make_demo_data(prefixed, per_category=4, size=24, seed=3)
    folders, flat = root / "folders", root / "flat"
    rows = ["file,category"]
    for k, path in enumerate(sorted(prefixed.iterdir())):
        prefix = path.name.split("_")[0]
        dest = folders / NAMES[prefix] / f"{k:03d}.png"  # names carry no prefix
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(path, dest)
        (flat / "photos").mkdir(parents=True, exist_ok=True)
        shutil.copy(path, flat / "photos" / f"p{k:03d}.png")
        rows.append(f"photos/p{k:03d}.png,{CODES[prefix]}")
    labels = root / "labels.csv"
    labels.write_text("\n".join(rows) + "\n")
    return prefixed, folders, flat, labels


def _content(data_dir):
    """The dataset as a sorted list of (image hash, category code)."""
    data = load_prepared(data_dir)
    codes = data.categories.codes
    return sorted(
        (hashlib.sha256(img.numpy().tobytes()).hexdigest(), codes[int(label)])
        for img, label in zip(data.images, data.labels)
    )


def test_three_layouts_prepare_the_same_dataset(layouts, tmp_path):
    prefixed, folders, flat, labels = layouts
    a = prepare(prefixed, tmp_path / "a", size=16, workers=1, progress=None)
    b = prepare(folders, tmp_path / "b", size=16, workers=1, progress=None)
    c = prepare(flat, tmp_path / "c", size=16, workers=1, labels=labels, progress=None)
    assert (a.layout, b.layout, c.layout) == ("prefixes", "folders", "labels file")
    assert a.kept == b.kept == c.kept == 12
    assert _content(tmp_path / "a") == _content(tmp_path / "b") == _content(tmp_path / "c")
    manifest = json.loads((tmp_path / "b" / "manifest.json").read_text())
    assert manifest["layout"] == "folders" and manifest["skipped"] == []


def test_cli_says_which_layout_and_accepts_labels(layouts, tmp_path):
    _, folders, flat, labels = layouts
    r = invoke(["prepare", folders, "--out", tmp_path / "b", "--size", "16", "--workers", "1"])
    assert r.exit_code == 0, r.output
    assert "layout: one folder per category" in r.stderr
    assert "(layout: folders)" in r.stdout
    args = ["--out", tmp_path / "c", "--size", "16", "--labels", labels, "--json"]
    r = invoke(["prepare", flat, *args])
    assert r.exit_code == 0, r.output
    summary = json.loads(r.stdout)
    assert summary["layout"] == "labels file" and summary["kept"] == 12


def test_labels_file_problems_are_reported(layouts, tmp_path):
    _, _, flat, labels = layouts
    rows = labels.read_text().splitlines()
    partial = tmp_path / "partial.csv"
    # One file left out, one unknown category, one listed file that does not exist.
    partial.write_text("\n".join([*rows[1:10], "photos/p009.png,latino", "photos/missing.png,I"]))
    report = prepare(flat, tmp_path / "d", size=16, workers=1, labels=partial, progress=None)
    reasons = {s.source: s.reason for s in report.skipped}
    assert reasons["photos/missing.png"] == "listed in the labels file but not found"
    assert reasons["photos/p010.png"] == reasons["photos/p011.png"] == "not in the labels file"
    assert reasons["photos/p009.png"] == "unknown category ('latino' in the labels file)"
    assert report.kept == 9
    r = invoke(["prepare", flat, "--out", tmp_path / "e", "--labels", tmp_path / "none.csv"])
    assert r.exit_code == 1 and "labels file not found" in r.output


def test_unknown_folders_are_skipped_with_their_name(layouts, tmp_path):
    _, folders, _, _ = layouts
    raw = tmp_path / "raw"
    shutil.copytree(folders, raw)
    (raw / "latino").mkdir()
    shutil.copy(next((raw / "Indian").iterdir()), raw / "latino" / "x1.png")
    report = prepare(raw, tmp_path / "out", size=16, workers=1, progress=None)
    assert {s.source: s.reason for s in report.skipped} == {
        "latino/x1.png": "unknown category folder ('latino')"
    }


def test_tiny_and_extreme_sources_are_skipped_and_upscaling_warned(tmp_path):
    raw = tmp_path / "raw"
    raw.mkdir()
    Image.new("RGB", (1, 1), "red").save(raw / "indian_dot.png")
    Image.new("RGB", (5000, 1), "red").save(raw / "indian_line.png")
    Image.new("RGB", (400, 40), "red").save(raw / "asian_banner.png")
    Image.new("RGB", (32, 32), "blue").save(raw / "white_small.png")
    Image.new("RGB", (80, 64), "green").save(raw / "white_fine.png")
    messages = []
    report = prepare(
        raw, tmp_path / "out", size=64, workers=1, progress=lambda e: messages.append(e.message)
    )
    reasons = {s.source: s.reason for s in report.skipped}
    assert reasons == {
        "indian_dot.png": "too small (1×1 pixels; the minimum side is 16)",
        "indian_line.png": "too small (5000×1 pixels; the minimum side is 16)",
        "asian_banner.png": "extreme aspect ratio (400×40 pixels)",
    }
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert {s["source"] for s in manifest["skipped"]} == set(reasons)
    assert report.kept == 2 and report.upscaled == 1 and report.smallest_side == 32
    warning = [m for m in messages if m and m.startswith("warning")]
    assert warning == [
        "warning: no training images of Indian (I): none of its 2 files is usable (see the "
        "manifest's skipped list); the model will not learn it, and I samples and mixes with I "
        "would come from an untrained label",
        "warning: no training images of Oriental (O): its one file is not usable (see the "
        "manifest's skipped list); the model will not learn it, and O samples and mixes with O "
        "would come from an untrained label",
        "warning: 1 of 2 images are smaller than --size 64 (smallest side 32 px) and were "
        "upscaled; consider --size 32",
    ]
