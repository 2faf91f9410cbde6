"""Issue 9, checkpoints and run folders: nothing lost, damage detected, one-line messages."""

from __future__ import annotations

import errno
import json
import os
import signal
import time
from pathlib import Path

import pytest
import torch
from sampling_helpers import error_lines, invoke, make_run
from train_helpers import blocks_dataset

import facediff.checkpoint as checkpoint
from facediff.checkpoint import list_checkpoints, verify_checkpoint
from facediff.loading import load_for_inference

FAST = ["--preset", "tiny", "--batch-size", "4", "--preview-every", "0", "--device", "cpu"]


@pytest.fixture
def data(tmp_path) -> Path:
    return blocks_dataset(tmp_path / "data", per_category=4)


def _train(data: Path, run: Path, *args: str):
    return invoke(["train", data, "--out", run, *args])


def _one_error(result, *needles: str) -> str:
    assert result.exit_code != 0, result.output
    lines = error_lines(result)  # also asserts there is no traceback
    assert len(lines) == 1, result.output
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


def _steps(run: Path) -> list[int]:
    return [s for s, _ in list_checkpoints(run)]


def _leftovers(run: Path) -> list[str]:
    return sorted(
        p.relative_to(run).as_posix()
        for p in run.rglob("*")
        if p.name.startswith(".tmp-") or p.name.endswith(".tmp")
    )


def _flip_a_bit(path: Path, offset: int = -100) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x01
    path.write_bytes(bytes(data))


def _state(ckpt: Path) -> dict:
    return json.loads((ckpt / "state.json").read_text())


# ---- item 2: a non-empty folder that is not a run is refused without --force


def test_train_refuses_a_folder_that_is_not_a_run(tmp_path, data):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "config.json").write_text('{"my": "settings"}')
    (out / "notes.txt").write_text("keep")
    result = _train(data, out, "--max-steps", "1", *FAST)
    _one_error(result, str(out), "not a facediff run", "--force")
    assert sorted(p.name for p in out.iterdir()) == ["config.json", "notes.txt"]
    assert (out / "config.json").read_text() == '{"my": "settings"}'
    forced = _train(data, out, "--max-steps", "1", "--force", *FAST)
    assert forced.exit_code == 0, forced.output
    assert _steps(out) == [1] and (out / "notes.txt").read_text() == "keep"
    again = _train(data, out, "--max-steps", "2")  # now a run: resumes without --force
    assert again.exit_code == 0, again.output


# ---- items 7 and 17: a failed or interrupted checkpoint write leaves the previous one


def _partial_then(exc: BaseException):
    def save(obj, path, *a, **k):
        Path(path).write_bytes(b"\0" * 100)  # part of the file reached the disk
        raise exc

    return save


@pytest.mark.parametrize(
    ("target", "exc"),
    [
        (
            "torch_save",
            RuntimeError(
                "[enforce fail at inline_container.cc:783] . "
                "PytorchStreamWriter failed writing file data/0\n..."
            ),
        ),
        ("save_file", OSError(errno.ENOSPC, "No space left on device")),
    ],
)
def test_disk_full_while_writing_a_checkpoint(tmp_path, data, monkeypatch, target, exc):
    run = tmp_path / "run"
    assert _train(data, run, "--max-steps", "2", *FAST).exit_code == 0
    before = (run / "checkpoints" / "step-00000002" / "model.safetensors").read_bytes()
    if target == "torch_save":
        monkeypatch.setattr(checkpoint.torch, "save", _partial_then(exc))
    else:
        monkeypatch.setattr(checkpoint, "save_file", _partial_then(exc))
    line = _one_error(_train(data, run, "--max-steps", "4"), "step-00000004", "is intact")
    assert "step-00000002" in line
    assert _steps(run) == [2] and _leftovers(run) == []
    assert (run / "checkpoints" / "step-00000002" / "model.safetensors").read_bytes() == before
    verify_checkpoint(run / "checkpoints" / "step-00000002")


