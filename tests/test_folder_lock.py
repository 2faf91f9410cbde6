"""One writer per output folder: a command whose output folder another process is writing
is refused at once, with one line naming the folder and the option, and writes nothing.

Another process holds the folder here the way a running facediff command does, with an
advisory ``flock`` on the folder, taken in a separate Python process."""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from evaluate_helpers import make_untrained_run
from PIL import Image
from sampling_helpers import error_lines, invoke, make_run
from train_helpers import blocks_dataset, write_dataset

import facediff.sample_folder as sample_folder
from facediff import folder_lock
from facediff.evaluation import evaluate
from facediff.evaluation.judge_training import JudgeConfig
from facediff.folder_lock import FolderBusy
from facediff.synthetic import make_faces

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="flock is POSIX")

TRAIN_FAST = ["--preset", "tiny", "--batch-size", "4", "--preview-every", "0", "--device", "cpu"]
SAMPLE_FAST = ["--steps", "2", "--device", "cpu"]
HOLD = (
    "import fcntl, os, sys, time\n"
    "fd = os.open(sys.argv[1], os.O_RDONLY)\n"
    "fcntl.flock(fd, fcntl.LOCK_EX)\n"
    "print('held', flush=True)\n"
    "time.sleep(float(sys.argv[2]))\n"
)


@contextlib.contextmanager
def held_elsewhere(folder: Path, seconds: float = 600) -> Iterator[subprocess.Popen]:
    """``folder`` locked by another process for ``seconds`` or until the block ends, when
    that process is killed (SIGKILL: no clean release)."""
    folder.mkdir(parents=True, exist_ok=True)
    args = [sys.executable, "-c", HOLD, str(folder), str(seconds)]
    proc = subprocess.Popen(args, stdout=subprocess.PIPE)
    try:
        assert proc.stdout.readline().strip() == b"held"
        yield proc
    finally:
        proc.kill()
        proc.wait()
        proc.stdout.close()


def _busy(result, folder: Path, option: str, holder: subprocess.Popen) -> None:
    assert result.exit_code == 1, result.output
    lines = error_lines(result)
    assert len(lines) == 1, result.output
    assert f"{folder} is in use" in lines[0] and option in lines[0], lines[0]
    if Path("/proc/locks").exists():  # Linux names the process holding it
        assert f"pid {holder.pid}" in lines[0], lines[0]


