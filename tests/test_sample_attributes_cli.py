"""`facediff sample --gender/--age/--attribute-guidance`: folders, record, errors."""

from __future__ import annotations

import json

import pytest
import torch
from sampling_helpers import error_lines, invoke, make_attribute_run, make_run

from facediff.categories import DEFAULT_CATEGORIES
from facediff.config import SampleConfig
from facediff.errors import ConfigError
from facediff.generation import generate
from facediff.imaging import load_png_rgb
from facediff.loading import load_for_inference
from facediff.mix import parse_mix
from facediff.sample_folder import recorded_labels, recorded_mixes, sample

FAST = ["--steps", "2", "--device", "cpu"]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    return make_attribute_run(tmp_path_factory.mktemp("a") / "run")


@pytest.fixture(scope="module")
def plain_run(tmp_path_factory):
    return make_run(tmp_path_factory.mktemp("p") / "run")


def _pixels(path) -> torch.Tensor:
    import numpy as np

    return torch.from_numpy(np.array(load_png_rgb(path, 10**6))).permute(2, 0, 1)


def test_attribute_folders_record_and_images(run, tmp_path):
    out = tmp_path / "out"
    r = invoke(["sample", run, "-c", "I", "--gender", "female", "--age", "50", "-n", "2",
                "--out", out, *FAST])  # fmt: skip
    assert r.exit_code == 0, r.output
    assert "I_female_40+" in r.output
    res = sample(run, tmp_path / "api", SampleConfig(n=1, steps=2, device="cpu"),
                 categories=["O"], attributes={"age": "7"})  # fmt: skip
    assert list(res.files) == ["O_0-19"] and res.attributes == {"age": "0-19"}
    # A second request into the same folder: its own label, nothing overwritten.
    r = invoke(["sample", run, "-c", "I", "--mix", "OI", "--gender", "m", "-n", "2",
                "--attribute-guidance", "gender=4", "--out", out, *FAST])  # fmt: skip
    assert r.exit_code == 0, r.output
    r = invoke(["sample", run, "-c", "I", "-n", "2", "--out", out, "--json", *FAST])
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["attributes"] == {}
    labels = ["I_female_40+", "I_male", "OI_male", "I"]
    assert sorted(p.name for p in out.iterdir() if p.is_dir()) == sorted(labels)
    assert sorted(p.name for p in (out / "I_female_40+").iterdir()) == [
        "I_female_40+_0.png",
        "I_female_40+_1.png",
    ]
    entries = json.loads((out / "samples.json").read_text())["entries"]
    assert [e["attributes"] for e in entries] == [
        {"gender": "female", "age": "40+"},
        {"gender": "male"},
        {},
    ]
    assert [list(e["mixes"]) for e in entries] == [["I_female_40+"], ["I_male", "OI_male"], ["I"]]
    assert entries[1]["attribute_guidance"] == {"gender": 4.0}
    assert "attribute_guidance" not in entries[0]
    # The record reads back (grid ordering, evaluate --samples): each label is its mix.
    assert recorded_labels(out) == labels
    mixes = recorded_mixes(out, DEFAULT_CATEGORIES)
    assert mixes["I_female_40+"].indices == (0,) and mixes["OI_male"].indices == (1, 0)
    # The images are generate()'s with the same request; the request changes them.
    loaded = load_for_inference(run)
    kw = dict(steps=2, device="cpu")
    want = generate(loaded, parse_mix("I", DEFAULT_CATEGORIES), [0, 1],
                    attributes={"gender": "female", "age": "40+"}, **kw)  # fmt: skip
    got = torch.stack([_pixels(out / "I_female_40+" / f"I_female_40+_{s}.png") for s in (0, 1)])
    assert torch.equal(got, want)
    free = torch.stack([_pixels(out / "I" / f"I_{s}.png") for s in (0, 1)])
    male = torch.stack([_pixels(out / "I_male" / f"I_male_{s}.png") for s in (0, 1)])
    assert not torch.equal(got, free) and not torch.equal(male, free)


def test_same_request_refuses_to_overwrite(run, tmp_path):
    args = ["sample", run, "-c", "E", "--age", "0-19", "-n", "1", "--out", tmp_path, *FAST]
    assert invoke(args).exit_code == 0
    r = invoke(args)
    assert r.exit_code == 1
    png = tmp_path / "E_0-19" / "E_0-19_0.png"
    assert error_lines(r) == [f"facediff: error: {png} already exists; use --force to overwrite"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--age", "200-209"], "--age: unknown age '200-209'; choose from 0-19, 20-39, 40+"),
        (["--gender", "x"], "--gender: unknown gender 'x'; choose from male, female"),
        (["--attribute-guidance", "gender"], "'gender' is not NAME=SCALE (e.g. gender=5)"),
        (["--attribute-guidance", "gender=big"], "'gender=big' is not NAME=SCALE"),
        (
            ["--attribute-guidance", "gender=5"],
            "--attribute-guidance: gender has its own scale but --gender is not requested",
        ),
        (
            ["--gender", "f", "--attribute-guidance", "gender=inf"],
            "--attribute-guidance: gender=inf must be a finite number >= 0",
        ),
        (
            ["--attribute-guidance", "hair=2"],
            "--attribute-guidance: this model has no attribute 'hair' (it has: gender, age)",
        ),
    ],
)
def test_bad_attribute_options_are_one_line(run, tmp_path, args, message):
    r = invoke(["sample", run, "-c", "I", "--out", tmp_path / "o", *FAST, *args])
    assert r.exit_code == 2
    lines = error_lines(r)
    assert len(lines) == 1 and message in lines[0], r.output
    assert not (tmp_path / "o").exists()


def test_model_without_attributes_refuses(plain_run, tmp_path):
    r = invoke(["sample", plain_run, "-c", "I", "--gender", "female", "--out", tmp_path, *FAST])
    assert r.exit_code == 2
    assert error_lines(r) == [
        "facediff: error: --gender: this model was trained without attributes ('gender')"
    ]
    with pytest.raises(ConfigError, match="age: this model was trained without attributes"):
        sample(plain_run, tmp_path, SampleConfig(n=1), attributes={"age": "63"})
