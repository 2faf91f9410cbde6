"""`evaluate --checkpoint STEP`, and evaluate never writes into a folder it only reads."""

from __future__ import annotations

import json

import pytest
from evaluate_helpers import SIZE, write_prepared
from sampling_helpers import error_lines, invoke, make_run

from facediff.exporting import export
from facediff.synthetic import make_faces

FAST = ["-n", "2", "--steps", "1", "--mix", "O", "--judge-width", "8", "--judge-epochs", "1"]
FAST += ["--device", "cpu", "--batch-size", "2"]


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    root = tmp_path_factory.mktemp("inputs")
    images, labels = make_faces(12, size=SIZE, seed=0)
    data = write_prepared(root / "data", images, labels)
    run = make_run(root / "run", steps=(1, 2))
    return data, run


def _tree(folder):
    return sorted(
        (p.relative_to(folder).as_posix(), p.stat().st_mtime_ns) for p in folder.rglob("*")
    )


def test_checkpoint_option_picks_the_step(env, tmp_path):
    data, run = env
    r = invoke(["evaluate", run, "--data", data, "--checkpoint", "1", "--json", *FAST])
    assert r.exit_code == 0, r.output
    report = json.loads(r.stdout)
    assert report["samples"]["checkpoint_step"] == 1
    assert report["files"]["report_md"] == str(run / "evaluation-step-1" / "report.md")
    r = invoke(["evaluate", run, "--data", data, "--checkpoint", "7", *FAST])
    assert r.exit_code == 1
    assert "no checkpoint for step 7" in error_lines(r)[0]


def test_exported_model_is_only_read(env, tmp_path, monkeypatch):
    data, run = env
    model = tmp_path / "model"
    export(run, model)
    before = _tree(model)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.chdir(tmp_path)
    r = invoke(["evaluate", model, "--data", data, "--json", *FAST])
    assert r.exit_code == 0, r.output
    assert _tree(model) == before  # nothing written, nothing touched
    assert (tmp_path / "model-evaluation" / "report.md").is_file()
    cached = list((tmp_path / "cache" / "facediff" / "judges").glob("*/judge/judge.safetensors"))
    assert len(cached) == 1
    stamp = cached[0].stat().st_mtime_ns
    r = invoke(["evaluate", model, "--data", data, "--force", *FAST])
    assert r.exit_code == 0, r.output
    assert cached[0].stat().st_mtime_ns == stamp  # the cached judge was reused
    assert _tree(model) == before