def _tree(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


def test_train_refuses_a_run_another_process_writes_then_trains_once_it_is_gone(tmp_path):
    data = blocks_dataset(tmp_path / "data", per_category=4)
    run = tmp_path / "run"
    args = ["train", data, "--out", run, "--max-steps", "2", *TRAIN_FAST]
    with held_elsewhere(run) as holder:
        _busy(invoke(args), run, "--out", holder)
        assert _tree(run) == []  # no config, no metrics, no checkpoint
    # the holder was killed, not closed cleanly: the kernel dropped its lock
    result = invoke(args)
    assert result.exit_code == 0, result.output
    assert (run / "checkpoints" / "step-00000002").is_dir()


def test_a_run_folder_made_for_a_failed_train_is_removed(tmp_path):
    result = invoke(["train", tmp_path / "missing", "--out", tmp_path / "runs" / "new"])
    assert result.exit_code != 0 and error_lines(result), result.output
    assert not (tmp_path / "runs").exists()


def test_prepare_refuses_an_out_folder_another_process_writes(tmp_path):
    raw = tmp_path / "raw"
    raw.mkdir()
    for i, prefix in enumerate(["indian", "asian", "white"] * 2):
        Image.new("RGB", (40, 40), (60 * i % 255, 90, 120)).save(raw / f"{prefix}_{i}.png")
    before = {p.name: p.read_bytes() for p in raw.iterdir()}
    out = tmp_path / "data"
    args = ["prepare", raw, "--out", out, "--size", "16"]
    with held_elsewhere(out) as holder:
        _busy(invoke(args), out, "--out", holder)
        assert _tree(out) == []
    assert {p.name: p.read_bytes() for p in raw.iterdir()} == before
    assert invoke(args).exit_code == 0
    assert (out / "manifest.json").is_file()


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    return make_run(tmp_path_factory.mktemp("lock") / "run", steps=(10,))


def test_sample_refuses_a_mix_another_process_writes_and_samples_the_others(run, tmp_path):
    out = tmp_path / "samples"
    with held_elsewhere(out / "O") as holder:
        result = invoke(["sample", run, "-c", "O", "-n", "2", "--out", out, *SAMPLE_FAST])
        _busy(result, out / "O", "--out", holder)
        assert _tree(out) == ["O"]  # the holder's folder only
        # another mix into the same folder meanwhile: two GPUs, one folder
        result = invoke(["sample", run, "-c", "I", "-n", "2", "--out", out, *SAMPLE_FAST])
        assert result.exit_code == 0, result.output
    assert sorted(p.name for p in (out / "I").iterdir()) == ["I_0.png", "I_1.png"]
    record = json.loads((out / "samples.json").read_text())
    assert [list(e["mixes"]) for e in record["entries"]] == [["I"]]


def test_sample_into_a_folder_another_command_writes_is_refused_before_sampling(
    run, tmp_path, monkeypatch
):
    """e.g. ``sample RUN --out RUN`` while RUN trains: refused at once, not after writing
    its images and waiting to append its record."""
    monkeypatch.setattr(sample_folder, "RECORD_WAIT_S", 0.2)
    out = tmp_path / "training-run"
    sampled = []
    monkeypatch.setattr(sample_folder, "save_png", lambda img, p: sampled.append(p))
    with held_elsewhere(out) as holder:
        result = invoke(["sample", run, "-c", "O", "-n", "2", "--out", out, *SAMPLE_FAST])
        _busy(result, out, "--out", holder)
    assert sampled == [] and _tree(out) == []


def test_the_samples_record_is_appended_by_one_process_at_a_time(tmp_path, monkeypatch):
    out = tmp_path / "samples"
    sample_folder.write_record(out, {"mixes": {"O": {"O": 1.0}}})
    monkeypatch.setattr(sample_folder, "RECORD_WAIT_S", 0.2)
    with held_elsewhere(out), pytest.raises(FolderBusy, match=f"{out} is in use"):
        sample_folder.write_record(out, {"mixes": {"I": {"I": 1.0}}})
    sample_folder.write_record(out, {"mixes": {"E": {"E": 1.0}}})  # free again
    entries = json.loads((out / "samples.json").read_text())["entries"]
    assert [list(e["mixes"]) for e in entries] == [["O"], ["E"]]


def test_export_refuses_an_out_folder_another_process_writes(run, tmp_path):
    out = tmp_path / "export"
    with held_elsewhere(out) as holder:
        _busy(invoke(["export", run, "--out", out]), out, "--out", holder)
        assert _tree(out) == []
    assert invoke(["export", run, "--out", out]).exit_code == 0
    assert (out / "model_index.json").is_file()


def test_evaluate_refuses_an_out_folder_another_process_writes(tmp_path):
    images, labels = make_faces(6, size=16, seed=0)
    data = write_dataset(tmp_path / "data", images, labels)
    run = make_untrained_run(tmp_path / "run", data)
    out = tmp_path / "evaluation"
    with held_elsewhere(out):
        with pytest.raises(FolderBusy, match="is in use"):
            evaluate(run, data=data, per_group=2, out=out, device="cpu")
        assert _tree(out) == []
        assert not (run / "judge").exists()  # refused before the judge was trained


def test_evaluate_waits_for_a_judge_another_process_trains_then_goes_on(tmp_path):
    images, labels = make_faces(6, size=16, seed=0)
    data = write_dataset(tmp_path / "data", images, labels)
    run = make_untrained_run(tmp_path / "run", data)
    messages: list[str] = []
    with held_elsewhere(run / "judge", seconds=1.5) as holder:
        report = evaluate(
            run,
            data=data,
            per_group=2,
            device="cpu",
            inception=False,
            judge_config=JudgeConfig(epochs=1),
            progress=lambda e: messages.append(e.message or ""),
        )
        assert holder.poll() is not None  # it waited for the holder to end
    waits = [m for m in messages if m.startswith("waiting for")]
    assert len(waits) == 1 and f"training the judge in {run / 'judge'}" in waits[0], messages
    assert report.judge_trained and (run / "judge" / "judge.json").is_file()


def test_a_process_may_hold_a_folder_it_holds_already(tmp_path):
    folder = tmp_path / "a" / "b"
    # e.g. a command calling another on its folder
    with folder_lock.writing(folder), folder_lock.writing(folder):
        (folder / "x").write_text("x")
    with folder_lock.writing(tmp_path / "c" / "d"):
        pass
    assert not (tmp_path / "c").exists()  # made for the lock, left empty: removed
    assert (folder / "x").is_file()


def test_a_grid_another_process_wrote_meanwhile_is_kept(run, tmp_path, monkeypatch):
    """``grid`` checks that --out is free before sampling; a grid another process writes
    there while this one samples is kept, not replaced, unless --force."""
    import facediff.grids as grids

    out = tmp_path / "grid.png"
    compose = grids.compose_grid

    def theirs_lands_meanwhile(*args, **kwargs):
        Image.new("RGB", (8, 8), (255, 0, 0)).save(out)
        return compose(*args, **kwargs)

    monkeypatch.setattr(grids, "compose_grid", theirs_lands_meanwhile)
    args = ["grid", run, "-c", "O", "--seeds", "2", "--out", out, *SAMPLE_FAST]
    result = invoke(args)
    assert result.exit_code == 1, result.output
    (line,) = error_lines(result)
    assert f"{out} was written by another process meanwhile; kept it" in line, line
    assert Image.open(out).size == (8, 8)  # theirs, intact
    assert sorted(p.name for p in tmp_path.iterdir()) == ["grid.png"]  # no temporary left
    result = invoke([*args, "--force"])
    assert result.exit_code == 0, result.output
    assert Image.open(out).size != (8, 8)
