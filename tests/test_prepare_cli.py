"""`facediff prepare` and `facediff demo-data` through the real CLI."""

import json

import pytest
from typer.testing import CliRunner

from facediff.cli import app
from facediff.dataset import load_prepared


def _output(result) -> str:
    return result.output  # stdout and stderr, interleaved


def _assert_one_line_error(result, *needles):
    text = _output(result)
    assert result.exit_code != 0, text
    assert "Traceback" not in text
    lines = [line for line in text.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("facediff: error:")]
    assert len(errors) == 1, text
    for needle in needles:
        assert needle in errors[0], text


def _first_white(folder):
    """The first European demo face (demo-data names: white_<age>_<gender>_0_<date>.png)."""
    return sorted(folder.glob("white_*.png"))[0]


@pytest.fixture(scope="module")
def raw(tmp_path_factory):
    folder = tmp_path_factory.mktemp("cli") / "raw"
    result = CliRunner().invoke(
        app, ["demo-data", str(folder), "--per-category", "5", "--size", "24", "--seed", "1"]
    )
    assert result.exit_code == 0, _output(result)
    assert "Wrote 15 synthetic faces" in result.output
    (folder / "notes.txt").write_text("not a face")
    (folder / "latino_1.png").write_bytes(_first_white(folder).read_bytes())
    return folder


def test_prepare_prints_a_summary_and_the_next_step(raw, tmp_path):
    out = tmp_path / "data"
    result = CliRunner().invoke(app, ["prepare", str(raw), "--out", str(out), "--size", "16"])
    text = _output(result)
    assert result.exit_code == 0, text
    for word in ("Indian", "Oriental", "European", "found", "kept", "unknown prefix", "total"):
        assert word in text
    assert f"facediff train {out}" in text
    data = load_prepared(out)
    assert len(data) == 15 and data.size == 16


def test_prepare_user_categories_and_force(raw, tmp_path):
    out = tmp_path / "data"
    args = ["prepare", str(raw), "--out", str(out), "--size", "16", "--workers", "1"]
    custom = ["--category", "white=Pale:P", "--category", "latino=Latino:L"]
    assert CliRunner().invoke(app, args).exit_code == 0
    again = CliRunner().invoke(app, args + custom)
    _assert_one_line_error(again, "not empty", "--force")
    result = CliRunner().invoke(app, [*args, *custom, "--force"])
    assert result.exit_code == 0, _output(result)
    manifest = json.loads((out / "manifest.json").read_text())
    # latino_1.png holds the same bytes as the first white_ face and sorts first: it is kept
    assert [(c["code"], c["count"]) for c in manifest["categories"]] == [("P", 4), ("L", 1)]
    white = _first_white(raw).name
    assert {"source": white, "reason": "duplicate of latino_1.png"} in manifest["skipped"]


def test_categories_file(raw, tmp_path):
    spec = tmp_path / "cats.json"
    spec.write_text(json.dumps([{"prefix": "asian", "name": "East Asian", "code": "A"}]))
    out = tmp_path / "data"
    result = CliRunner().invoke(
        app,
        ["prepare", str(raw), "--out", str(out), "--size", "16", "--categories-file", str(spec)],
    )
    assert result.exit_code == 0, _output(result)
    assert (out / "East Asian").is_dir() and len(load_prepared(out)) == 5


@pytest.mark.parametrize(
    ("args", "needles"),
    [
        (["prepare", "{tmp}/missing"], ["raw folder not found"]),
        (["prepare", "{tmp}/file.jpg"], ["not a folder"]),
        (["prepare", "{raw}", "--out", "{tmp}/o", "--size", "7"], ["--size"]),
        (["prepare", "{raw}", "--out", "{tmp}/o", "--size", "1024"], ["--size"]),
        (["prepare", "{raw}", "--out", "{tmp}/o", "--size", "big"], ["--size"]),
        (["prepare", "{raw}", "--out", "{tmp}/o", "--workers", "-1"], ["--workers"]),
        (["prepare", "{raw}", "--out", "{tmp}/o", "--category", "asian"], ["--category"]),
        (["prepare", "{raw}", "--out", "{tmp}/o", "--category", "a/b=X:Y"], ["prefix"]),
        (["prepare", "{raw}", "--out", "{raw}/out"], ["inside the raw folder"]),
        (["prepare", "{tmp}/empty", "--out", "{tmp}/o"], ["no images found"]),
        (["prepare"], ["Missing argument", "RAW"]),
        (["demo-data", "{raw}"], ["not an empty folder"]),
        (["demo-data", "{tmp}/d", "--per-category", "0"], ["--per-category"]),
        (["demo-data", "{tmp}/d", "--size", "8"], ["--size"]),
    ],
)
def test_bad_options_give_one_line_errors(raw, tmp_path, args, needles):
    (tmp_path / "file.jpg").write_bytes(b"x")
    (tmp_path / "empty").mkdir()
    argv = [a.format(tmp=tmp_path, raw=raw) for a in args]
    result = CliRunner().invoke(app, argv)
    _assert_one_line_error(result, *needles)
    assert not (raw / "out").exists()