def test_interrupt_during_a_checkpoint_write_leaves_no_temp_folder(tmp_path, data, monkeypatch):
    run = tmp_path / "run"
    assert _train(data, run, "--max-steps", "2", *FAST).exit_code == 0
    monkeypatch.setattr(checkpoint.torch, "save", _partial_then(KeyboardInterrupt()))
    result = _train(data, run, "--max-steps", "4")
    assert result.exit_code == 130
    _one_error(result, "interrupted")
    assert _steps(run) == [2] and _leftovers(run) == []


def test_second_ctrl_c_prints_a_message_and_leaves_no_temp_folder(tmp_path, data, monkeypatch):
    """Two real SIGINTs: the first during a step (stop, then save), the second while that
    checkpoint is being written."""
    import facediff.training.loop as training

    run = tmp_path / "run"
    advance, save = training.advance, checkpoint.torch.save

    def advance_then_ctrl_c(loop, *a, **k):
        advance(loop, *a, **k)
        if loop.step == 3:
            os.kill(os.getpid(), signal.SIGINT)

    def ctrl_c_again_while_saving(obj, path, *a, **k):
        save(obj, path, *a, **k)
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(1)  # the handler runs here

    monkeypatch.setattr(training, "advance", advance_then_ctrl_c)
    monkeypatch.setattr(checkpoint.torch, "save", ctrl_c_again_while_saving)
    result = _train(data, run, "--max-steps", "100", "--checkpoint-every", "100", *FAST)
    assert result.exit_code == 130, result.output
    line = _one_error(result, "second Ctrl-C", "newest complete checkpoint is kept")
    assert "stopping after this step" in result.output and line
    assert _steps(run) == [] and _leftovers(run) == []
    assert (run / "checkpoints").is_dir()  # it was writing one: .tmp-step-00000003 is gone


# ---- items 9, 11, 18, 20: damaged checkpoints are detected, named, and skipped


def test_state_records_a_checksum_per_file(tmp_path):
    ckpt = make_run(tmp_path / "run", steps=(10,)) / "checkpoints" / "step-00000010"
    files = _state(ckpt)["files"]
    assert set(files) == {"model.safetensors", "ema.safetensors", "training_state.pt"}
    for name, record in files.items():
        assert record["bytes"] == (ckpt / name).stat().st_size
        assert len(record["sha256"]) == 64


def test_bit_flip_in_weights_is_refused_by_sample(tmp_path):
    run = make_run(tmp_path / "run", steps=(10,))
    _flip_a_bit(run / "checkpoints" / "step-00000010" / "ema.safetensors")
    result = invoke(["sample", run, "--out", tmp_path / "s", "-n", "1", "--steps", "2"])
    _one_error(result, "step-00000010", "ema.safetensors", "checksum")
    assert not (tmp_path / "s").exists()


def test_sample_falls_back_from_a_damaged_newest_checkpoint(tmp_path):
    run = make_run(tmp_path / "run", steps=(10, 20))
    _flip_a_bit(run / "checkpoints" / "step-00000020" / "ema.safetensors")
    out = tmp_path / "s"
    result = invoke(["sample", run, "--out", out, "-c", "I", "-n", "1", "--steps", "2"])
    assert result.exit_code == 0, result.output
    text = result.output.replace("\n", "")  # rich wraps long lines
    assert "warning" in text and "step-00000020 is damaged" in text and "step-00000010" in text
    assert json.loads((out / "samples.json").read_text())["entries"][0]["step"] == 10
    named = invoke(["sample", run, "--out", out, "-n", "1", "--checkpoint", "20", "--force"])
    _one_error(named, "step-00000020", "--checkpoint 10")


@pytest.mark.parametrize("command", ["sample", "train"])
def test_non_integer_step_in_state(tmp_path, data, command):
    run = make_run(tmp_path / "run", steps=(10,))
    ckpt = run / "checkpoints" / "step-00000010"
    (ckpt / "state.json").write_text(json.dumps({**_state(ckpt), "step": "abc"}))
    if command == "sample":
        result = invoke(["sample", run, "--out", tmp_path / "s", "-n", "1"])
    else:
        result = _train(data, run, "--max-steps", "20")
    _one_error(result, "state.json", "step", "'abc'")


