"""A full disk: every command stops in one line naming the file it could not write, leaves
no temporary file, and an export (even with --force) leaves the folder as it was.

A write that fails for want of space raises an error naming no file (``OSError: [Errno 28]
No space left on device``, or safetensors' ``SafetensorError ... (os error 28)``), so the
disk is filled here by making the writes fail so, after a few have succeeded."""

from __future__ import annotations

import errno
from pathlib import Path

import pytest
import safetensors.torch
from PIL import Image
from safetensors import SafetensorError
from sampling_helpers import error_lines, invoke, make_run

from facediff.synthetic import make_demo_data

FULL = "No space left on device"


def fill_disk_after(monkeypatch, writes: int) -> None:
    """PIL image saves fail as on a full disk after ``writes`` of them succeeded (each
    failing one leaves a partial file, as a real full disk does)."""
    save = Image.Image.save
    done = []

    def save_until_full(self, fp, *args, **kwargs):
        if len(done) >= writes:
            if hasattr(fp, "write"):
                fp.write(b"\x89PNG partial")
            else:
                Path(fp).write_bytes(b"\x89PNG partial")
            raise OSError(errno.ENOSPC, FULL)
        done.append(fp)
        return save(self, fp, *args, **kwargs)

    monkeypatch.setattr(Image.Image, "save", save_until_full)


def tree(folder):
    return {
        p.relative_to(folder).as_posix(): p.read_bytes()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    return make_run(tmp_path_factory.mktemp("disk") / "run")


def test_sample_names_the_image_it_could_not_write(run, tmp_path, monkeypatch):
    fill_disk_after(monkeypatch, 2)
    out = tmp_path / "out"
    result = invoke(["sample", run, "--out", out, "-c", "O", "-n", "4", "--batch-size", "1"])
    assert result.exit_code == 1, result.output
    assert error_lines(result) == [f"facediff: error: {FULL}: {out / 'O' / 'O_2.png'}"]
    assert sorted(p.name for p in (out / "O").iterdir()) == ["O_0.png", "O_1.png"]  # no .tmp


def test_grid_names_the_grid_it_could_not_write(run, tmp_path, monkeypatch):
    fill_disk_after(monkeypatch, 0)
    out = tmp_path / "grid.png"
    result = invoke(["grid", run, "--out", out, "--seeds", "2", "-c", "O", "--steps", "2"])
    assert result.exit_code == 1, result.output
    assert error_lines(result) == [f"facediff: error: {FULL}: {out}"]
    assert not list(tmp_path.iterdir())


def test_prepare_names_the_image_it_could_not_write(tmp_path, monkeypatch):
    raw = tmp_path / "raw"
    make_demo_data(raw, per_category=2, size=20, seed=0)
    fill_disk_after(monkeypatch, 3)
    out = tmp_path / "data"
    result = invoke(["prepare", raw, "--out", out, "--workers", "1", "--size", "16"])
    assert result.exit_code == 1, result.output
    (line,) = error_lines(result)
    assert line.startswith(f"facediff: error: {FULL}: {out}/") and line.endswith(".png"), line
    assert not out.exists()


def test_prepare_names_the_packed_dataset_it_could_not_write(tmp_path, monkeypatch):
    import facediff.dataset as dataset

    def full(tensors, path, metadata=None):
        raise SafetensorError(f"Error while serializing: I/O error: {FULL} (os error 28)")

    monkeypatch.setattr(dataset, "save_file", full)
    raw = tmp_path / "raw"
    make_demo_data(raw, per_category=2, size=20, seed=0)
    out = tmp_path / "data"
    result = invoke(["prepare", raw, "--out", out, "--workers", "1", "--size", "16"])
    assert result.exit_code == 1, result.output
    (line,) = error_lines(result)
    assert line.startswith(f"facediff: error: {FULL}: {out}"), line
    assert not out.exists()


def test_an_export_that_runs_out_of_space_leaves_the_old_one_as_it_was(run, tmp_path, monkeypatch):
    out = tmp_path / "export"
    assert invoke(["export", run, "--out", out]).exit_code == 0
    (out / "notes.txt").write_text("mine")
    before = tree(out)
    save = safetensors.torch.save_file

    def full(tensors, filename, metadata=None):
        save(tensors, filename, metadata)  # a partial file, then the error
        raise SafetensorError(f"Error while serializing: I/O error: {FULL} (os error 28)")

    monkeypatch.setattr(safetensors.torch, "save_file", full)
    result = invoke(["export", run, "--out", out, "--force", "--checkpoint", "10"])
    assert result.exit_code == 1, result.output
    assert error_lines(result) == [
        f"facediff: error: cannot write the export to {out} ({FULL}); nothing in it was changed"
    ]
    assert tree(out) == before and sorted(p.name for p in out.iterdir() if p.name[0] == ".") == []

    monkeypatch.setattr(safetensors.torch, "save_file", save)
    result = invoke(["export", run, "--out", out, "--force"])
    assert result.exit_code == 0, result.output
    assert (out / "notes.txt").read_text() == "mine"  # --force replaces the export's files only
    assert not [p for p in out.iterdir() if p.name.startswith(".")]


def test_demo_data_names_the_image_and_takes_back_what_it_wrote(tmp_path, monkeypatch):
    fill_disk_after(monkeypatch, 3)
    out = tmp_path / "raw"
    result = invoke(["demo-data", out])
    assert result.exit_code == 1, result.output
    (line,) = error_lines(result)
    assert line.startswith(f"facediff: error: {FULL}: {out}/") and line.endswith(".png"), line
    assert not out.exists()  # the same command works once there is room
