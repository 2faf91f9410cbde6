"""Attribute hit rates on samples whose truth is known: cells that show what they were
asked for score high, a cell that ignores its request scores its free rate and is the
worst cell, and free attributes are set against the data's mix."""

import io
import json

import pytest
import torch
from evaluate_helpers import attribute_faces, make_untrained_run, mark_attributes, write_samples
from PIL import Image
from rich.console import Console
from train_helpers import write_dataset
from typer.testing import CliRunner

from facediff.attributes import AttributeSet, age_attribute, gender_attribute
from facediff.categories import DEFAULT_CATEGORIES
from facediff.cli import app
from facediff.cli.evaluate_cmd import print_tables
from facediff.dataset import load_prepared
from facediff.errors import FacediffError
from facediff.evaluation import charts, evaluate
from facediff.evaluation.attribute_scores import attribute_section, free_mixes
from facediff.evaluation.inputs import CellGroup, Group, cell_requests, check_attributes
from facediff.evaluation.judge import load_or_train_judge
from facediff.evaluation.judge_training import JudgeConfig
from facediff.evaluation.markdown import render_markdown
from facediff.mix import Mix

CPU = torch.device("cpu")
JUDGE = JudgeConfig(width=8, epochs=8)
ATTRS = AttributeSet((age_attribute((30, 60)), gender_attribute()))
N = 24


def test_cell_requests():
    assert cell_requests(ATTRS, "each") == [
        {"age": "0-29"}, {"age": "30-59"}, {"age": "60+"},
        {"gender": "male"}, {"gender": "female"},
    ]  # fmt: skip
    joint = cell_requests(ATTRS, "joint")
    assert len(joint) == 6 and joint[0] == {"age": "0-29", "gender": "male"}
    assert joint[-1] == {"age": "60+", "gender": "female"}
    with pytest.raises(ValueError, match="each, joint"):
        cell_requests(ATTRS, "both")


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    root = tmp_path_factory.mktemp("attr-eval")
    images, labels, values = attribute_faces(40, seed=0)
    values[::5, 1] = -1  # some genders unknown
    write_dataset(root / "data", images, labels, attributes=ATTRS, attribute_labels=values)
    data = load_prepared(root / "data")
    run = make_untrained_run(root / "run", root / "data")
    judge = load_or_train_judge(run, data, JUDGE, device=CPU)  # cached for evaluate below
    return root, data, run, judge


def _category(k, seed):
    """N fresh faces of category k with every age and gender equally often (drawn
    uniformly, as the data's are)."""
    images, labels, _ = attribute_faces(N, seed=seed)
    g = torch.Generator().manual_seed(seed)
    values = torch.stack([torch.arange(N) % 3, torch.arange(N) % 2], dim=1)
    values = values[torch.randperm(N, generator=g)]
    return mark_attributes(images[labels == k], values[:, 0], values[:, 1]), values


def _scored_cells_and_free(judge):
    free, cells = [], []
    for k, c in enumerate(DEFAULT_CATEGORIES):
        images, values = _category(k, seed=7 + k)
        free.append(Group(Mix(c.code, (k,), (1.0,)), images))
        female = mark_attributes(images, values[:, 0], torch.ones(N, dtype=torch.long))
        cells.append(CellGroup(k, {"gender": "female"}, female))
        old = mark_attributes(images, torch.full((N,), 2), values[:, 1])
        cells.append(CellGroup(k, {"age": "60+"}, old))
    # A model that ignores the request: category O asked for "male", drawn as if free.
    cells.append(CellGroup(1, {"gender": "male"}, free[1].images.clone()))
    for g in [*free, *cells]:
        g.probs, _, g.attributes = judge.run_all(g.images)
    return cells, free


def _section(data, judge, cells, free):
    held = judge.heldout_indices
    real = (judge.run_all(data.images[held])[2], data.labels[held])
    return attribute_section(
        cells,
        free,
        attributes=ATTRS,
        categories=data.categories,
        judge=judge,
        attribute_labels=data.attribute_labels,
        labels=data.labels,
        real=real,
        mode="each",
        per_cell=N,
    )


def test_hit_rates_free_rates_and_the_worst_cell(env):
    _, data, _, judge = env
    cells, free = _scored_cells_and_free(judge)
    section = _section(data, judge, cells, free)
    by = {(c.category, *c.requested.items()): c for c in section.cells}
    for code in ("I", "O", "E"):
        female = by[(code, ("gender", "female"))]
        assert female.n == N and female.hit_rate > 0.9, female
        hit = female.per_attribute["gender"]
        assert hit.value == "female" and hit.hits == female.hits
        assert hit.free_rate is not None and hit.free_rate < 0.8  # free faces are mixed
        assert hit.judge_accuracy is not None and hit.judge_accuracy > 0.7
        assert female.ci95[0] < female.hit_rate <= female.ci95[1] + 1e-9
        assert by[(code, ("age", "60+"))].hit_rate > 0.9
        assert female.category_hit_rate > 0.7
    ignored = by[("O", ("gender", "male"))]
    # Ignoring the request scores what the free samples score: no better than chance.
    assert ignored.hit_rate == pytest.approx(ignored.per_attribute["gender"].free_rate)
    assert ignored.hit_rate < 0.8
    assert section.worst_cell is ignored
    # Free samples drawn like the data have the data's mix (within sampling noise).
    assert len(section.free) == 3 * 2
    for f in section.free:
        assert set(f.samples) == set(f.data) == set(f.judged_real)
        assert sum(f.data.values()) == pytest.approx(1.0)
        assert f.tvd < 0.35, f


