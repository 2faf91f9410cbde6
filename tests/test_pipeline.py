"""FaceDiffPipeline: an exported folder used the way diffusers users use a pipeline."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import diffusers
import numpy as np
import pytest
import torch
from diffusers import (
    DDIMScheduler,
    DDPMScheduler,
    DiffusionPipeline,
    EulerDiscreteScheduler,
    ImagePipelineOutput,
    UNet2DModel,
)
from PIL import Image
from pipeline_helpers import SEEDS
from pipeline_helpers import gens as _gens
from pipeline_helpers import pixels as _pixels
from pipeline_helpers import quiet as _quiet
from sampling_helpers import invoke, make_run

from facediff.config import SampleConfig
from facediff.exporting import build_pipeline
from facediff.generation import generate, make_scheduler
from facediff.loading import load_for_inference
from facediff.mix import parse_mix
from facediff.pipeline import FaceDiffPipeline


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    root = tmp_path_factory.mktemp("pipe")
    run = make_run(root / "run", steps=(10,))
    out = root / "faces-model"
    assert invoke(["export", run, "--out", out]).exit_code == 0
    return out


def test_diffusers_alone_loads_it_and_matches_facediff_sample(folder, modules_cache, tmp_path):
    """The folder's own pipeline.py (no facediff import) against the `facediff sample` CLI."""
    pipe = _quiet(
        DiffusionPipeline.from_pretrained(
            folder, custom_pipeline=str(folder / "pipeline.py"), trust_remote_code=True
        )
    )
    assert type(pipe).__name__ == "FaceDiffPipeline"
    assert not type(pipe).__module__.startswith("facediff")  # the copy, not the package
    assert isinstance(pipe.unet, UNet2DModel)
    samples = tmp_path / "samples"
    r = invoke(
        [
            "sample",
            folder,
            "-c",
            "O",
            "--mix",
            "OIE",
            "-n",
            "3",
            "--seed",
            "5",
            "--out",
            samples,
            "--device",
            "cpu",
        ]
    )
    assert r.exit_code == 0, r.output
    for kwargs, label in (({"category": "O"}, "O"), ({"mix": "OIE"}, "OIE")):
        out = pipe(**kwargs, generator=_gens())
        assert isinstance(out, ImagePipelineOutput) and len(out.images) == 3
        cli = _pixels([Image.open(samples / label / f"{label}_{s}.png") for s in SEEDS])
        diff = (_pixels(out.images).int() - cli.int()).abs().max()
        assert diff <= 2, f"{label}: {diff}/255"
        assert not torch.equal(cli[0], cli[1])


def test_facediff_pipeline_arguments(folder):
    pipe = _quiet(FaceDiffPipeline.from_pretrained(folder))
    assert isinstance(pipe.scheduler, type(make_scheduler(SampleConfig().sampler, {})))
    loaded = load_for_inference(folder)
    kw = dict(steps=4, guidance=2.0, device="cpu")
    call = dict(num_inference_steps=4, guidance_scale=2.0)
    for mode in ("compose", "blend"):
        mix = parse_mix("O:0.7,I:0.3", loaded.categories)
        want = generate(loaded, mix, [1, 2], mix_mode=mode, **kw)
        for mix in ("O:0.7,I:0.3", {"Oriental": 0.7, "I": 0.3}, {"O": 7, "I": 3}):
            got = pipe(mix=mix, mix_mode=mode, generator=_gens([1, 2]), **call).images
            assert (_pixels(got).int() - want.int()).abs().max() <= 2, (mode, mix)
    # names, codes, indices and lists name the same categories
    by_name = pipe(category="oriental", generator=_gens([3]), output_type="pt", **call).images
    by_index = pipe(category=1, generator=_gens([3]), output_type="pt", **call).images
    assert torch.equal(by_name, by_index)
    listed = pipe(mix=["O", "Indian", "E"], generator=_gens([3]), output_type="np", **call)
    spec = pipe(mix="OIE", generator=_gens([3]), output_type="np", **call)
    assert np.array_equal(listed.images, spec.images)
    # output types: np N×H×W×3 and pt N×3×H×W floats in [0, 1], tuples on request
    assert spec.images.shape == (1, 16, 16, 3) and spec.images.dtype == np.float32
    assert by_name.shape == (1, 3, 16, 16) and by_name.min() >= 0 and by_name.max() <= 1
    (images,) = pipe(category="E", batch_size=2, return_dict=False, **call)
    assert len(images) == 2 and images[0].size == (16, 16)
    # one generator for the whole batch is diffusers' convention: reproducible too
    one = pipe(category="E", batch_size=2, generator=torch.Generator().manual_seed(0), **call)
    two = pipe(category="E", batch_size=2, generator=torch.Generator().manual_seed(0), **call)
    assert torch.equal(_pixels(one.images), _pixels(two.images))


