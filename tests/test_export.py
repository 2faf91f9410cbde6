"""`facediff export`: a diffusers folder that loads with diffusers alone."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from diffusers import DPMSolverMultistepScheduler, UNet2DModel
from evaluate_helpers import write_prepared, write_samples
from sampling_helpers import TINY as TINY_MODEL
from sampling_helpers import error_lines, invoke, make_run, save_tiny_checkpoint

from facediff.config import SampleConfig
from facediff.dataset import read_manifest
from facediff.errors import FacediffError
from facediff.evaluation import evaluate
from facediff.evaluation.judge_training import JudgeConfig
from facediff.exporting import export
from facediff.generation import generate, make_scheduler
from facediff.loading import load_for_inference
from facediff.mix import parse_mix
from facediff.model import build_unet
from facediff.sample_folder import sample
from facediff.synthetic import make_faces


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    return make_run(tmp_path_factory.mktemp("e") / "run", steps=(10, 20))


def test_round_trip_with_diffusers_alone(run, tmp_path):
    out = tmp_path / "export"
    r = invoke(["export", run, "--out", out])
    assert r.exit_code == 0, r.output
    assert (out / "unet" / "diffusion_pytorch_model.safetensors").is_file()
    info = json.loads((out / "facediff.json").read_text())
    assert [c["code"] for c in info["categories"]] == ["I", "O", "E"]
    assert info["codes"] == {"I": 0, "O": 1, "E": 2} and info["null_label"] == 3
    assert info["size"] == 16 and info["step"] == 20
    assert info["scheduler"]["beta_schedule"] == "squaredcos_cap_v2"
    assert info["model"]["block_out_channels"] == [8, 16]

    index = json.loads((out / "model_index.json").read_text())
    assert index["_class_name"] == "FaceDiffPipeline"
    assert index["unet"] == ["diffusers", "UNet2DModel"]
    assert [c["code"] for c in index["categories"]] == ["I", "O", "E"]
    assert index["sample_defaults"] == {
        "num_inference_steps": SampleConfig().steps,
        "guidance_scale": SampleConfig().guidance,
        "mix_mode": SampleConfig().mix_mode,
        "deep_cache": 3,  # the default, named: an export without it means 1
    }
    for name in ("pipeline.py", "guidance.py", "README.md"):
        assert (out / name).is_file()
    assert "import facediff" not in (out / "pipeline.py").read_text()
    assert "from facediff" not in (out / "guidance.py").read_text()

    unet = UNet2DModel.from_pretrained(out / "unet").eval()
    # The scheduler is the one `facediff sample` uses by default, with its exact settings,
    # on the run's recorded noise schedule.
    sched = DPMSolverMultistepScheduler.from_pretrained(out / "scheduler")
    want = make_scheduler(SampleConfig().sampler, info["scheduler"])
    public = lambda c: {k: v for k, v in c.items() if not k.startswith("_")}  # noqa: E731
    assert public(sched.config) == public(want.config)
    assert sched.config.beta_schedule == "squaredcos_cap_v2"
    ours = load_for_inference(run).unet
    x = torch.randn(4, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    t = torch.tensor([0, 10, 500, 999])
    labels = torch.tensor([0, 1, 2, 3])
    with torch.inference_mode():
        assert torch.equal(
            unet(x, t, class_labels=labels).sample, ours(x, t, class_labels=labels).sample
        )

    loaded = load_for_inference(out)
    assert loaded.weights == "export" and loaded.step == 20
    mix = parse_mix("OI", loaded.categories)
    kw = dict(steps=2, device="cpu")
    assert torch.equal(
        generate(loaded, mix, [3], **kw), generate(load_for_inference(run), mix, [3], **kw)
    )
    res = sample(out, tmp_path / "samples", SampleConfig(n=1, steps=2, device="cpu"), mixes=["OIE"])
    assert res.images == 1
    grid = tmp_path / "g.png"
    r = invoke(["grid", out, "--seeds", "2", "--steps", "2", "--device", "cpu", "--out", grid])
    assert r.exit_code == 0, r.output
    assert grid.is_file()


def test_checkpoint_and_raw_weights(run, tmp_path):
    res = export(run, tmp_path / "x", checkpoint_step=10, use_ema=False)
    assert (res.step, res.weights) == (10, "model")
    info = json.loads((tmp_path / "x" / "facediff.json").read_text())
    assert info["step"] == 10 and info["weights"] == "model"


def test_refusals(run, tmp_path):
    out = tmp_path / "busy"
    out.mkdir()
    (out / "keep.txt").write_text("x")
    r = invoke(["export", run, "--out", out])
    assert r.exit_code == 1
    assert error_lines(r) == [
        f"facediff: error: {out} already exists and is not empty; use --force to overwrite"
    ]
    assert export(run, out, force=True).step == 20
    with pytest.raises(FacediffError, match="already an exported model"):
        export(out, tmp_path / "again")
    r = invoke(["export", tmp_path / "nope", "--out", tmp_path / "o"])
    assert r.exit_code == 1 and len(error_lines(r)) == 1
    (tmp_path / "a file").write_text("x")
    r = invoke(["export", run, "--out", tmp_path / "a file"])
    assert error_lines(r) == [
        f"facediff: error: --out {tmp_path / 'a file'} is a file, not a folder"
    ]


def test_v_prediction_run_exports_its_schedule(tmp_path):
    run = make_run(tmp_path / "run", prediction_type="v_prediction")
    export(run, tmp_path / "out")
    sched = DPMSolverMultistepScheduler.from_pretrained(tmp_path / "out" / "scheduler")
    assert sched.config.prediction_type == "v_prediction"


@pytest.fixture(scope="module")
def evaluated(tmp_path_factory):
    """A run trained (as recorded) on a prepared dataset, with a `facediff evaluate` report."""
    root = tmp_path_factory.mktemp("card")
    images, labels = make_faces(12, size=16, seed=0)
    by_label = [(labels == i).nonzero()[:, 0] for i in range(3)]
    keep = torch.cat([by_label[0], by_label[1][:8], by_label[2]])
    data = write_prepared(root / "data", images[keep], labels[keep])  # I 12, O 8, E 12
    fingerprint = read_manifest(data)["packed"]["sha256"]
    torch.manual_seed(0)
    sd = build_unet(TINY_MODEL).state_dict()
    run = root / "run"
    save_tiny_checkpoint(run, 7, sd, sd, data_path=str(data), fingerprint=fingerprint)
    fresh, fresh_labels = make_faces(6, size=16, seed=3)
    groups = {c: ({c: 1.0}, fresh[fresh_labels == i][:4]) for i, c in enumerate("IOE")}
    samples = write_samples(root / "samples", groups)
    report = evaluate(
        run,
        samples=samples,
        per_group=4,
        judge_config=JudgeConfig(width=8, epochs=2),
        inception=False,
        device="cpu",
    ).report
    return run, report


def test_model_card_carries_the_numbers(evaluated, tmp_path):
    run, report = evaluated
    result = export(run, tmp_path / "faces-model")
    assert result.report == run / "evaluation" / "report.json"
    card = (tmp_path / "faces-model" / "README.md").read_text()
    front, _, body = card.removeprefix("---\n").partition("\n---\n")
    assert "library_name: diffusers" in front and "- facediff" in front
    assert "| I | Indian | `indian*` | 12 | 0 |" in body
    assert "| O | Oriental | `asian*` | 8 | 1 |" in body
    assert "32 in all" in body and "prepared data `data`" in body
    assert str(run.parent) not in body and str(tmp_path) not in body  # no local paths
    assert "| training steps | 7 |" in body and "| training images seen | 28 |" in body
    assert "| resolution | 16×16 px |" in body
    assert "DPMSolverMultistepScheduler" in body
    acc = report["judge"]["heldout_accuracy"]["overall"]
    assert f"**{acc:.3f}**" in body
    for h in report["hit_rate"]:
        assert f"| {h['category']} | {h['name']} | {h['n']} | {h['hit_rate']:.3f} |" in body
    fd = report["realism"]["judge"]["per_category"]["I"]["fd"]
    assert f"| judge | I | 4 | {fd:.4g} |" in body
    assert "must not be used to infer" in body and "self-declared or annotated" in body
    assert 'custom_pipeline="' in body and "FaceDiffPipeline.from_pretrained" in body
    info = json.loads((tmp_path / "faces-model" / "facediff.json").read_text())
    assert info["training_counts"] == [12, 8, 12]


def test_report_named_on_the_command_line(evaluated, run, tmp_path):
    src, _ = evaluated
    report = src / "evaluation" / "report.json"
    r = invoke(["export", src, "--out", tmp_path / "m", "--report", report])
    assert r.exit_code == 0, r.output
    card = (tmp_path / "m" / "README.md").read_text()
    assert "`facediff evaluate` (run/evaluation/report.json)" in card
    assert str(report.parent.parent.parent) not in card  # no local paths in a published card
    bad = tmp_path / "bad.json"
    bad.write_text("{}")
    for path in (bad, tmp_path / "missing.json"):
        r = invoke(["export", run, "--out", tmp_path / "n", "--report", path])
        assert r.exit_code == 2
        assert error_lines(r) == [
            f"facediff: error: {path}: not found or not a `facediff evaluate` report.json"
        ]
    assert not (tmp_path / "n").exists()


def test_a_report_of_another_run_is_refused(evaluated, run, tmp_path):
    src, _ = evaluated
    report = src / "evaluation" / "report.json"
    r = invoke(["export", run, "--out", tmp_path / "m", "--report", report])
    assert r.exit_code == 2
    assert error_lines(r) == [
        f"facediff: error: --report {report} evaluates the run {src}, not {run}: the model "
        "card would show another model's numbers; evaluate this run, or export without --report"
    ]
    assert not (tmp_path / "m").exists()
    moved = tmp_path / "moved.json"  # its run is gone: taken as it is
    moved.write_text(json.dumps(json.loads(report.read_text()) | {"run": str(tmp_path / "x")}))
    assert export(run, tmp_path / "m", report=moved).report == moved


def test_model_card_colour_casts(evaluated, run, tmp_path):
    """The colour-cast section (issue 8's `colour`) and the sampling settings reach the card."""
    _, report = evaluated
    colour = {
        "coverage": 0.99,
        "real_cast_rate": 0.0125,
        "per_group": {"O": {"n": 4, "cast_rate": 0.25, "mean_rgb": [150.0, 120.0, 110.0]}},
    }
    path = tmp_path / "report.json"
    sampled = {"sampler": "ddim", "steps": 50, "guidance": 3.0, "mix_mode": "compose"}
    samples = {**report["samples"], "sample_config": sampled}
    noise = {"real_noise_rate": 0.01, "per_group": {"O": {"noise_rate": 0.5}}}
    before_noise = {k: v for k, v in report.items() if k != "noise"}
    card_report = {**before_noise, "run": str(run), "colour": colour, "samples": samples}
    path.write_text(json.dumps(card_report | {"noise": noise}))
    export(run, tmp_path / "m", report=path)
    card = (tmp_path / "m" / "README.md").read_text()
    assert "| group | samples | colour-cast rate | noise rate |" in card
    assert "| O | 4 | 0.250 | 0.500 |" in card and "| held-out photos |  | 0.013 | 0.010 |" in card
    path.write_text(json.dumps(card_report))  # a report from before the noise rate
    export(run, tmp_path / "m2", report=path)
    card = (tmp_path / "m2" / "README.md").read_text()
    assert "| O | 4 | 0.250 |\n" in card and "noise rate |" not in card
    assert "4 samples per group, ddim 50 steps, guidance 3.0, mix mode compose" in card
    shifted = {**colour, "real_shift": {"O": 0.31, "I": 0.2}}
    shifted["per_group"] = {"O": {**colour["per_group"]["O"], "shift": 1.284}}
    path.write_text(json.dumps(card_report | {"colour": shifted, "noise": noise}))
    export(run, tmp_path / "m3", report=path)  # a report with the colour shift
    card = (tmp_path / "m3" / "README.md").read_text()
    assert "| group | samples | colour-cast rate | colour shift | noise rate |" in card
    assert "| O | 4 | 0.250 | 1.28 | 0.500 |" in card
    assert "| held-out photos |  | 0.013 | ≤ 0.31 | 0.010 |" in card


def test_model_card_names_the_group_with_the_most_look_alike_samples(evaluated, run, tmp_path):
    _, report = evaluated
    memo = report["memorisation"]
    alike = {
        "I": {**memo["per_mix"]["I"], "look_alike_share": 0.04, "look_alike_n": 50},
        "E": {**memo["per_mix"]["E"], "look_alike_share": 0.25, "look_alike_n": 50},
    }
    path = tmp_path / "report.json"
    measured = memo | {"per_mix": alike, "look_alike_quantile": 0.01}
    path.write_text(json.dumps(report | {"run": str(run), "memorisation": measured}))
    export(run, tmp_path / "m", report=path)
    card = (tmp_path / "m" / "README.md").read_text()
    assert "closer than 99% of photos come to each other; photos about 0.01): at most " in card
    assert "at most 0.250, in E." in card
    old = {k: v for k, v in memo.items() if k != "look_alike_quantile"}  # before it existed
    old["per_mix"] = {k: {"n": v["n"], "median_nn_distance": 0.1} for k, v in alike.items()}
    path.write_text(json.dumps(report | {"run": str(run), "memorisation": old}))
    export(run, tmp_path / "m2", report=path)
    assert "Look-alike samples" not in (tmp_path / "m2" / "README.md").read_text()


def test_model_card_says_which_photos_realism_used(evaluated, run, tmp_path):
    """Photos the model never trained on (`evaluate --heldout`), or the judge's split of
    the training data; never their path."""
    _, report = evaluated
    held = {"path": str(tmp_path / "secret-held"), "fingerprint": "f", "images": 40, "dropped": 0}
    for name, data in (("judge", report["data"]), ("held", {**report["data"], "heldout": held})):
        path = tmp_path / f"{name}.json"
        path.write_text(json.dumps({**report, "run": str(run), "data": data}))
        export(run, tmp_path / name, report=path)
    judged = (tmp_path / "judge" / "README.md").read_text()
    assert "Realism against held-out photos (held out from the judge; the model trained" in judged
    card = (tmp_path / "held" / "README.md").read_text()
    assert "Realism against 40 photos the model never trained on (lower is better" in card
    assert "secret-held" not in card
    # the judge's FD comes with what it cannot see
    blind = "The judge's features see blur but barely grain: read their FD with the noise rate."
    assert blind in card and blind in judged
    only_inception = {**report["realism"]}
    del only_inception["judge"]
    path = tmp_path / "inception.json"
    path.write_text(json.dumps({**report, "run": str(run), "realism": only_inception}))
    export(run, tmp_path / "inception", report=path)
    assert blind not in (tmp_path / "inception" / "README.md").read_text()


def test_model_card_uses_the_report_of_the_exported_checkpoint(evaluated, tmp_path):
    src, _ = evaluated
    run = tmp_path / "run"
    shutil.copytree(src, run)  # with its cached judge; the fixture's run stays as it was
    evaluate(
        run,
        per_group=2,
        mixes=["O"],
        sample_config=SampleConfig(steps=2, batch_size=2),
        checkpoint_step=7,
        judge_config=JudgeConfig(width=8, epochs=2),
        inception=False,
        device="cpu",
    )
    result = export(run, tmp_path / "m", checkpoint_step=7)
    assert result.report == run / "evaluation-step-7" / "report.json"
    card = (tmp_path / "m" / "README.md").read_text()
    assert "on samples from this checkpoint (step 7)" in card
    assert f"2 samples per group, {SampleConfig().sampler} 2 steps" in card


def test_model_card_says_what_is_unknown(run, tmp_path):
    export(run, tmp_path / "m")
    card = (tmp_path / "m" / "README.md").read_text()
    assert "Training image counts are not known" in card
    assert "No `facediff evaluate` report was found" in card
    assert "| training time | not recorded |" in card


def test_a_damaged_report_stops_the_export_before_it_writes_anything(evaluated, run, tmp_path):
    src, _ = evaluated
    report = json.loads((src / "evaluation" / "report.json").read_text()) | {"run": str(run)}
    damages = {
        "judge": (lambda r: r.update(judge=5), "'int' object has no attribute 'get'"),
        "hit rate": (lambda r: r.update(hit_rate=5), "'int' object is not iterable"),
        "realism": (lambda r: r.update(realism=[1]), "'list' object has no attribute 'items'"),
    }
    for name, (damage, why) in damages.items():
        bad = json.loads(json.dumps(report))
        damage(bad)
        path = tmp_path / f"{name}.json"
        path.write_text(json.dumps(bad))
        r = invoke(["export", run, "--out", tmp_path / "n", "--report", path])
        assert r.exit_code == 2, r.output
        assert error_lines(r) == [
            f"facediff: error: {path}: a damaged `facediff evaluate` report.json ({why}); "
            "evaluate again, or pass another with --report"
        ]
        assert not (tmp_path / "n").exists()  # nothing half-written that --force must clear


def test_a_damaged_export_info_is_refused_in_one_line_by_every_reader(run, tmp_path):
    out = tmp_path / "export"
    assert invoke(["export", run, "--out", out]).exit_code == 0
    info = json.loads((out / "facediff.json").read_text())
    (out / "facediff.json").write_text(json.dumps({**info, "step": "x"}))
    why = "invalid literal for int() with base 10: 'x'"
    for args in (
        ["sample", out, "--out", tmp_path / "s", "-n", "1", "-c", "I"],
        ["grid", out, "--out", tmp_path / "g.png", "--seeds", "1", "-c", "I"],
    ):
        r = invoke([*args, "--steps", "2", "--device", "cpu"])
        assert r.exit_code == 1, r.output
        assert error_lines(r) == [f"facediff: error: cannot load exported model {out}: {why}"]
