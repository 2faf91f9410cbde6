"""What drew a sample folder's images: `sample` warns before mixing ways into one label
folder, `evaluate --samples` reports and warns, `grid --from-samples` warns per row."""

from __future__ import annotations

import json
import os

import pytest
import torch
from evaluate_helpers import make_untrained_run, write_prepared
from PIL import Image
from sampling_helpers import TINY, save_tiny_checkpoint

from facediff.config import SampleConfig
from facediff.evaluation import evaluate
from facediff.evaluation.judge_training import JudgeConfig
from facediff.grids import grid
from facediff.model import build_unet
from facediff.sample_folder import sample
from facediff.synthetic import make_faces


def fast(**kw) -> SampleConfig:
    return SampleConfig(**{"steps": 2, "device": "cpu", **kw})


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    """Prepared data and a run with checkpoints at steps 1 and 2 (different weights)."""
    root = tmp_path_factory.mktemp("prov")
    images, labels = make_faces(40, size=TINY.sample_size, seed=0)
    data = write_prepared(root / "data", images, labels)
    run = make_untrained_run(root / "run", data)
    torch.manual_seed(1)
    sd = build_unet(TINY).state_dict()
    save_tiny_checkpoint(run, 2, sd, sd, data_path=str(data))
    return data, run


def warnings_of(run, out, config, **kw) -> list[str]:
    said = []
    sample(run, out, config, categories=["O"], progress=lambda e: said.append(e.message), **kw)
    return [m for m in said if m and m.startswith("warning")]


def test_sampling_more_seeds_alike_says_nothing(env, tmp_path, monkeypatch):
    _, run = env
    out = tmp_path / "s"
    monkeypatch.chdir(run.parent)
    assert warnings_of(run.name, out, fast(n=2)) == []
    assert warnings_of(run, out, fast(n=2, seed=2)) == []  # the same model, named otherwise
    entries = json.loads((out / "samples.json").read_text())["entries"]
    # the model is recorded where it is, from any working folder
    newest = str(run / "checkpoints" / "step-00000002")
    assert [e["model"] for e in entries] == [newest, newest]


def test_sampling_another_way_into_a_label_folder_is_named(env, tmp_path):
    _, run = env
    out = tmp_path / "s"
    warnings_of(run, out, fast(n=2), checkpoint_step=1)
    warnings_of(run, out, fast(n=1, seed=2, guidance=5.0))
    (line,) = warnings_of(run, out, fast(n=1, seed=3))
    assert line.startswith(f"warning: {out / 'O'} already holds images drawn otherwise")
    newest = run / "checkpoints" / "step-00000002"
    assert f"(model {os.path.abspath(newest)}, step 2, guidance 3.0)" in line
    assert "2 with model " in line and "step 1" in line
    assert "1 with guidance 5.0" in line
    assert line.endswith("sample into another --out to keep them apart")
    assert len(list((out / "O").glob("*.png"))) == 4  # warned, and sampled


def test_redrawing_the_same_seeds_with_force_replaces_them_silently(env, tmp_path):
    _, run = env
    out = tmp_path / "s"
    warnings_of(run, out, fast(n=2, guidance=5.0))
    assert warnings_of(run, out, fast(n=2), force=True) == []