def test_free_mix_far_from_the_data_is_flagged(env):
    _, data, _, judge = env
    images, values = _category(0, seed=3)
    all_female = mark_attributes(images, values[:, 0], torch.ones(N, dtype=torch.long))
    group = Group(Mix("I", (0,), (1.0,)), all_female)
    group.probs, _, group.attributes = judge.run_all(all_female)
    [age, gender] = _section(data, judge, [], [group]).free
    assert gender.attribute == "gender" and gender.samples["female"] > 0.9
    known = data.attribute_labels[(data.labels == 0) & (data.attribute_labels[:, 1] >= 0), 1]
    assert gender.data["female"] == pytest.approx(float(known.float().mean()), abs=1e-6)
    assert gender.tvd > 0.3
    assert age.tvd < gender.tvd


def test_report_json_markdown_and_cli_show_attributes(env, tmp_path):
    root, data, run, judge = env
    cells, free = _scored_cells_and_free(judge)
    samples = write_samples(
        tmp_path / "samples", {g.mix.label: ({g.mix.label: 1.0}, g.images) for g in free}
    )
    result = evaluate(
        run,
        data=root / "data",
        samples=samples,
        per_group=N,
        judge_config=JUDGE,
        device="cpu",
        inception=False,
        out=tmp_path / "out",
    )
    assert not result.judge_trained
    report = result.summary
    # The judge's own attribute accuracy is reported beside its category accuracy.
    rep = result.report
    acc = rep["judge"]["attribute_accuracy"]
    assert set(acc) == {"age", "gender"} and acc["gender"]["overall"] > 0.8
    assert "attributes" not in rep  # samples read from a folder: no attribute cells
    report.attributes = _section(data, judge, cells, free)
    d = json.loads(json.dumps(report.to_dict()))
    assert d["attributes"]["worst_cell"]["requested"] == {"gender": "male"}
    assert d["attributes"]["cells"][0]["per_attribute"]["gender"]["value"] == "female"
    md = render_markdown(report)
    assert "## 7. Attributes" in md and "Worst cell: **O gender male**" in md
    assert "Attribute heads" in md and "| gender | female |" in md
    charts.attribute_hit_rates(report, tmp_path / "attribute_hit_rate.png")
    with Image.open(tmp_path / "attribute_hit_rate.png") as chart:
        assert chart.height > len(report.attributes.cells) * charts.ROW_H
    console = Console(file=io.StringIO(), width=200)
    print_tables(report, console)
    text = console.file.getvalue()
    assert "Judge held-out attribute accuracy" in text
    assert "worst attribute cell: O gender male" in text
    assert "Attributes left free" in text


def test_a_run_whose_attributes_differ_from_the_data_is_refused():
    check_attributes(AttributeSet(), ATTRS)  # a model without attributes: categories only
    check_attributes(ATTRS, ATTRS)
    other = AttributeSet((age_attribute((20, 40)), gender_attribute()))
    with pytest.raises(FacediffError, match=r"differ from the data's .*--data"):
        check_attributes(other, ATTRS)
    with pytest.raises(FacediffError, match=r"\[none\]"):
        check_attributes(ATTRS, AttributeSet())


@pytest.mark.parametrize(
    ("args", "match"),
    [(["--attribute-n", "-1"], "--attribute-n"), (["--attribute-cells", "both"], "each")],
)
def test_cli_refuses_bad_attribute_options(tmp_path, args, match):
    result = CliRunner().invoke(app, ["evaluate", str(tmp_path), *args])
    out = result.output  # typer's runner mixes stderr into output
    if "facediff: error:" not in out:
        out += getattr(result, "stderr", "") or ""
    assert result.exit_code != 0 and "Traceback" not in out
    errors = [line for line in out.splitlines() if line.startswith("facediff: error:")]
    assert len(errors) == 1 and match in errors[0], out


def test_free_mix_of_a_category_without_known_labels_has_no_distance(env):
    _, data, _, judge = env
    images, _ = _category(2, seed=4)
    group = Group(Mix("E", (2,), (1.0,)), images)
    group.probs, _, group.attributes = judge.run_all(images)
    unknown = data.attribute_labels.clone()
    unknown[data.labels == 2, 1] = -1  # no gender known for E
    held = judge.heldout_indices
    [age, gender] = free_mixes(
        [group],
        ATTRS,
        data.categories,
        unknown,
        data.labels,
        (judge.run_all(data.images[held])[2], data.labels[held]),
    )
    assert gender.known == 0 and gender.tvd is None
    assert age.known == int((data.labels == 2).sum()) and age.tvd is not None