def test_train_falls_back_from_a_damaged_newest_checkpoint(tmp_path, data):
    run = tmp_path / "run"
    args = ["--checkpoint-every", "1", "--keep", "1", *FAST]
    assert _train(data, run, "--max-steps", "2", *args).exit_code == 0
    assert _steps(run) == [2]
    assert _train(data, run, "--max-steps", "3", "--keep", "5").exit_code == 0
    _flip_a_bit(run / "checkpoints" / "step-00000003" / "model.safetensors")
    result = _train(data, run, "--max-steps", "4", "--keep", "1")
    assert result.exit_code == 0, result.output
    text = result.output.replace("\n", "")  # rich wraps long lines
    assert "step-00000003 is damaged" in text and "resuming from step 2" in text
    assert _steps(run) == [4]  # step 3 was re-written intact, then pruned (--keep 1)
    for _, ckpt in list_checkpoints(run):
        verify_checkpoint(ckpt)


def test_corrupt_training_state_is_one_line(tmp_path, data):
    run = tmp_path / "run"
    assert _train(data, run, "--max-steps", "1", *FAST).exit_code == 0
    ckpt = run / "checkpoints" / "step-00000001"
    state = _state(ckpt)
    del state["files"]  # as written before checksums existed: only loading can tell
    (ckpt / "state.json").write_text(json.dumps(state))
    (ckpt / "training_state.pt").write_bytes(b"PK\x03\x04 not really a zip")
    line = _one_error(_train(data, run, "--max-steps", "2"), "training_state.pt", "damaged")
    assert "weights_only" not in line


def test_every_checkpoint_damaged_is_one_line(tmp_path):
    run = make_run(tmp_path / "run", steps=(10, 20))
    for step in (10, 20):
        _flip_a_bit(run / "checkpoints" / f"step-{step:08d}" / "ema.safetensors")
    with pytest.raises(checkpoint.DamagedCheckpoint, match="every checkpoint"):
        load_for_inference(run)


# ---- item 19: half-pruned checkpoints are cleaned up; pruning is rename-then-delete


def test_half_pruned_checkpoint_is_cleaned_up(tmp_path, data):
    run = tmp_path / "run"
    args = ["--checkpoint-every", "1", "--keep", "5", *FAST]
    assert _train(data, run, "--max-steps", "3", *args).exit_code == 0
    (run / "checkpoints" / "step-00000001" / "model.safetensors").unlink()  # killed mid-prune
    half = run / "checkpoints" / ".tmp-old-step-00000002"  # killed mid-prune, new layout
    (run / "checkpoints" / "step-00000002").rename(half)
    assert _train(data, run, "--max-steps", "4", "--keep", "2").exit_code == 0
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == [
        "step-00000003",
        "step-00000004",
    ]


def test_prune_renames_before_deleting(tmp_path, monkeypatch):
    run = make_run(tmp_path / "run", steps=(10, 20))
    seen = []

    def rmtree(path, *a, **k):
        seen.append(Path(path).name)
        raise KeyboardInterrupt  # killed while deleting

    monkeypatch.setattr(checkpoint.shutil, "rmtree", rmtree)
    with pytest.raises(KeyboardInterrupt):
        checkpoint.prune_checkpoints(run, keep=1)
    assert seen[0] == ".tmp-old-step-00000010"
    assert _steps(run) == [20]  # no half-deleted step-00000010 left to look like a checkpoint
    assert not (run / "checkpoints" / "step-00000010").exists()
    monkeypatch.undo()
    checkpoint.prune_checkpoints(run, keep=1)
    assert [p.name for p in (run / "checkpoints").iterdir()] == ["step-00000020"]
    assert torch.equal(
        load_for_inference(run).unet.state_dict()["class_embedding.weight"],
        load_for_inference(run, step=20).unet.state_dict()["class_embedding.weight"],
    )


def test_export_falls_back_from_a_damaged_newest_checkpoint(tmp_path):
    run = make_run(tmp_path / "run", steps=(10, 20))
    _flip_a_bit(run / "checkpoints" / "step-00000020" / "ema.safetensors")
    result = invoke(["export", run, "--out", tmp_path / "exported"])
    assert result.exit_code == 0, result.output
    text = result.output.replace("\n", "")
    assert "step-00000020 is damaged" in text and "exported step 10" in text
