"""Issue 9, prepare: hostile files and folders on disk (no data loss, no hang, no traceback)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import EpsImagePlugin, Image
from sampling_helpers import error_lines, invoke

import facediff.preparation as preparation
from facediff.categories import CategoryMap, make_category
from facediff.config import MANIFEST_FILE
from facediff.dataset import load_prepared
from facediff.errors import FacediffError
from facediff.preparation import prepare
from facediff.synthetic import make_demo_data

ROOT = Path(__file__).parents[1]


def _tree(folder: Path) -> dict[str, bytes]:
    return {
        p.relative_to(folder).as_posix(): p.read_bytes()
        for p in sorted(folder.rglob("*"))
        if p.is_file() and not p.is_symlink()
    }


@pytest.fixture
def raw(tmp_path) -> Path:
    folder = tmp_path / "raw"
    make_demo_data(folder, per_category=2, size=20, seed=0)
    return folder


def _cli(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    return subprocess.run(
        [sys.executable, "-m", "facediff", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
        cwd=ROOT,
    )


def _one_error(proc: subprocess.CompletedProcess, *needles: str) -> str:
    assert proc.returncode != 0, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr, proc.stderr
    errors = [ln for ln in proc.stderr.splitlines() if ln.startswith("facediff: error:")]
    assert len(errors) == 1, proc.stderr
    for needle in needles:
        assert needle in errors[0], errors[0]
    return errors[0]


# ---- item 1: --force deletes only what the previous manifest lists


def test_force_keeps_a_user_folder_named_like_a_new_category(raw, tmp_path):
    out = tmp_path / "out"
    prepare(raw, out, size=16, workers=1)
    mine = out / "Cat"  # the user's folder, named like a category of the next prepare
    mine.mkdir()
    (mine / "holiday.png").write_bytes(b"my photo")
    (raw / "cat_1.png").write_bytes(sorted(raw.glob("indian_*.png"))[0].read_bytes())
    before = _tree(out)
    cats = CategoryMap((make_category("cat", "Cat", "C"), make_category("white", "White", "W")))
    with pytest.raises(FacediffError, match=r"Cat/holiday.png was not written by the previous"):
        prepare(raw, out, size=16, workers=1, categories=cats, force=True)
    assert _tree(out) == before  # nothing deleted
    (mine / "holiday.png").rename(tmp_path / "holiday.png")
    prepare(raw, out, size=16, workers=1, categories=cats, force=True)
    assert len(load_prepared(out)) == 3
    assert not (out / "Indian").exists()  # the old dataset's files are gone


def test_force_keeps_user_files_inside_an_old_category_folder(raw, tmp_path):
    out = tmp_path / "out"
    prepare(raw, out, size=16, workers=1)
    (out / "Indian" / "notes.txt").write_text("keep me")
    cats = CategoryMap((make_category("white", "White", "W"),))
    prepare(raw, out, size=16, workers=1, categories=cats, force=True)
    assert [p.name for p in (out / "Indian").iterdir()] == ["notes.txt"]  # ours went, yours stay
    assert not (out / "Oriental").exists()


def test_force_refuses_a_manifest_it_cannot_trust(raw, tmp_path):
    out = tmp_path / "out"
    prepare(raw, out, size=16, workers=1)
    manifest = json.loads((out / MANIFEST_FILE).read_text())
    manifest["images"][0]["file"] = "../../elsewhere/x.png"
    (out / MANIFEST_FILE).write_text(json.dumps(manifest))
    before = _tree(out)
    with pytest.raises(FacediffError, match=r"nothing was deleted"):
        prepare(raw, out, size=16, workers=1, force=True)
    assert _tree(out) == before


# ---- item 3: never write or delete through a link


def test_force_never_writes_through_a_linked_category_folder(raw, tmp_path):
    out = tmp_path / "out"
    prepare(raw, out, size=16, workers=1)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "precious.txt").write_text("outside --out")
    cats = CategoryMap((make_category("white", "Pale", "P"),))
    (out / "Pale").symlink_to(elsewhere, target_is_directory=True)
    before = _tree(out)
    with pytest.raises(FacediffError, match="symbolic link"):
        prepare(raw, out, size=16, workers=1, categories=cats, force=True)
    assert [p.name for p in elsewhere.iterdir()] == ["precious.txt"]
    assert _tree(out) == before


# ---- item 4: a FIFO or a link to /dev/zero does not hang prepare


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs FIFOs")
def test_fifo_and_dev_zero_are_skipped_not_read(raw, tmp_path):
    os.mkfifo(raw / "indian_x.jpg")
    (raw / "asian_zero.jpg").symlink_to("/dev/zero")
    out = tmp_path / "out"
    proc = _cli("prepare", str(raw), "--out", str(out), "--size", "16", "--workers", "1")
    assert proc.returncode == 0, proc.stderr
    skipped = {
        s["source"]: s["reason"] for s in json.loads((out / MANIFEST_FILE).read_text())["skipped"]
    }
    assert skipped == {"indian_x.jpg": "not a regular file", "asian_zero.jpg": "not a regular file"}


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs FIFOs")
def test_a_fifo_or_dev_zero_as_labels_file_is_an_error_not_a_hang(raw, tmp_path):
    os.mkfifo(tmp_path / "labels.csv")
    (tmp_path / "zero.csv").symlink_to("/dev/zero")
    for labels in ("labels.csv", "zero.csv"):
        out = tmp_path / f"out-{labels}"
        proc = _cli("prepare", str(raw), "--out", str(out), "--labels", str(tmp_path / labels))
        assert proc.returncode == 1, proc.stderr
        _one_error(proc, "labels file", labels)
        assert not (out / MANIFEST_FILE).exists()


@pytest.mark.parametrize("option", ["--labels", "--attributes", "--categories-file"])
def test_a_folder_given_as_a_file_option_is_named_plainly(raw, tmp_path, option):
    out = tmp_path / "out"
    proc = _cli("prepare", str(raw), "--out", str(out), option, str(tmp_path))
    assert proc.returncode == 1, proc.stderr
    line = _one_error(proc, f"file {tmp_path}: is a folder, not a file")
    assert "Errno" not in line
    assert not out.exists()


def test_an_oversized_file_is_skipped_unread(raw, tmp_path, monkeypatch):
    import facediff.imaging as imaging

    monkeypatch.setattr(imaging, "MAX_FILE_BYTES", 1000)
    monkeypatch.setattr(imaging.read_regular, "__defaults__", (1000,))
    monkeypatch.setattr(imaging.sha256_regular, "__defaults__", (1000, 1 << 20))
    (raw / "white_big.png").write_bytes(b"\0" * 5000)
    report = prepare(raw, tmp_path / "out", size=16, workers=1)
    reasons = {s.source: s.reason for s in report.skipped}
    assert reasons["white_big.png"] == "too large (5000 bytes)"


# ---- item 21: only the raster decoders prepare supports


def test_eps_named_jpg_never_reaches_the_eps_plugin(raw, tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr(EpsImagePlugin.EpsImageFile, "_open", lambda self: calls.append(1))
    eps = b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\nshowpage\n%%EOF\n"
    (raw / "indian_eps.jpg").write_bytes(eps)
    report = prepare(raw, tmp_path / "out", size=16, workers=1)
    assert {s.source: s.reason for s in report.skipped} == {"indian_eps.jpg": "not an image"}
    assert calls == []
    with pytest.raises(Exception):  # noqa: B017 (sanity: PIL alone would hand it to EPS)
        Image.open(raw / "indian_eps.jpg").load()
    assert calls == [1]


def test_an_interrupted_prepare_leaves_nothing_and_a_retry_needs_no_force(raw, tmp_path):
    """Ctrl-C (or SIGTERM) half-way through: the images written so far are removed, so
    running the same command again works; it used to leave a folder that only deleting
    by hand could clear (no manifest, so even --force refused it)."""
    before = _tree(raw)
    out = tmp_path / "data"

    def interrupt_after_the_first_images(event):
        if event.total and event.completed:
            assert any(out.rglob("*.png"))  # it did write images before the interrupt
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        prepare(raw, out, size=16, workers=1, progress=interrupt_after_the_first_images)
    assert not out.exists()
    assert _tree(raw) == before
    assert prepare(raw, out, size=16, workers=1).out == out.resolve()
    assert len(load_prepared(out)) == 6


def test_a_prepare_that_fails_writing_keeps_the_users_files_in_out(raw, tmp_path, monkeypatch):
    import facediff.preparation as preparation

    out = tmp_path / "data"
    prepare(raw, out, size=16, workers=1)
    (out / "notes.txt").write_text("mine")

    def disk_full(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(preparation, "_write_packed", disk_full)
    with pytest.raises(OSError):
        prepare(raw, out, size=16, workers=1, force=True)
    assert sorted(p.name for p in out.iterdir()) == ["notes.txt"]  # no half dataset
    assert (out / "notes.txt").read_text() == "mine"


def test_a_dataset_too_big_for_memory_is_refused_before_out_is_touched(raw, tmp_path, monkeypatch):
    """The packed images are held in memory while they are decoded: a --size whose
    dataset cannot fit was decoded until the kernel killed the process (exit 137)."""
    out = tmp_path / "data"
    assert invoke(["prepare", raw, "--out", out, "--size", "16"]).exit_code == 0
    before = _tree(out)
    photos = len(list(raw.iterdir()))
    monkeypatch.setattr(preparation, "available_bytes", lambda: photos * 3 * 24 * 24 + 100)
    result = invoke(["prepare", raw, "--out", out, "--size", "64", "--force"])
    assert result.exit_code == 2, result.output
    (line,) = error_lines(result)
    assert line.startswith(f"facediff: error: --size 64: packing {photos} photos needs"), line
    fits = int(re.search(r"use --size (\d+) or less", line).group(1))
    assert fits == 24
    assert _tree(out) == before  # the dataset there is untouched, --force or not
    result = invoke(["prepare", raw, "--out", out, "--size", str(fits), "--force"])
    assert result.exit_code == 0, result.output
    assert load_prepared(out).size == fits
