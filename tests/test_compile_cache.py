"""The persistent compile cache and the ``--compile`` auto policy (issue 13)."""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from sampling_helpers import TINY, make_run

from facediff import compile_cache as cc
from facediff.config import SampleConfig
from facediff.deep_cache import DeepCacheUNet
from facediff.generation import generate, prepare_denoiser
from facediff.loading import load_for_inference
from facediff.mix import parse_mix
from facediff.model import build_unet

ROOT = Path(__file__).resolve().parents[1]
CUDA = torch.device("cuda")  # a device object: no GPU needed to build one
CPU = torch.device("cpu")


@pytest.fixture(autouse=True)
def _cache_home(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    monkeypatch.delenv("TORCHINDUCTOR_CACHE_DIR", raising=False)  # compiling tests set it


def test_policy_explicit_setting_is_obeyed_everywhere():
    for dev in (CPU, CUDA):
        assert cc.should_compile(True, dev, images=1, warm=False)
        assert not cc.should_compile(False, dev, images=10**6, warm=True)


def test_policy_auto_never_compiles_on_the_cpu():
    assert not cc.should_compile(None, CPU, images=10**7, warm=True)


def test_policy_auto_on_cuda_needs_a_big_job_or_a_warm_cache():
    big, warm_enough = cc.COLD_MIN_IMAGES, cc.WARM_MIN_IMAGES
    assert warm_enough < big
    assert cc.should_compile(None, CUDA, images=big, warm=False)
    assert not cc.should_compile(None, CUDA, images=big - 1, warm=False)
    assert cc.should_compile(None, CUDA, images=warm_enough, warm=True)
    assert not cc.should_compile(None, CUDA, images=warm_enough - 1, warm=True)


def test_policy_auto_pays_for_one_compilation_per_shape():
    big, warm_enough = cc.COLD_MIN_IMAGES, cc.WARM_MIN_IMAGES
    assert not cc.should_compile(None, CUDA, images=3 * big - 1, warm=False, shapes=3)
    assert cc.should_compile(None, CUDA, images=3 * big, warm=False, shapes=3)
    assert not cc.should_compile(None, CUDA, images=3 * warm_enough - 1, warm=True, shapes=3)
    assert cc.should_compile(None, CUDA, images=3 * warm_enough, warm=True, shapes=3)
    assert cc.should_compile(True, CUDA, images=1, warm=False, shapes=5)  # asked: obeyed


class _Spy(torch.nn.Module):
    """The UNet, recording the batch size of every call."""

    def __init__(self, module: torch.nn.Module) -> None:
        super().__init__()
        self.module, self.sizes = module, set()

    def forward(self, sample, *args, **kwargs):
        self.sizes.add(sample.shape[0])
        return self.module(sample, *args, **kwargs)


@pytest.mark.parametrize("interval", [None, (0.28, 5.42)])
def test_forward_batches_are_the_shapes_a_compiled_model_sees(tmp_path, interval):
    from facediff.generation import forward_batches, generate_each
    from facediff.mix import resolve_mixes

    loaded = load_for_inference(make_run(tmp_path / "run"))
    mixes = resolve_mixes(loaded.categories)  # I, O, E, OI, OE, IE, OIE
    config = SampleConfig(n=3, batch_size=2, steps=4, guidance_interval=interval, device="cpu")
    shapes = forward_batches([(m, None, config.n) for m in mixes], config, 3)
    # 2 images per batch (the last one padded) × 2, 3 or 4 conditions; the steps outside
    # the interval evaluate the category rows alone: 1, 2 or 3.
    assert shapes == ((4, 6, 8) if interval is None else (2, 4, 6, 8))
    den = prepare_denoiser(loaded, device="cpu", compile=True, images=21, shapes=shapes)
    assert (
        den.compiled
        and den.cache.key == cc.compile_cache(TINY.to_dict(), CPU, torch.float32, shapes).key
    )
    # compiling on the CPU takes minutes: spy on the UNet the default samples with, split
    # for the deep cache, and on the plain one (--deep-cache 1)
    den._deep_net = spy = _Spy(DeepCacheUNet(den.module))
    for _ in generate_each(den, mixes, [0, 1, 2], config):
        pass
    assert tuple(sorted(spy.sizes)) == shapes
    den.net = exact = _Spy(den.module)
    for _ in generate_each(den, mixes, [0, 1, 2], dataclasses.replace(config, deep_cache=1)):
        pass
    assert tuple(sorted(exact.sizes)) == shapes


def test_sampling_every_mix_weighs_each_shape_it_compiles(tmp_path, monkeypatch):
    from facediff import generation
    from facediff.sample_folder import sample

    asked = []

    def policy(setting, device, **kw):
        asked.append(kw)
        return False

    monkeypatch.setattr(generation, "should_compile", policy)
    run = make_run(tmp_path / "run")
    config = SampleConfig(n=2, steps=2, device="cpu")
    # With the deep cache (the default) each shape compiles two graphs: the whole pass and
    # the shallow one.
    sample(run, tmp_path / "all", config)  # I, O, E, OI, OE, IE, OIE
    sample(run, tmp_path / "one", config, categories=["E"])
    assert [(a["images"], a["shapes"]) for a in asked] == [(14, 6), (2, 2)]
    mix = parse_mix("OI", load_for_inference(run).categories)
    generate(load_for_inference(run), mix, [0, 1, 2], steps=2, device="cpu")
    assert (asked[-1]["images"], asked[-1]["shapes"]) == (3, 2)
    exact = dataclasses.replace(config, deep_cache=1)  # the whole UNet at every step
    sample(run, tmp_path / "exact", exact, categories=["E"])
    assert (asked[-1]["images"], asked[-1]["shapes"]) == (2, 1)


def test_a_grid_weighs_every_batch_size_it_calls_the_unet_with(tmp_path, monkeypatch):
    """The rows and the strip's one-image cells (2 or 3 label rows each) all count."""
    from facediff import generation, grids

    asked, spies = [], []

    def policy(setting, device, **kw):
        asked.append(kw)
        return False

    def prepare_and_spy(*args, **kwargs):
        den = prepare_for(*args, **kwargs)
        den._deep_net = spy = _Spy(DeepCacheUNet(den.module))
        spies.append(spy)
        return den

    prepare_for = grids.prepare_for
    monkeypatch.setattr(generation, "should_compile", policy)
    monkeypatch.setattr(grids, "prepare_for", prepare_and_spy)
    run = make_run(tmp_path / "run")
    config = SampleConfig(steps=2, batch_size=2, device="cpu")
    rows, _ = grids.rows_from_run(
        run, config, seeds=2, categories=["E"], mixes=["OIE"], strip=("O", "I"), strip_steps=3
    )
    strip = len(rows[-1][1])
    assert [len(cells) for _, cells in rows] == [2, 2, strip] and strip >= 3
    # E and OIE in batches of 2 (2 and 4 conditions); the strip's O and I cells alone (2)
    # and its O:I mixes (3)
    assert spies[0].sizes == {4, 8, 2, 3}
    # with the deep cache each batch size compiles two graphs
    assert asked == [{"images": 4 + strip, "warm": False, "shapes": 2 * 4}]


def test_the_deep_cache_compiles_under_a_cache_of_its_own(tmp_path):
    loaded = load_for_inference(make_run(tmp_path / "run"))
    kw = dict(device="cpu", compile=True, images=4, batch_size=2)
    plain = prepare_denoiser(loaded, **kw)
    deep = prepare_denoiser(loaded, **kw, deep_cache=2)
    assert plain.cache.key == cc.compile_cache(TINY.to_dict(), CPU, torch.float32, 2).key
    assert deep.cache.key != plain.cache.key  # a warm plain cache says nothing of its graphs
    assert deep.cache.key == prepare_denoiser(loaded, **kw, deep_cache=3).cache.key


def test_cache_lives_under_xdg_keyed_by_torch_device_and_shape(tmp_path):
    a = cc.compile_cache(TINY.to_dict(), CPU, torch.float32, 8)
    assert a.folder.is_relative_to(tmp_path / "xdg" / "facediff" / "compile")
    assert torch.__version__.split("+")[0] in str(a.folder)
    assert a.folder.name.startswith("cpu-")
    other = [
        cc.compile_cache(TINY.to_dict(), CPU, torch.bfloat16, 8),
        cc.compile_cache(TINY.to_dict(), CPU, torch.float32, 16),
        cc.compile_cache({**TINY.to_dict(), "sample_size": 32}, CPU, torch.float32, 8),
        cc.compile_cache(TINY.to_dict(), CPU, torch.float32, 8, mode="reduce-overhead"),
    ]
    assert len({a.key, *(o.key for o in other)}) == 5
    assert cc.compile_cache(TINY.to_dict(), CPU, torch.float32, 8).key == a.key
    assert not a.warm and not a.folder.exists()  # nothing is written until a save


@pytest.mark.parametrize("content", [b"not a cache artifact", b"", b"\x00" * 64])
def test_corrupt_artifact_is_ignored_with_a_warning_and_removed(content):
    cache = cc.compile_cache(TINY.to_dict(), CPU, torch.float32, 4)
    cache.folder.mkdir(parents=True)
    cache.artifact.write_bytes(content)
    assert cache.warm
    assert cache.load() is False
    assert len(cache.warnings) == 1 and cache.warnings[0].startswith("warning: ignored")
    assert str(cache.artifact) in cache.warnings[0]
    assert not cache.artifact.exists()


def test_compiled_denoiser_with_a_corrupt_cache_warns_and_still_samples(tmp_path):
    loaded = load_for_inference(make_run(tmp_path / "run"))
    cache = cc.compile_cache(loaded.model_config.to_dict(), CPU, torch.float32, 2)
    cache.folder.mkdir(parents=True)
    cache.artifact.write_bytes(b"garbage")
    den = prepare_denoiser(loaded, device="cpu", compile=True, images=2, batch_size=2)
    assert den.compiled and den.warnings and "ignored the compile cache" in den.warnings[0]
    assert not cache.artifact.exists()
    # torch.compile is lazy: sampling through the plain module shows the denoiser works
    # (compiling the UNet on the CPU takes minutes; the slow test below compiles).
    den.net = den.module
    mix = parse_mix("O", loaded.categories)
    assert generate(den, mix, [0, 1], steps=2).shape == (2, 3, 16, 16)


def test_default_cpu_sampling_is_eager_even_with_a_warm_cache(tmp_path):
    assert SampleConfig().compile is None  # auto
    loaded = load_for_inference(make_run(tmp_path / "run"))
    cache = cc.compile_cache(loaded.model_config.to_dict(), CPU, torch.float32, 64)
    cache.folder.mkdir(parents=True)
    cache.artifact.write_bytes(b"anything")
    den = prepare_denoiser(loaded, device="cpu", compile=None, images=10**6)
    assert not den.compiled and den.net is den.module and den.cache is None
    assert not den.warnings and cache.artifact.exists()  # not even read


def test_load_to_device_and_dtype_gives_the_same_weights_and_images(tmp_path):
    run = make_run(tmp_path / "run")
    plain = load_for_inference(run)
    bf16 = load_for_inference(run, device=CPU, dtype=torch.bfloat16)
    assert {p.dtype for p in bf16.unet.parameters()} == {torch.bfloat16}
    assert not any(t.is_meta for t in (*plain.unet.parameters(), *plain.unet.buffers()))
    for (name, a), (_, b) in zip(plain.unet.state_dict().items(), bf16.unet.state_dict().items()):
        assert torch.equal(a.to(torch.bfloat16), b), name
    # The meta-device build changes nothing: same weights as building and loading.
    torch.manual_seed(123)
    reference = build_unet(TINY)
    reference.load_state_dict(plain.unet.state_dict())
    for a, b in zip(reference.state_dict().values(), plain.unet.state_dict().values()):
        assert torch.equal(a, b)
    mix = parse_mix("I", plain.categories)
    assert torch.equal(
        generate(plain, mix, [3, 4], steps=3, device="cpu"),
        generate(load_for_inference(run), mix, [3, 4], steps=3, device="cpu"),
    )


_CHILD = """
import json, torch
from torch._dynamo.utils import counters
from facediff.compile_cache import compile_cache
cache = compile_cache({"test": "tiny"}, torch.device("cpu"), torch.float32, 2)
cache.activate()
loaded = cache.load()
net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3, padding=1), torch.nn.SiLU())
with torch.inference_mode():
    torch.compile(net, dynamic=False)(torch.randn(2, 3, 8, 8))
print(json.dumps({"loaded": loaded, "saved": cache.save(), "warnings": cache.warnings,
                  "folder": str(cache.folder), "hit": counters["inductor"]["fxgraph_cache_hit"],
                  "miss": counters["inductor"]["fxgraph_cache_miss"]}))
"""


def _child(tmp_path: Path) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TORCHINDUCTOR_", "TRITON_"))}
    env.update(XDG_CACHE_HOME=str(tmp_path / "xdg"), PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1")
    proc = subprocess.run(
        [sys.executable, "-c", _CHILD], capture_output=True, text=True, env=env, timeout=600
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("c++") is None, reason="inductor on the CPU needs a C++ compiler")
def test_a_second_process_reuses_the_compiled_kernels(tmp_path):
    cold = _child(tmp_path)
    assert cold["miss"] >= 1 and cold["hit"] == 0 and cold["saved"] and not cold["loaded"]
    folder = Path(cold["folder"])
    assert (folder / "inductor").is_dir()  # inductor's cache went to facediff's folder
    warm = _child(tmp_path)
    assert warm["loaded"] and warm["hit"] >= 1 and warm["miss"] == 0 and not warm["warnings"]
    # The portable artifact alone is enough: without inductor's folder it still hits.
    shutil.rmtree(folder / "inductor")
    again = _child(tmp_path)
    assert again["loaded"] and again["hit"] >= 1 and again["miss"] == 0


def test_train_compile_uses_the_same_cache_and_survives_a_corrupt_artifact(monkeypatch, tmp_path):
    import atexit
    from types import SimpleNamespace

    from facediff.config import TrainConfig
    from facediff.training import setup as training_setup

    setup = SimpleNamespace(
        config=TrainConfig(preset="tiny", batch_size=8, compile=True),
        model_config=TINY,
        device=CPU,
        dtype=torch.float32,
    )
    cache = cc.compile_cache(TINY.to_dict(), CPU, torch.float32, 8, "train")
    cache.folder.mkdir(parents=True)
    cache.artifact.write_bytes(b"corrupt")
    saved = []
    monkeypatch.setattr(atexit, "register", saved.append)
    with pytest.warns(RuntimeWarning, match="ignored the compile cache"):
        training_setup._use_compile_cache(training_setup._compile_cache(setup))
    assert not cache.artifact.exists()
    assert Path(os.environ["TORCHINDUCTOR_CACHE_DIR"]) == cache.folder / "inductor"
    ours = [f for f in saved if getattr(f, "__self__", None).__class__ is cc.CompileCache]
    assert len(ours) == 1 and ours[0].__self__.artifact == cache.artifact  # saved at exit


def test_cuda_graphs_are_gpu_only(tmp_path):
    loaded = load_for_inference(make_run(tmp_path / "run"))
    den = prepare_denoiser(loaded, device="cpu", compile=True, cuda_graphs=True, images=4)
    assert den.compiled and not den.cuda_graphs
    assert den.cache.key == cc.compile_cache(TINY.to_dict(), CPU, torch.float32, 4).key
    eager = prepare_denoiser(loaded, device="cpu", compile=False, cuda_graphs=True)
    assert not eager.cuda_graphs and eager.net is eager.module