def test_evaluate_reports_what_drew_a_folder_and_warns_when_it_is_mixed(env, tmp_path):
    data, run = env
    out = tmp_path / "s"
    sample(run, out, fast(n=2), categories=["O", "I"], checkpoint_step=1)
    sample(run, out, fast(n=2, seed=2), categories=["O"])  # I: step 1 only
    kw = dict(data=data, judge_config=JudgeConfig(width=8, epochs=1), device="cpu")
    report = evaluate(run, samples=out, out=tmp_path / "ev", **kw).report
    groups = report["samples"]["groups"]
    o_by = groups["O"]["sampled_by"]
    assert [(b["step"], b["images"]) for b in o_by] == [(1, 2), (2, 2)]
    assert o_by[0]["model"] == os.path.abspath(run / "checkpoints" / "step-00000001")
    assert [(b["step"], b["images"]) for b in groups["I"]["sampled_by"]] == [(1, 2)]
    warned = [w for w in report["warnings"] if "drawn" in w]
    assert warned == [  # groups in the default order: I, O
        "2 samples in I were drawn from another model folder than the evaluated one "
        "(step 1, by samples.json): the scores judge that model",
        "samples in O were drawn 2 different ways (2 models; step 1 / 2): the scores mix "
        "them (sample each into its own folder)",
        "2 samples in O were drawn from another model folder than the evaluated one "
        "(step 1, by samples.json): the scores judge that model",
    ]
    md = (tmp_path / "ev" / "report.md").read_text()
    assert f"- `{o_by[0]['model']}` (step 1, ema weights; sampler" in md
    assert md.count("`: ") == 0 and ": I (2), O (2)\n" in md and "weights; sampler" in md
    # evaluated at the step that drew I, O's newer half is the other model
    report = evaluate(run, samples=out, out=tmp_path / "ev1", checkpoint_step=1, **kw).report
    other = [w for w in report["warnings"] if "another model" in w]
    assert other == [
        "2 samples in O were drawn from another model folder than the evaluated one "
        "(step 2, by samples.json): the scores judge that model"
    ]


def test_a_folder_without_a_record_of_its_images_is_reported_without_warnings(env, tmp_path):
    data, run = env
    out = tmp_path / "s"
    images, _ = make_faces(40, size=TINY.sample_size, seed=3)
    (out / "O").mkdir(parents=True)
    for i, img in enumerate(images[:3]):
        Image.fromarray(img.permute(1, 2, 0).numpy()).save(out / "O" / f"O_{i}.png")
    kw = dict(data=data, judge_config=JudgeConfig(width=8, epochs=1), device="cpu")
    report = evaluate(run, samples=out, mixes=["O"], out=tmp_path / "ev", **kw).report
    assert report["samples"]["groups"]["O"]["sampled_by"] == [{"images": 3}]
    assert not [w for w in report["warnings"] if "drawn" in w]
    assert "Drawn by" not in (tmp_path / "ev" / "report.md").read_text()


def test_grid_from_samples_names_a_row_drawn_different_ways(env, tmp_path):
    _, run = env
    out = tmp_path / "s"
    sample(run, out, fast(n=2), categories=["O", "I"])
    sample(run, out, fast(n=1, seed=2, guidance=5.0), categories=["O"])
    said = []
    result = grid(
        None, None, SampleConfig(), from_samples=out, progress=lambda e: said.append(e.message)
    )
    assert result.rows == 2 and result.columns == 3
    assert [m for m in said if m] == [
        "warning: row O shows images drawn 2 different ways (guidance 3.0 / 5.0); sample "
        "each way into its own folder to keep them apart"
    ]


def test_grid_cells_fit_the_largest_image(tmp_path):
    """A row of larger images is never shrunk to the first image's cells."""
    from facediff.grids import compose_grid

    small = [Image.new("RGB", (64, 64), "red")]
    large = [Image.new("RGB", (128, 128), (0, 0, 255))]
    canvas = compose_grid([("a", small), ("b", large)])
    tiles = compose_grid([("a", large), ("b", small)])
    assert canvas.size == tiles.size  # same cells whichever row comes first
    assert canvas.height > 2 * 128


def test_two_mixes_sharing_a_label_are_not_drawn_alike(env, tmp_path):
    """Labels round weights to whole percents: O:1,I:2 and O:0.331,I:0.669 share O33I67."""
    _, run = env
    out = tmp_path / "s"
    sample(run, out, fast(n=2), mixes=["O:1,I:2"])
    said = []
    sample(run, out, fast(n=1, seed=2), mixes=["O:0.331,I:0.669"], progress=said.append)
    (line,) = [e.message for e in said if e.message]
    assert line.startswith(f"warning: {out / 'O33I67'} already holds images drawn otherwise")
    assert '(mix {"O": 0.331, "I": 0.669}): 2 with mix {"O": 0.333' in line
