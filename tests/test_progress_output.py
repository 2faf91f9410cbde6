"""Progress and results where people run facediff: log files, pipes, notebooks, --json."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time

from evaluate_helpers import make_untrained_run, write_samples
from sampling_helpers import invoke
from train_helpers import faces_dataset

import facediff
from facediff.cli.render import PlainProgress
from facediff.progress import Progress
from facediff.synthetic import make_demo_data, make_faces

FAST = ["--preset", "tiny", "--batch-size", "4", "--preview-every", "0", "--device", "cpu"]
STAMP = r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d"


def test_plain_lines_are_timestamped_rate_limited_and_complete(tmp_path):
    log = tmp_path / "log.txt"
    with log.open("w") as stream:
        bar = PlainProgress(stream, seconds=3600)
        info = {"epoch": 2, "loss": 0.0412, "img/s": 55.1, "lr": 0.0002}
        for step in range(1, 101):
            bar(Progress("train", step, 100, info))
            if step == 50:
                bar(Progress("train", step, 100, info, message="checkpoint saved: x"))
    lines = log.read_text().splitlines()
    # The first event, the message and the last event; the 97 others fall in the interval.
    assert len(lines) == 3, lines
    assert all(re.match(STAMP + " ", ln) for ln in lines)
    assert "train step 1/100 (1%) epoch 2 loss 0.0412 img/s 55.1 lr 0.0002" in lines[0]
    assert "eta" not in lines[0]  # no rate yet
    assert lines[1].endswith("checkpoint saved: x")
    assert "train step 100/100 (100%)" in lines[2]


def test_train_log_shows_progress_while_training(tmp_path):
    """`facediff train > log 2>&1`: timestamped lines appear while the run is going."""
    data = faces_dataset(tmp_path / "data", per_category=4)
    log = tmp_path / "train.log"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "FACEDIFF_PROGRESS_SECONDS": "0.5"}
    cmd = [sys.executable, "-m", "facediff", "train", str(data), "--out", str(tmp_path / "run")]
    with log.open("w") as stream:
        proc = subprocess.Popen(
            [*cmd, "--max-steps", "100000", "--log-every", "5", *FAST],
            stdout=stream,
            stderr=subprocess.STDOUT,
            env=env,
        )
        try:
            deadline = time.monotonic() + 180
            progress: list[str] = []
            while len(progress) < 3:  # three lines, so they come as training goes
                assert proc.poll() is None, log.read_text()
                assert time.monotonic() < deadline, log.read_text()
                time.sleep(0.2)
                lines = log.read_text().splitlines()
                progress = [ln for ln in lines if re.match(STAMP + " train step \\d+/", ln)]
            assert proc.poll() is None  # the run is still going: the lines were not buffered
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=120)
    assert proc.returncode == 130
    assert "loss" in progress[-1] and "img/s" in progress[-1] and "lr" in progress[-1]
    assert "eta" in progress[-1]
    text = log.read_text()
    assert "\x1b[" not in text  # no terminal escapes in a log file
    assert "resume with: facediff train" in text


def test_quiet_train_prints_only_the_result(tmp_path):
    data = faces_dataset(tmp_path / "data", per_category=4)
    r = invoke(["train", data, "--out", tmp_path / "run", "--max-steps", "2", "--quiet", *FAST])
    assert r.exit_code == 0, r.output
    assert r.stderr.strip() == "" or all(ln.startswith("warning") for ln in r.stderr.splitlines())
    assert r.stdout.startswith("step 2 (epoch")


def test_prepare_json_on_stdout(tmp_path):
    raw = tmp_path / "raw"
    make_demo_data(raw, per_category=3, size=16, seed=0)
    r = invoke(["prepare", raw, "--out", tmp_path / "data", "--size", "16", "--json"])
    assert r.exit_code == 0, r.output
    summary = json.loads(r.stdout)
    assert summary["kept"] == 9 and summary["size"] == 16
    assert {c["code"]: c["kept"] for c in summary["categories"]} == {"I": 3, "O": 3, "E": 3}
    assert summary["out"] == str(tmp_path / "data")


def test_sample_json_on_stdout(tmp_path):
    images, labels = make_faces(8, size=16, seed=0)
    from evaluate_helpers import write_prepared

    data = write_prepared(tmp_path / "data", images, labels)
    run = make_untrained_run(tmp_path / "run", data)
    args = ["--mix", "OI", "-n", "2", "--steps", "2", "--device", "cpu", "--json"]
    r = invoke(["sample", run, *args, "--out", tmp_path / "s"])
    assert r.exit_code == 0, r.output
    summary = json.loads(r.stdout)
    assert summary["images"] == 2 and list(summary["files"]) == ["OI"]
    assert summary["record"] == str(tmp_path / "s" / "samples.json")


def test_evaluate_json_on_stdout(tmp_path):
    images, labels = make_faces(40, size=16, seed=0)
    from evaluate_helpers import write_prepared

    data = write_prepared(tmp_path / "data", images, labels)
    run = make_untrained_run(tmp_path / "run", data)
    e_images, e_labels = make_faces(20, size=16, seed=3)
    samples = write_samples(tmp_path / "s", {"E": ({"E": 1.0}, e_images[e_labels == 2][:6])})
    args = ["-n", "6", "--json", "--judge-width", "8", "--judge-epochs", "3", "--device", "cpu"]
    r = invoke(
        ["evaluate", run, "--data", data, "--samples", samples, "--out", tmp_path / "rep", *args]
    )
    assert r.exit_code == 0, r.output
    report = json.loads(r.stdout)
    assert report["hit_rate"][0]["category"] == "E"
    assert "heldout_accuracy" in report["judge"]
    assert report["files"]["report_md"] == str(tmp_path / "rep" / "report.md")


def test_api_shows_bars_by_default_and_is_silenceable(tmp_path, capsys):
    raw = tmp_path / "raw"
    make_demo_data(raw, per_category=2, size=16, seed=0)
    facediff.prepare(raw, tmp_path / "a", size=16, workers=1)
    assert "prepare" in capsys.readouterr().err  # a tqdm bar named after the task
    facediff.prepare(raw, tmp_path / "b", size=16, workers=1, progress=None)
    assert capsys.readouterr().err == ""
    facediff.prepare(raw, tmp_path / "c", size=16, workers=1, progress=False)
    assert capsys.readouterr().err == ""


def test_demo_data_suggests_the_matching_size(tmp_path):
    r = invoke(["demo-data", tmp_path / "raw", "-n", "1", "--size", "32"])
    assert r.exit_code == 0, r.output
    assert "--size 32" in r.stdout


def test_bars_show_names_and_figures_as_they_are():
    """A task or figure holding "[...]" is shown, not taken for terminal markup."""
    import io

    from rich.console import Console

    from facediff.cli.render import RichProgress
    from facediff.progress import Progress

    buffer = io.StringIO()
    with RichProgress(Console(file=buffer, force_terminal=True, width=200)) as bars:
        bars(Progress("sample [e]", 1, 2, info={"mix": "[o]"}, message="wrote [i]"))
    text = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", buffer.getvalue())  # colours off
    assert "sample [e]" in text and "mix [o]" in text and "wrote [i]" in text
