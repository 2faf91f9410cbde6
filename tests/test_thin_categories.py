"""A category the model never trains on (no photos of it, or --holdout took them all) is
named by prepare and train, recorded in the run, and named again by whatever draws it:
its samples come from an untrained label. A category --holdout took none of is named too
(evaluate cannot judge its realism on unseen photos), and so is one --balance repeats
many times over (its samples may copy its few photos)."""

from __future__ import annotations

import itertools
import json
import warnings

import pytest
import torch
from diffusers import DiffusionPipeline
from evaluate_helpers import make_untrained_run, write_samples
from PIL import Image
from typer.testing import CliRunner

from facediff.cli import app
from facediff.config import SampleConfig
from facediff.evaluation import evaluate
from facediff.evaluation.judge_training import JudgeConfig
from facediff.grids import rows_from_run
from facediff.loading import load_for_inference
from facediff.preparation import held_out_by_name, prepare
from facediff.synthetic import make_demo_data, make_faces

UNTRAINED = (
    "the model will not learn it, and E samples and mixes with E would come from an untrained label"
)


@pytest.fixture(scope="module")
def no_european(tmp_path_factory):
    raw = tmp_path_factory.mktemp("raw") / "raw"
    make_demo_data(raw, per_category=12, size=24, seed=3)
    for path in raw.glob("white*"):
        path.unlink()
    return raw


def _prepare(raw, out, **kw) -> list[str]:
    messages: list[str] = []
    prepare(raw, out, size=16, workers=1, progress=lambda e: messages.append(e.message), **kw)
    return [m for m in messages if m and m.startswith("warning")]


def _with_one_european(raw, tmp_path, held: bool):
    """``raw`` plus one European photo whose name --holdout 0.3 does (not) hold out."""
    names = (f"white_{k}.png" for k in itertools.count())
    name = next(n for n in names if held_out_by_name(n, 0.3) == held)
    mixed = tmp_path / "mixed"
    mixed.mkdir()
    for path in raw.iterdir():
        (mixed / path.name).symlink_to(path)
    Image.new("RGB", (24, 24), (200, 170, 150)).save(mixed / name)
    return mixed


def test_a_category_without_photos_is_named_from_prepare_to_sample(no_european, tmp_path):
    data, run = tmp_path / "d", tmp_path / "run"
    (empty,) = _prepare(no_european, data)
    assert empty == f"warning: no training images of European (E): none found; {UNTRAINED}"

    args = ["train", str(data), "--out", str(run), "--preset", "tiny", "--device", "cpu"]
    result = CliRunner().invoke(app, [*args, "--max-steps", "1", "--lr-warmup-steps", "0"])
    assert result.exit_code == 0, result.output
    assert f"warning: no training images of European (E) in {data}: the model" in result.output
    config = json.loads((run / "config.json").read_text())
    assert config["data"]["counts"] == {"I": 12, "O": 12, "E": 0}

    loaded = load_for_inference(run)
    assert loaded.training_counts == {"I": 12, "O": 12, "E": 0}
    never = "warning: the model never trained on an image of European (E): E samples and mixes"
    assert [w for w in loaded.notes() if w.startswith(never)]
    out = tmp_path / "s"
    args = ["sample", str(run), "-n", "1", "--steps", "1", "--out", str(out)]
    result = CliRunner().invoke(app, [*args, "--mix", "OE"])
    assert result.exit_code == 0 and never in result.output
    assert (out / "OE" / "OE_0.png").is_file()  # it still draws: the warning says what it is
    # sampling what it trained on warns of nothing
    result = CliRunner().invoke(app, [*args, "-c", "O", "--mix", "OI"])
    assert result.exit_code == 0 and "warning" not in result.output, result.output
    # a grid travels without the warning: its rows say it
    rows, _ = rows_from_run(
        run, SampleConfig(steps=1), seeds=1, mixes=["OE", "OI"], strip=("O", "E")
    )
    assert [label for label, _ in rows] == [
        "I",
        "O",
        "E (never trained)",
        "OE (E never trained)",
        "OI",
        "O->E (seed 0; E never trained)",
    ]

    export = tmp_path / "export"
    assert CliRunner().invoke(app, ["export", str(run), "--out", str(export)]).exit_code == 0
    data.rename(tmp_path / "moved")  # the card's counts come from the run, not the data folder
    assert load_for_inference(export).training_counts == {"I": 12, "O": 12, "E": 0}
    card = (export / "README.md").read_text()
    assert "| E | European | `white*` | 0 |" in card and "as `train` recorded them" in card
    assert "> **Never trained:** the model saw no image of European (E)" in card
    # with diffusers alone: the folder's own pipeline.py warns when asked for E
    pipe = DiffusionPipeline.from_pretrained(
        export, custom_pipeline=str(export / "pipeline.py"), trust_remote_code=True
    )
    pipe.set_progress_bar_config(disable=True)
    with pytest.warns(UserWarning, match=r"never trained on an image of European \(E\)"):
        pipe(mix="OE", num_inference_steps=1, generator=[torch.Generator().manual_seed(0)])
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        pipe(category="O", num_inference_steps=1, generator=[torch.Generator().manual_seed(0)])