def test_guidance_interval_matches_generate_and_defaults_from_the_config(folder):
    pipe = _quiet(FaceDiffPipeline.from_pretrained(folder))
    loaded = load_for_inference(folder)
    mix = parse_mix("OI", loaded.categories)
    interval = (0.28, 5.42)
    want = generate(loaded, mix, SEEDS, steps=8, guidance_interval=interval, device="cpu")

    def run(p, **kw):  # fresh per-image generators for every call
        return _pixels(p(mix="OI", num_inference_steps=8, generator=_gens(), **kw).images)

    got = run(pipe, guidance_interval=interval)
    assert (got.int() - want.int()).abs().max() <= 2
    assert (run(pipe).int() - want.int()).abs().max() > 2  # the interval changed the faces
    # A pipeline whose sample defaults carry an interval uses it when the call leaves it out.
    with_default = _quiet(build_pipeline(loaded, SampleConfig(guidance_interval=interval)))
    assert with_default.config.sample_defaults["guidance_interval"] == list(interval)
    assert torch.equal(run(with_default), got)
    with pytest.raises(ValueError, match="guidance_interval needs 0 <= LO < HI"):
        run(pipe, guidance_interval=(2.0, 1.0))


def test_logsnr_spacing_matches_generate_and_defaults_from_the_config(folder):
    pipe = _quiet(FaceDiffPipeline.from_pretrained(folder))
    loaded = load_for_inference(folder)
    mix = parse_mix("OI", loaded.categories)
    want = generate(loaded, mix, SEEDS, steps=8, spacing="logsnr", device="cpu")

    def run(p, **kw):  # fresh per-image generators for every call
        return _pixels(p(mix="OI", num_inference_steps=8, generator=_gens(), **kw).images)

    got = run(pipe, spacing="logsnr")
    assert (got.int() - want.int()).abs().max() <= 2
    assert (run(pipe).int() - want.int()).abs().max() > 2  # the spacing changed the faces
    assert "spacing" not in (pipe.config.sample_defaults or {})  # time, as before
    with_default = _quiet(build_pipeline(loaded, SampleConfig(spacing="logsnr")))
    assert with_default.config.sample_defaults["spacing"] == "logsnr"
    assert torch.equal(run(with_default), got)
    with pytest.raises(ValueError, match="spacing must be one of time, logsnr"):
        run(pipe, spacing="karras")


def test_deep_cache_matches_generate_with_diffusers_alone_and_defaults_from_the_config(
    folder, modules_cache
):
    loaded = load_for_inference(folder)
    mix = parse_mix("OI", loaded.categories)
    want = generate(loaded, mix, SEEDS, steps=8, deep_cache=3, device="cpu")
    alone = _quiet(
        DiffusionPipeline.from_pretrained(
            folder, custom_pipeline=str(folder / "pipeline.py"), trust_remote_code=True
        )
    )

    def run(p, **kw):  # fresh per-image generators for every call
        return _pixels(p(mix="OI", num_inference_steps=8, generator=_gens(), **kw).images)

    got = run(alone, deep_cache=3)
    assert (got.int() - want.int()).abs().max() <= 2
    exact = run(alone, deep_cache=1)
    assert (exact.int() - want.int()).abs().max() > 2  # the cache changed the faces
    assert alone.config.sample_defaults["deep_cache"] == 3  # the export names the default
    assert torch.equal(run(alone), got)
    # An export without it (as before the deep cache) samples the exact model.
    older = _quiet(build_pipeline(loaded, SampleConfig(deep_cache=1)))
    assert "deep_cache" not in older.config.sample_defaults
    assert torch.equal(run(older), exact)
    with pytest.raises(ValueError, match="deep_cache must be a whole number >= 1"):
        run(alone, deep_cache=0)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({}, "exactly one of category= or mix="),
        ({"category": "O", "mix": "OI"}, "exactly one"),
        ({"category": "X"}, "unknown category 'X'; valid: I (Indian)"),
        ({"category": 3}, "outside 0..2"),
        ({"mix": "OX"}, "unknown category 'X' in mix 'OX'"),
        ({"mix": "O:0.5,I:-1"}, "weights must be positive"),
        ({"category": "O", "mix_mode": "average"}, "unknown mix_mode"),
        ({"category": "O", "output_type": "latent"}, "output_type"),
        ({"category": "O", "num_inference_steps": 0}, "at least 1"),
        ({"category": "O", "batch_size": 3, "generator": [torch.Generator()]}, "does not match"),
        ({"category": True}, "category must be a code, a name or an index; got True"),
        ({"mix": {"O": "a"}}, "mix= weight of 'O' must be a number; got 'a'"),
        ({"category": "O", "num_inference_steps": 1.5}, "num_inference_steps must be a whole"),
        ({"category": "O", "batch_size": 2.5}, "batch_size must be a whole number; got 2.5"),
        ({"category": "O", "num_inference_steps": float("inf")}, "must be a whole number; got inf"),
        ({"category": "O", "generator": 5}, "generator must be a torch.Generator or a list"),
        ({"category": "O", "num_inference_steps": 1001}, "must be at most 1000 with this"),
    ],
)
def test_bad_arguments(folder, kwargs, match):
    pipe = FaceDiffPipeline.from_pretrained(folder)
    with pytest.raises(ValueError, match=re.escape(match)):
        pipe(**kwargs)


