"""prepare() over real files on disk: a corpus of bad inputs, determinism, safety of RAW/OUT."""

from __future__ import annotations

import hashlib
import io
import json
import random
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from facediff.categories import CategoryMap, make_category
from facediff.config import MANIFEST_FILE, PACKED_FILE
from facediff.dataset import load_prepared
from facediff.errors import FacediffError
from facediff.imaging import ImageSkip, load_image
from facediff.preparation import image_stem, prepare
from facediff.synthetic import make_demo_data

UTKFACE = Path(__file__).parents[1].parent / "shared/data/utkface"
SIZE = 32
GREY = 128


# ---------------------------------------------------------------- corpus builders


def _solid(color, size=(40, 40), mode="RGB") -> Image.Image:
    return Image.new(mode, size, color)


def _jpeg_bytes(im: Image.Image, **kw) -> bytes:
    buf = io.BytesIO()
    im.save(buf, "JPEG", quality=95, **kw)
    return buf.getvalue()


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def _crafted_png(width: int, height: int) -> bytes:
    """A PNG whose header declares width×height (1-bit) but holds almost no data."""
    ihdr = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    idat = zlib.compress(b"\0" * 16)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _png_chunk(b"IHDR", ihdr)
        + _png_chunk(b"IDAT", idat)
        + _png_chunk(b"IEND", b"")
    )


