"""`facediff export`: a diffusers folder that loads with diffusers alone."""

from __future__ import annotations

import json

import pytest
import torch
from diffusers import DDPMScheduler, UNet2DModel
from sampling_helpers import error_lines, invoke, make_run

from facediff.checkpoint import load_for_inference
from facediff.config import SampleConfig
from facediff.errors import FacediffError
from facediff.exporting import export
from facediff.mix import parse_mix
from facediff.samples import sample
from facediff.sampling import generate


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

    unet = UNet2DModel.from_pretrained(out / "unet").eval()
    sched = DDPMScheduler.from_pretrained(out / "scheduler")
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