@pytest.mark.parametrize("held", [True, False])
def test_holdout_taking_all_or_none_of_a_category_is_named(no_european, tmp_path, held):
    raw = _with_one_european(no_european, tmp_path, held)
    warnings = _prepare(raw, tmp_path / "d", holdout=0.3)
    european = [w for w in warnings if "European" in w]
    if held:
        assert european == [
            "warning: no training images of European (E): --holdout 0.3 held out all 1 of its "
            f"images; {UNTRAINED}"
        ]
    else:
        assert european == [
            "warning: --holdout 0.3 held out none of European's 1 image: evaluate cannot judge "
            "E's realism against photos the model never saw"
        ]


def test_evaluate_says_which_categories_the_model_never_saw(no_european, tmp_path):
    data = tmp_path / "d"
    _prepare(no_european, data)
    run = make_untrained_run(tmp_path / "run", data)
    faces, labels = make_faces(8, size=16, seed=4)
    samples = write_samples(
        tmp_path / "s", {c: ({c: 1.0}, faces[labels == k][:4]) for k, c in enumerate("IOE")}
    )
    judge = JudgeConfig(width=8, epochs=1)
    report = evaluate(run, samples=samples, judge_config=judge, device="cpu").report
    assert report["data"]["counts"] == {"I": 12, "O": 12, "E": 0}
    md = (tmp_path / "run" / "evaluation" / "report.md").read_text()
    assert "| category | name | training images | samples | hit rate |" in md
    assert "| E | European | 0 | 4 |" in md and "| O | Oriental | 12 | 4 |" in md
    (never,) = [w for w in report["warnings"] if "never trained" in w]
    assert never == (
        "the model never trained on an image of E (none in the prepared data): E's scores "
        "judge an untrained label"
    )


def test_balance_names_a_category_it_repeats_many_times_over(no_european, tmp_path):
    raw = _with_one_european(no_european, tmp_path, held=False)
    data = tmp_path / "d"
    _prepare(raw, data)
    args = ["train", str(data), "--preset", "tiny", "--device", "cpu", "--max-steps", "1"]
    args += ["--lr-warmup-steps", "0"]
    balanced = CliRunner().invoke(app, [*args, "--out", str(tmp_path / "b"), "--balance"])
    assert balanced.exit_code == 0, balanced.output
    (line,) = [s for s in balanced.output.splitlines() if "--balance draws" in s]
    # 25 photos in 3 categories: 8.3 draws per category per epoch for E's one photo
    assert line.endswith(
        "warning: --balance draws each European (E) photo about 8× as often as without it "
        "(1 photo; 8 per category on average): E samples may copy it (see evaluate's "
        "memorisation section)"
    )
    plain = CliRunner().invoke(app, [*args, "--out", str(tmp_path / "p")])
    assert plain.exit_code == 0 and "--balance draws" not in plain.output
