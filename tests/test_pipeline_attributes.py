"""Export and FaceDiffPipeline of a model trained with attributes."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from diffusers import DiffusionPipeline
from PIL import Image
from pipeline_helpers import SEEDS
from pipeline_helpers import gens as _gens
from pipeline_helpers import pixels as _pixels
from pipeline_helpers import quiet as _quiet
from sampling_helpers import TINY_ATTRIBUTES, invoke, make_attribute_run, make_run

from facediff.guidance import SummedEmbedding
from facediff.loading import load_for_inference
from facediff.pipeline import FaceDiffPipeline


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("pipe")
    run = make_attribute_run(root / "run")
    out = root / "utk-model"
    assert invoke(["export", run, "--out", out]).exit_code == 0
    return run, out


def test_export_records_and_reloads_the_attributes(folders):
    run, out = folders
    info = json.loads((out / "facediff.json").read_text())
    assert info["attributes"] == TINY_ATTRIBUTES.to_list()
    index = json.loads((out / "model_index.json").read_text())
    assert index["attributes"] == TINY_ATTRIBUTES.to_list()
    assert (out / "attributes.py").is_file()
    card = (out / "README.md").read_text()
    assert "## Attributes" in card and "| age | 0-19, 20-39, 40+ |" in card
    assert '`attributes={"gender": "female", "age": "40+"}`' in card
    assert "`--gender female --age 40+`" in card
    loaded = load_for_inference(out)
    assert loaded.attributes == TINY_ATTRIBUTES
    assert isinstance(loaded.unet.class_embedding, SummedEmbedding)
    # The export samples what the run samples.
    args = ["-c", "I", "--gender", "female", "--age", "50", "-n", "2", "--device", "cpu"]
    for source, name in ((run, "from_run"), (out, "from_export")):
        r = invoke(["sample", source, *args, "--steps", "3", "--out", out.parent / name])
        assert r.exit_code == 0, r.output
    for s in (0, 1):
        a, b = (
            np.array(Image.open(out.parent / d / "I_female_40+" / f"I_female_40+_{s}.png"))
            for d in ("from_run", "from_export")
        )
        assert np.array_equal(a, b)


@pytest.mark.parametrize(
    ("kwargs", "cli"),
    [
        ({"category": "I", "attributes": {"gender": "female", "age": "50"}},
         ["-c", "I", "--gender", "female", "--age", "50"]),
        ({"mix": "OI", "attributes": {"gender": "m"}, "attribute_guidance": {"gender": 4.0}},
         ["--mix", "OI", "--gender", "m", "--attribute-guidance", "gender=4"]),
        ({"category": "E"}, ["-c", "E"]),
    ],
)  # fmt: skip
def test_diffusers_alone_matches_facediff_sample(folders, modules_cache, tmp_path, kwargs, cli):
    _, folder = folders
    pipe = _quiet(
        DiffusionPipeline.from_pretrained(
            folder, custom_pipeline=str(folder / "pipeline.py"), trust_remote_code=True
        )
    )
    assert not type(pipe).__module__.startswith("facediff")  # the copy, not the package
    assert type(pipe.unet.class_embedding).__name__ == "SummedEmbedding"
    samples = tmp_path / "samples"
    args = ["sample", folder, *cli, "-n", "3", "--seed", "5", "--out", samples, "--device", "cpu"]
    r = invoke(args)
    assert r.exit_code == 0, r.output
    (label,) = [p.name for p in samples.iterdir() if p.is_dir()]
    out = pipe(**kwargs, generator=_gens())
    want = _pixels([Image.open(samples / label / f"{label}_{s}.png") for s in SEEDS])
    diff = (_pixels(out.images).int() - want.int()).abs().max()
    assert diff <= 2, f"{label}: {diff}/255"


def test_pipeline_attributes_change_the_image_and_refusals(folders):
    _, folder = folders
    pipe = _quiet(FaceDiffPipeline.from_pretrained(folder))
    assert pipe.attributes == TINY_ATTRIBUTES
    kw = dict(category="O", num_inference_steps=3, output_type="pt")
    female = pipe(**kw, attributes={"gender": "female"}, generator=_gens()).images
    male = pipe(**kw, attributes={"gender": "male"}, generator=_gens()).images
    free = pipe(**kw, generator=_gens()).images
    assert not torch.equal(female, male) and not torch.equal(female, free)
    assert torch.equal(free, pipe(**kw, attributes={"age": None}, generator=_gens()).images)
    for bad, match in (
        ({"attributes": {"age": "200"}}, "unknown age '200'"),
        ({"attributes": {"hair": "red"}}, "no attribute 'hair'"),
        ({"attribute_guidance": {"gender": 2.0}}, "does not request a gender"),
        ({"attributes": {"gender": "f"}, "attribute_guidance": {"gender": -1.0}}, "finite"),
    ):
        with pytest.raises(ValueError, match=match):
            pipe(**kw, generator=_gens(), **bad)


def test_pipeline_of_a_model_without_attributes_refuses_them(tmp_path):
    run = make_run(tmp_path / "run")
    out = tmp_path / "plain-model"
    assert invoke(["export", run, "--out", out]).exit_code == 0
    assert json.loads((out / "facediff.json").read_text())["attributes"] == []
    assert "## Attributes" not in (out / "README.md").read_text()
    pipe = _quiet(FaceDiffPipeline.from_pretrained(out))
    assert not pipe.attributes
    assert type(pipe.unet.class_embedding).__name__ == "Embedding"
    with pytest.raises(ValueError, match="trained without attributes"):
        pipe(category="O", attributes={"gender": "female"}, num_inference_steps=2)