def test_numpy_and_torch_counts_are_taken(folder):
    pipe = _quiet(FaceDiffPipeline.from_pretrained(folder))
    out = pipe(category="O", num_inference_steps=np.int64(2), batch_size=torch.tensor(2))
    assert len(out.images) == 2


def test_the_step_limit_follows_the_scheduler(folder):
    pipe = _quiet(FaceDiffPipeline.from_pretrained(folder))
    pipe.scheduler = DDIMScheduler.from_config(pipe.scheduler.config, steps_offset=1)
    with pytest.raises(ValueError, match="at most 999 with this scheduler"):
        pipe(category="O", num_inference_steps=1000)


def test_scheduler_swap(folder):
    pipe = _quiet(FaceDiffPipeline.from_pretrained(folder))
    default = _pixels(pipe(mix="OI", num_inference_steps=8, generator=_gens()).images)
    for cls in (DDIMScheduler, EulerDiscreteScheduler):
        pipe.scheduler = cls.from_config(pipe.scheduler.config)
        out = pipe(mix="OI", num_inference_steps=8, generator=_gens(), output_type="pt").images
        assert torch.isfinite(out).all() and out.shape == (3, 3, 16, 16)
        assert not torch.equal((out * 255).round().to(torch.uint8), default)


def test_stochastic_scheduler_draws_each_images_noise_from_its_generator(folder):
    pipe = _quiet(FaceDiffPipeline.from_pretrained(folder))
    pipe.scheduler = DDPMScheduler.from_config(pipe.scheduler.config)
    call = dict(mix="OIE", num_inference_steps=6, output_type="pt")
    three = pipe(generator=_gens([5, 6, 7]), **call).images
    alone = pipe(generator=_gens([6]), **call).images
    assert torch.allclose(three[1], alone[0], atol=1e-5)  # its own step noise, not the batch's
    assert not torch.allclose(three[0], three[1])


def test_a_plain_loop_with_the_exported_scheduler_stays_in_range(folder):
    """The issue's hand-written diffusers loop: exported UNet + scheduler, no facediff.

    It equals facediff's unguided sampling for the same seeds, so the scheduler in the
    folder carries facediff's exact settings (the old export's DDPM config went to ±80).
    """
    unet = UNet2DModel.from_pretrained(folder / "unet").eval()
    config = json.loads((folder / "scheduler" / "scheduler_config.json").read_text())
    scheduler = getattr(diffusers, config["_class_name"]).from_pretrained(folder / "scheduler")
    scheduler.set_timesteps(25)
    x = torch.stack([torch.randn(3, 16, 16, generator=g) for g in _gens()])
    labels = torch.full((3,), 1)
    with torch.inference_mode():
        for t in scheduler.timesteps:
            eps = unet(x, t, class_labels=labels).sample
            x = scheduler.step(eps, t, x).prev_sample
    assert x.abs().max() <= 1.0 + 1e-4
    loaded = load_for_inference(folder)
    mix = parse_mix("O", loaded.categories)  # the whole UNet at every step, as the loop runs
    want = generate(loaded, mix, SEEDS, guidance=1.0, deep_cache=1, device="cpu")
    got = ((x.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    assert (got.int() - want.int()).abs().max() <= 2


BLOCKED_FACEDIFF = """
import sys
sys.modules["facediff"] = None  # any `import facediff` now fails: diffusers alone
import numpy as np, torch
from diffusers import DiffusionPipeline
folder = sys.argv[1]
pipe = DiffusionPipeline.from_pretrained(
    folder, custom_pipeline=folder + "/pipeline.py", trust_remote_code=True
)
pipe.set_progress_bar_config(disable=True)
gens = [torch.Generator().manual_seed(s) for s in (5, 6)]
images = pipe(mix="O:0.7,I:0.3", num_inference_steps=3, generator=gens, output_type="np").images
np.save(sys.argv[2], images)
"""


def test_loads_in_a_process_without_facediff(folder, tmp_path):
    env = {**os.environ, "HF_MODULES_CACHE": str(tmp_path / "hf"), "PYTHONPATH": ""}
    script = tmp_path / "alone.py"
    script.write_text(BLOCKED_FACEDIFF)
    done = subprocess.run(
        [sys.executable, str(script), str(folder), str(tmp_path / "x.npy")],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    pipe = _quiet(FaceDiffPipeline.from_pretrained(folder))
    want = pipe(mix="O:0.7,I:0.3", num_inference_steps=3, generator=_gens([5, 6]), output_type="np")
    np.testing.assert_allclose(np.load(tmp_path / "x.npy"), want.images, atol=2 / 255)
