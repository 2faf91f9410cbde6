"""`facediff grid --rows age|gender` and attribute requests in grids."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from sampling_helpers import error_lines, invoke, make_attribute_run, make_run

from facediff.categories import DEFAULT_CATEGORIES
from facediff.config import DEFAULT_STRIP_STEPS, SampleConfig
from facediff.generation import generate
from facediff.grids import compose_grid, rows_from_run, rows_from_samples
from facediff.loading import load_for_inference
from facediff.mix import parse_mix

FAST = ["--steps", "2", "--device", "cpu"]
CONFIG = SampleConfig(steps=2, device="cpu")


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    return make_attribute_run(tmp_path_factory.mktemp("g") / "run")


def _pixels(images: list[Image.Image]) -> torch.Tensor:
    return torch.from_numpy(np.stack([np.array(im) for im in images])).permute(0, 3, 1, 2)


def test_rows_by_age_are_generate_per_bucket(run):
    rows, columns = rows_from_run(run, CONFIG, seeds=2, categories=["I"], rows_by="age",
                                  attributes={"gender": "female"})  # fmt: skip
    assert [label for label, _ in rows] == ["I_female_0-19", "I_female_20-39", "I_female_40+"]
    assert columns == ["seed 0", "seed 1"]
    loaded = load_for_inference(run)
    mix = parse_mix("I", DEFAULT_CATEGORIES)
    for (_, images), age in zip(rows, ["0-19", "20-39", "40+"]):
        want = generate(loaded, mix, [0, 1], CONFIG, attributes={"gender": "female", "age": age})
        assert torch.equal(_pixels(images), want)
    assert not torch.equal(_pixels(rows[0][1]), _pixels(rows[2][1]))


def test_rows_by_gender_for_categories_and_mixes(run):
    rows, _ = rows_from_run(run, CONFIG, seeds=1, categories=["E"], mixes=["OI"],
                            rows_by="gender", attributes={"age": "25"},
                            attribute_guidance={"gender": 3.0})  # fmt: skip
    assert [label for label, _ in rows] == [
        "E_male_20-39",
        "E_female_20-39",
        "OI_male_20-39",
        "OI_female_20-39",
    ]
    # Nothing named: every category, one row per gender, no default strip.
    rows, _ = rows_from_run(run, CONFIG, seeds=1, rows_by="gender")
    assert [label for label, _ in rows] == [
        f"{c}_{g}" for c in ("I", "O", "E") for g in ("male", "female")
    ]


def test_grid_cli_rows_and_from_samples(run, tmp_path):
    out = tmp_path / "age.png"
    r = invoke(["grid", run, "-c", "I", "--rows", "age", "--seeds", "2", "--out", out, *FAST])
    assert r.exit_code == 0, r.output
    assert "3 rows x 2 columns" in r.output
    tiles = [Image.new("RGB", (16, 16))] * 2
    labels = ["I_0-19", "I_20-39", "I_40+"]
    with Image.open(out) as im:
        assert (
            im.size == compose_grid([(lb, tiles) for lb in labels], column_labels=["seed 0"]).size
        )
    # The strip keeps the requested attributes; the default strip stays without --rows.
    r = invoke(["grid", run, "-c", "O", "--gender", "f", "--seeds", "1",
                "--out", tmp_path / "g.png", *FAST])  # fmt: skip
    assert r.exit_code == 0, r.output
    assert f"2 rows x {DEFAULT_STRIP_STEPS} columns" in r.output  # O_female, the O->I strip
    rows, _ = rows_from_run(run, CONFIG, seeds=0, mixes=[], strip=("O", "I"), strip_steps=2,
                            attributes={"gender": "f"})  # fmt: skip
    assert rows[0][0] == "O->I_female (seed 0)"
    # A sample folder with attribute labels reads back as rows, in the order sampled.
    samples = tmp_path / "samples"
    for extra in (["--gender", "female", "--age", "63"], [], ["--gender", "male"]):
        args = ["sample", run, "-c", "I", "-n", "2", "--out", samples, *extra, *FAST]
        assert invoke(args).exit_code == 0
    rows, columns = rows_from_samples(samples, seeds=2)
    assert [label for label, _ in rows] == ["I_female_40+", "I", "I_male"]
    assert columns == ["seed 0", "seed 1"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--rows", "age", "--age", "5"], "--rows age and --age both set"),
        (["--rows", "hair"], "--rows: this model has no attribute 'hair' (it has: gender, age)"),
        (["--rows", "age", "--gender", "x"], "--gender: unknown gender 'x'"),
        (["--rows", "age", "--attribute-guidance", "age=-2"], "age=-2.0 must be a finite"),
        (
            ["--rows", "age", "--from-samples", "."],
            "--rows needs a model; it cannot be used with --from-samples",
        ),
    ],
)
def test_bad_rows_are_one_line(run, tmp_path, args, message):
    out = tmp_path / "g.png"
    r = invoke(["grid", run, "-c", "I", "--out", out, *FAST, *args])
    assert r.exit_code == 2
    lines = error_lines(r)
    assert len(lines) == 1 and message in lines[0], r.output
    assert not out.exists()


def test_model_without_attributes_refuses_rows(tmp_path):
    plain = make_run(tmp_path / "plain")
    r = invoke(["grid", plain, "--rows", "gender", *FAST])
    assert error_lines(r) == ["facediff: error: --rows: this model was trained without attributes"]
    r = invoke(["grid", plain, "--age", "40", *FAST])
    assert error_lines(r) == [
        "facediff: error: --age: this model was trained without attributes ('age')"
    ]