def _top_red_bottom_blue(size=(40, 60)) -> Image.Image:
    im = Image.new("RGB", size, (0, 0, 255))
    im.paste((255, 0, 0), (0, 0, size[0], size[1] // 2))
    return im


def _exif_rotated_jpeg() -> bytes:
    """Stored turned a quarter (red on the left); upright only if EXIF Orientation=6 is applied."""
    stored = _top_red_bottom_blue().transpose(Image.Transpose.ROTATE_90)
    exif = Image.Exif()
    exif[0x0112] = 6  # Orientation: rotate 90° clockwise to display
    return _jpeg_bytes(stored, exif=exif.tobytes())


def _save(path: Path, im: Image.Image, fmt: str, **kw) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    im.save(path, fmt, **kw)


def build_corpus(raw: Path) -> dict[str, str]:
    """Write the bad-input corpus; return {relative path: expected outcome}."""
    raw.mkdir()
    expect: dict[str, str] = {}
    good = _jpeg_bytes(make_faces_image(0))
    (raw / "indian_truncated.jpg").write_bytes(good[: len(good) // 2])
    expect["indian_truncated.jpg"] = "truncated or corrupt"
    (raw / "indian_empty.jpg").write_bytes(b"")
    expect["indian_empty.jpg"] = "empty file"
    (raw / "asian_text.jpg").write_text("hello, I am not a JPEG\n")
    expect["asian_text.jpg"] = "not an image"
    _save(raw / "white_cmyk.jpg", _solid((0, 255, 255, 0), mode="CMYK"), "JPEG")
    expect["white_cmyk.jpg"] = "kept European/white_cmyk.png"
    ramp = np.tile(np.linspace(0, 65535, 64), (64, 1)).astype(np.uint16)
    _save(raw / "white_16bit.png", Image.fromarray(ramp), "PNG")
    expect["white_16bit.png"] = "kept European/white_16bit.png"
    palette = Image.new("P", (40, 40), 1)
    palette.putpalette([0, 0, 0, 255, 0, 0] + [0] * 762)
    palette.paste(0, (0, 0, 40, 20))  # top half: index 0, declared transparent
    _save(raw / "asian_palette.png", palette, "PNG", transparency=0)
    expect["asian_palette.png"] = "kept Oriental/asian_palette.png"
    rgba = Image.new("RGBA", (40, 40), (0, 255, 0, 255))
    rgba.paste((0, 0, 0, 0), (0, 0, 40, 20))
    _save(raw / "asian_rgba.png", rgba, "PNG")
    expect["asian_rgba.png"] = "kept Oriental/asian_rgba.png"
    _save(raw / "Indian-gray.png", _solid(200, mode="L"), "PNG")
    expect["Indian-gray.png"] = "kept Indian/Indian-gray.png"
    (raw / "white_exif.jpg").write_bytes(_exif_rotated_jpeg())
    expect["white_exif.jpg"] = "kept European/white_exif.png"
    (raw / "indian_bomb.png").write_bytes(_crafted_png(30000, 30000))
    expect["indian_bomb.png"] = "too large (900000000 pixels)"
    (raw / "indian_big.png").write_bytes(_crafted_png(9000, 8000))
    expect["indian_big.png"] = "too large (9000×8000 pixels)"
    _save(raw / "latino_1.jpg", make_faces_image(1), "JPEG")
    expect["latino_1.jpg"] = "unknown prefix"
    _save(raw / "white_a.png", make_faces_image(2), "PNG")
    expect["white_a.png"] = "kept European/white_a_2.png"  # "sub/white_a.png" sorts first
    (raw / "white_dup.png").write_bytes((raw / "white_a.png").read_bytes())
    expect["white_dup.png"] = "duplicate of white_a.png"
    _save(raw / "indian1.jpg", make_faces_image(3), "JPEG")
    expect["indian1.jpg"] = "kept Indian/indian1.png"
    _save(raw / "indian1.png", make_faces_image(4), "PNG")
    expect["indian1.png"] = "kept Indian/indian1_2.png"
    _save(raw / "asian_日本.png", make_faces_image(5), "PNG")
    expect["asian_日本.png"] = "kept Oriental/asian_日本.png"
    _save(raw / "sub" / "deeper" / "white_nested.png", make_faces_image(6), "PNG")
    expect["sub/deeper/white_nested.png"] = "kept European/white_nested.png"
    _save(raw / "sub" / "white_a.png", make_faces_image(7), "PNG")
    expect["sub/white_a.png"] = "kept European/white_a.png"
    wide = Image.new("RGB", (300, 100), (0, 255, 0))
    wide.paste((255, 0, 0), (100, 0, 200, 100))
    wide.paste((0, 0, 255), (200, 0, 300, 100))
    _save(raw / "indian_wide.png", wide, "PNG")
    expect["indian_wide.png"] = "kept Indian/indian_wide.png"
    _save(raw / "white_1_0_0_2017.jpg.chip.jpg", make_faces_image(8), "JPEG")
    expect["white_1_0_0_2017.jpg.chip.jpg"] = "kept European/white_1_0_0_2017.png"
    (raw / "notes.txt").write_text("not a picture")
    expect["notes.txt"] = "not an image file"
    (raw / ".hidden_white.jpg").write_bytes((raw / "indian1.jpg").read_bytes())
    expect[".hidden_white.jpg"] = "not an image file"
    return expect


def make_faces_image(i: int) -> Image.Image:
    from facediff.synthetic import make_faces

    images, _ = make_faces(1, size=48, seed=100 + i)
    return Image.fromarray(images[i % 3].permute(1, 2, 0).numpy())


def snapshot(folder: Path) -> dict[str, str]:
    return {
        p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("corpus")
    raw = root / "raw"
    expect = build_corpus(raw)
    before = snapshot(raw)
    events = []
    report = prepare(raw, root / "out", size=SIZE, workers=2, progress=events.append)
    return raw, root / "out", expect, before, report, events


def _pixels(out: Path, rel: str) -> np.ndarray:
    with Image.open(out / rel) as im:
        assert im.mode == "RGB" and im.size == (SIZE, SIZE)
        return np.asarray(im).astype(int)


# ---------------------------------------------------------------- the corpus


def test_every_file_is_kept_or_skipped_with_its_reason(corpus):
    _raw, out, expect, _before, report, _events = corpus
    manifest = json.loads((out / MANIFEST_FILE).read_text(encoding="utf-8"))
    outcome = {s["source"]: s["reason"] for s in manifest["skipped"]}
    outcome.update({im["source"]: f"kept {im['file']}" for im in manifest["images"]})
    assert outcome == expect
    for im in manifest["images"]:
        assert (out / im["file"]).is_file()
    assert report.kept == len(manifest["images"]) == manifest["packed"]["count"]
    assert len(report.skipped) == len(manifest["skipped"])


def test_raw_is_unchanged(corpus):
    raw, _out, _expect, before, _report, _events = corpus
    assert snapshot(raw) == before
    listing = sorted(p.relative_to(raw).as_posix() for p in raw.rglob("*"))
    assert listing == sorted([*before, "sub", "sub/deeper"])


def test_manifest_and_packed_file_are_valid(corpus):
    raw, out, _expect, _before, report, _events = corpus
    data = load_prepared(out)
    manifest = data.manifest
    assert len(data) == report.kept
    assert data.images.shape == (report.kept, 3, SIZE, SIZE)
    assert manifest["raw"] == str(raw.resolve())
    assert manifest["created_by"].startswith("facediff ")
    counts = {c["code"]: c["count"] for c in manifest["categories"]}
    assert counts == {"I": 4, "O": 3, "E": 7}
    assert data.labels.bincount().tolist() == [4, 3, 7]
    for i, entry in enumerate(manifest["images"]):
        assert entry["label"] == int(data.labels[i])
        assert entry["code"] == "IOE"[entry["label"]]
        assert entry["sha256"] == hashlib.sha256((raw / entry["source"]).read_bytes()).hexdigest()
        png = np.asarray(Image.open(out / entry["file"]))
        assert np.array_equal(png, data.images[i].permute(1, 2, 0).numpy())
    assert (
        manifest["packed"]["sha256"] == hashlib.sha256((out / PACKED_FILE).read_bytes()).hexdigest()
    )


def test_report_counts(corpus):
    _raw, _out, _expect, _before, report, events = corpus
    by_code = {c.code: c for c in report.categories}
    assert by_code["I"].found == 8 and by_code["I"].kept == 4
    assert by_code["O"].found == 4 and by_code["E"].found == 8
    assert by_code["I"].skipped == {"empty file": 1, "too large": 2, "truncated or corrupt": 1}
    assert by_code["O"].skipped == {"not an image": 1}
    assert by_code["E"].skipped == {"duplicate": 1}
    assert report.unmatched == {"not an image file": 2, "unknown prefix": 1}
    assert events and {e.task for e in events} == {"prepare"}
    assert events[-1].completed == events[-1].total


def test_colour_modes_are_converted_properly(corpus):
    out = corpus[1]
    cmyk = _pixels(out, "European/white_cmyk.png")
    assert (np.abs(cmyk - [255, 0, 0]) < 40).all()  # CMYK red stays red
    ramp = _pixels(out, "European/white_16bit.png")
    assert (ramp[..., 0] == ramp[..., 1]).all()
    row = ramp[SIZE // 2, :, 0]
    assert row[0] < 40 and row[-1] > 215 and 100 < row[SIZE // 2] < 160  # scaled, not clipped
    assert (np.diff(row) >= 0).all() and len(set(row.tolist())) > SIZE // 2
    palette = _pixels(out, "Oriental/asian_palette.png")
    assert (np.abs(palette[2, SIZE // 2] - GREY) <= 2).all()  # transparent -> grey
    assert (np.abs(palette[-3, SIZE // 2] - [255, 0, 0]) <= 2).all()
    rgba = _pixels(out, "Oriental/asian_rgba.png")
    assert (np.abs(rgba[2, SIZE // 2] - GREY) <= 2).all()
    assert (np.abs(rgba[-3, SIZE // 2] - [0, 255, 0]) <= 2).all()
    gray = _pixels(out, "Indian/Indian-gray.png")
    assert (np.abs(gray - 200) <= 1).all()


def test_exif_orientation_is_applied(corpus):
    upright = _pixels(corpus[1], "European/white_exif.png")
    top, bottom = upright[: SIZE // 2 - 3], upright[SIZE // 2 + 3 :]
    assert (top[..., 0] > 200).all() and (top[..., 2] < 60).all()  # red on top
    assert (bottom[..., 2] > 200).all() and (bottom[..., 0] < 60).all()  # blue below


def test_non_square_is_centre_cropped_not_squashed(corpus):
    wide = _pixels(corpus[1], "Indian/indian_wide.png")
    assert (np.abs(wide - [255, 0, 0]) <= 3).all()  # only the red middle third


# ---------------------------------------------------------------- determinism and safety


@pytest.fixture(scope="module")
def demo_raw(tmp_path_factory):
    raw = tmp_path_factory.mktemp("demo") / "raw"
    make_demo_data(raw, per_category=40, size=40, seed=0)
    return raw


def test_deterministic_whatever_the_workers(demo_raw, tmp_path):
    a = prepare(demo_raw, tmp_path / "a", size=SIZE, workers=1)
    b = prepare(demo_raw, tmp_path / "b", size=SIZE, workers=2)
    assert a.kept == b.kept == 120
    assert (tmp_path / "a" / PACKED_FILE).read_bytes() == (
        tmp_path / "b" / PACKED_FILE
    ).read_bytes()
    assert snapshot(tmp_path / "a") == snapshot(tmp_path / "b")


def test_never_more_decoder_processes_than_cores(demo_raw, tmp_path, monkeypatch):
    import facediff.prepare_pool as pool

    started = []
    real = pool.ProcessPoolExecutor

    def counting(max_workers, **kw):
        started.append(max_workers)
        return real(max_workers=max_workers, **kw)

    monkeypatch.setattr(pool, "ProcessPoolExecutor", counting)
    monkeypatch.setattr("facediff.preparation.cpu_count", lambda: 2)
    report = prepare(demo_raw, tmp_path / "a", size=SIZE, workers=100_000)
    assert report.kept == 120 and started == [2]


def test_refuses_non_empty_out_without_force(demo_raw, tmp_path):
    out = tmp_path / "out"
    prepare(demo_raw, out, size=SIZE, workers=1)
    (out / "my-notes.txt").write_text("keep me")
    before = snapshot(out)
    with pytest.raises(FacediffError, match=r"not empty.*--force"):
        prepare(demo_raw, out, size=SIZE, workers=1)
    assert snapshot(out) == before
    smaller = demo_raw.parent / "smaller"
    make_demo_data(smaller, per_category=2, size=20, seed=1)
    report = prepare(smaller, out, size=16, workers=1, force=True)
    assert report.kept == 6 and len(load_prepared(out)) == 6
    assert len(list((out / "Indian").iterdir())) == 2  # old images are gone
    assert (out / "my-notes.txt").read_text() == "keep me"  # unrelated files are not


def test_force_refuses_a_folder_that_is_not_a_dataset(demo_raw, tmp_path):
    out = tmp_path / "precious"
    out.mkdir()
    (out / "thesis.tex").write_text("...")
    with pytest.raises(FacediffError, match="not a facediff dataset"):
        prepare(demo_raw, out, size=SIZE, workers=1, force=True)
    assert [p.name for p in out.iterdir()] == ["thesis.tex"]


@pytest.mark.parametrize("where", ["raw", "raw/inside", "raw/inside/deeper"])
def test_out_inside_raw_is_refused(where, tmp_path):
    raw = tmp_path / "raw"
    make_demo_data(raw, per_category=1, size=16)
    before = snapshot(raw)
    with pytest.raises(FacediffError, match="inside the raw folder"):
        prepare(raw, tmp_path / where, size=16, workers=1)
    assert snapshot(raw) == before and sorted(p.name for p in raw.iterdir()) == sorted(before)


def test_raw_inside_out_is_refused(tmp_path):
    raw = tmp_path / "data" / "raw"
    make_demo_data(raw, per_category=1, size=16)
    with pytest.raises(FacediffError, match="inside --out"):
        prepare(raw, tmp_path / "data", size=16, workers=1)


def test_bad_arguments(tmp_path):
    with pytest.raises(FacediffError, match="raw folder not found"):
        prepare(tmp_path / "missing", tmp_path / "out")
    (tmp_path / "file.jpg").write_bytes(b"x")
    with pytest.raises(FacediffError, match="not a folder"):
        prepare(tmp_path / "file.jpg", tmp_path / "out")
    raw = tmp_path / "raw"
    raw.mkdir()
    for size in (7, 15, 513):
        with pytest.raises(FacediffError, match="--size"):
            prepare(raw, tmp_path / "out", size=size)
    with pytest.raises(FacediffError, match=r"no images found.*the folder is empty"):
        prepare(raw, tmp_path / "out")
    (raw / "readme.txt").write_text("x")
    (raw / "latino_1.jpg").write_bytes(b"x")
    with pytest.raises(FacediffError, match=r"no images found.*unknown prefix: 1"):
        prepare(raw, tmp_path / "out")
    (raw / "white_1.jpg").write_bytes(b"")
    with pytest.raises(FacediffError, match=r"no usable images.*empty file: 1"):
        prepare(raw, tmp_path / "out", workers=1)
    assert not (tmp_path / "out").exists()  # it created the folder, and removed it again


def test_user_categories(tmp_path):
    raw = tmp_path / "raw"
    raw.mkdir()
    for i, name in enumerate(("cat_1.png", "cat-2.png", "CATFISH3.png", "dog4.png")):
        make_faces_image(i).save(raw / name)
    categories = CategoryMap(
        (
            make_category("cat", "Cat", "C"),
            make_category("catfish", "Catfish", "F"),
            make_category("dog", "Dog", "D"),
        )
    )
    prepare(raw, tmp_path / "out", size=16, categories=categories, workers=1)
    data = load_prepared(tmp_path / "out")
    got = {e["source"]: e["code"] for e in data.manifest["images"]}
    assert got == {"CATFISH3.png": "F", "cat-2.png": "C", "cat_1.png": "C", "dog4.png": "D"}
    assert torch.equal(data.labels, torch.tensor([1, 0, 0, 2]))


# ---------------------------------------------------------------- helpers


@pytest.mark.parametrize(
    ("name", "stem"),
    [
        ("white_1_0_0_20170109.jpg.chip.jpg", "white_1_0_0_20170109"),
        ("indian1.JPG", "indian1"),
        ("asian.v2.png", "asian.v2"),
        ("a.jpeg.png", "a"),
        ("notes.txt", None),
        ("white_1.jpg.txt", None),
        ("jpg", None),
    ],
)
def test_image_stem(name, stem):
    assert image_stem(name) == stem


def test_load_image_reasons(tmp_path):
    (tmp_path / "empty.png").write_bytes(b"")
    (tmp_path / "text.png").write_text("hello")
    (tmp_path / "big.png").write_bytes(_crafted_png(100, 100))
    cases = {"empty.png": "empty file", "text.png": "not an image", "big.png": "too large"}
    for name, kind in cases.items():
        with pytest.raises(ImageSkip) as info:
            load_image(tmp_path / name, 16, max_pixels=5000)
        assert info.value.kind == kind
    with pytest.raises(ImageSkip, match="unreadable"):
        load_image(tmp_path / "missing.png", 16, max_pixels=5000)


def test_large_jpeg_is_downscaled_well(tmp_path):
    im = _top_red_bottom_blue((1600, 1200))
    im.save(tmp_path / "x.jpg", quality=95)
    array = load_image(tmp_path / "x.jpg", 64, max_pixels=10_000_000)
    assert array.shape == (64, 64, 3) and array.dtype == np.uint8
    assert array[:28, :, 0].min() > 200 and array[36:, :, 2].min() > 200


# ---------------------------------------------------------------- the real photos


@pytest.mark.skipif(not UTKFACE.is_dir(), reason="UTKFace sample not present")
def test_real_photos_sample(tmp_path):
    names = sorted(p.name for p in UTKFACE.iterdir())
    sample = random.Random(0).sample(names, 60)
    raw = tmp_path / "raw"
    raw.mkdir()
    for name in sample:  # links, not copies
        (raw / name).symlink_to(UTKFACE / name)
    report = prepare(raw, tmp_path / "out", size=SIZE, workers=2)
    data = load_prepared(tmp_path / "out")
    expected = {
        c: sum(n.startswith(p) for n in sample) for c, p in zip("IOE", ("indian", "asian", "white"))
    }
    assert {c.code: c.found for c in report.categories} == expected
    assert report.kept + sum(1 for s in report.skipped if s.kind == "duplicate") == 60
    assert len(data) == report.kept
    assert all(
        e["file"].endswith(".png") and ".jpg" not in e["file"] for e in data.manifest["images"]
    )
    assert data.images.float().std() > 30  # real photos, not blank
