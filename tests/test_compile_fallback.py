"""``--compile`` auto for training, and what happens when compiling itself fails (issue 13).

Compiling is never attempted on the CPU by default, so these tests stand a failing
compiler in for ``torch.compile`` (what a GPU without Triton, or an inductor bug, does):
the auto default must go on eagerly and give the very weights an eager run gives, an
explicit ``--compile`` must stop with one line.
"""

from __future__ import annotations

import functools
import warnings

import pytest
import torch
from safetensors.torch import load_file
from train_helpers import blocks_dataset, tiny
from typer.testing import CliRunner

from facediff import compile_cache as cc
from facediff.cli import app
from facediff.compile_cache import CompiledOrEager
from facediff.config import TrainConfig
from facediff.training import build_parts, train
from facediff.training import setup as training_setup
from facediff.training.loop import planned_images

CUDA, CPU = torch.device("cuda"), torch.device("cpu")  # device objects: no GPU needed


@pytest.fixture(autouse=True)
def _cache_home(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    monkeypatch.delenv("TORCHINDUCTOR_CACHE_DIR", raising=False)


class BrokenCompiler:
    """What ``torch.compile`` returns where the compiler cannot work: a callable that
    raises on its first use (torch.compile itself is lazy)."""

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, module, **kwargs):
        def compiled(*args, **kw):
            self.calls += 1
            raise RuntimeError("BackendCompilerFailed: triton not found\nmore detail")

        return compiled


def test_training_auto_compiles_on_cuda_only_for_runs_that_pay():
    def auto(images, warm, device=CUDA):
        return cc.should_compile(None, device, images=images, warm=warm, training=True)

    assert auto(cc.TRAIN_COLD_MIN_IMAGES, warm=False)
    assert not auto(cc.TRAIN_COLD_MIN_IMAGES - 1, warm=False)
    assert auto(cc.TRAIN_WARM_MIN_IMAGES, warm=True)
    assert not auto(cc.TRAIN_WARM_MIN_IMAGES - 1, warm=True)
    assert not auto(10**9, warm=True, device=CPU)
    # Sampling's thresholds are its own: a sampling job of 3,000 images compiles cold.
    assert cc.should_compile(None, CUDA, images=cc.COLD_MIN_IMAGES, warm=False)
    assert TrainConfig().compile is None  # auto is the default


def test_planned_images_count_the_session_the_budget_and_the_resume():
    cfg = TrainConfig(max_steps=100)
    assert planned_images(cfg, None, n=50, global_batch=8, time_budget_s=None) == 800
    resumed = {"step": 40, "images_seen": 320}
    assert planned_images(cfg, resumed, n=50, global_batch=8, time_budget_s=None) == 480
    epochs = TrainConfig(epochs=2)  # 100 images: 13 steps of 8
    assert planned_images(epochs, None, n=50, global_batch=8, time_budget_s=None) == 104
    budget = planned_images(cfg, None, n=50, global_batch=8, time_budget_s=0.5)
    assert budget == int(0.5 * cc.TRAIN_BUDGET_IMAGES_PER_S) < 800
    # A graphed update runs faster, so the same budget plans more images.
    graphed = planned_images(cfg, None, n=50, global_batch=8, time_budget_s=0.5, graphed=True)
    assert graphed == int(0.5 * cc.TRAIN_BUDGET_GRAPHED_IMAGES_PER_S) > budget
    done = {"step": 100, "images_seen": 800}
    assert planned_images(cfg, done, n=50, global_batch=8, time_budget_s=None) == 0


def test_cpu_training_stays_eager_by_default(tmp_path):
    from facediff.training.setup import make_setup

    data = blocks_dataset(tmp_path / "data", per_category=2)
    setup, _, _ = make_setup(data, tmp_path / "run", tiny(), None)
    parts = build_parts(setup, planned_images=10**9)
    assert parts.forward is parts.unet


def test_compiled_or_eager_falls_back_once_with_a_warning():
    eager = torch.nn.Linear(3, 2)
    broken = BrokenCompiler()
    net = cc.CompiledOrEager(broken(eager), eager, strict=False)
    x = torch.randn(4, 3)
    with pytest.warns(RuntimeWarning, match=r"torch.compile failed \(RuntimeError: Backend"):
        out = net(x)
    torch.testing.assert_close(out, eager(x), rtol=0, atol=0)
    assert net.fell_back and "triton not found" in net.fell_back
    net(x)
    assert broken.calls == 1  # never tried again
    assert not list(net.children())  # wraps, does not own: no duplicate parameters


def test_explicit_compile_that_fails_is_one_clear_error():
    eager = torch.nn.Linear(3, 2)
    net = cc.CompiledOrEager(BrokenCompiler()(eager), eager, strict=True)
    with pytest.raises(cc.CompileFailed) as e:
        net(torch.randn(4, 3))
    message = str(e.value)
    assert "\n" not in message and "--no-compile" in message and "triton not found" in message


def test_an_error_of_the_inputs_is_not_blamed_on_the_compiler():
    eager = torch.nn.Linear(3, 2)
    net = cc.CompiledOrEager(BrokenCompiler()(eager), eager, strict=True)
    with pytest.raises(RuntimeError, match="shapes cannot be multiplied"):
        net(torch.randn(4, 5))  # wrong width: eager fails too
    assert net.fell_back is None


def test_a_working_compiled_model_is_used_and_trusted():
    calls = []
    eager = torch.nn.Linear(3, 2)

    def compiled(x):
        calls.append(x)
        return eager(x) * 0  # tell the two apart

    net = cc.CompiledOrEager(compiled, eager, strict=False)
    x = torch.randn(2, 3)
    assert torch.equal(net(x), torch.zeros(2, 2)) and net.proven
    assert torch.equal(net(x), torch.zeros(2, 2)) and len(calls) == 2


def test_a_compiler_failing_on_a_new_shape_falls_back_too():
    """Each new input shape compiles anew: a failure there is the compiler's as well."""
    eager = torch.nn.Linear(3, 2)

    def compiled(x):
        if x.shape[0] == 3:
            raise RuntimeError("InductorError: recompiling for size 3 failed")
        return eager(x)

    net = cc.CompiledOrEager(compiled, eager, strict=False)
    net(torch.randn(2, 3))
    x = torch.randn(3, 3)
    with pytest.warns(RuntimeWarning, match="recompiling for size 3 failed"):
        torch.testing.assert_close(net(x), eager(x), rtol=0, atol=0)
    strict = cc.CompiledOrEager(compiled, eager, strict=True)
    strict(torch.randn(2, 3))
    with pytest.raises(cc.CompileFailed, match="--no-compile"):
        strict(x)


def _weights(result):
    return load_file(str(result.checkpoint / "model.safetensors"))


def test_auto_training_with_a_broken_compiler_trains_exactly_as_eager(tmp_path, monkeypatch):
    data = blocks_dataset(tmp_path / "data", per_category=4)
    eager = train(data, tmp_path / "eager", tiny(compile=False))
    broken = BrokenCompiler()
    monkeypatch.setattr(torch, "compile", broken)
    # Auto decides to compile (as on a GPU for a long run); compiling then fails.
    monkeypatch.setattr(training_setup, "should_compile", lambda *a, **k: True)
    with pytest.warns(RuntimeWarning, match="going on without compiling"):
        auto = train(data, tmp_path / "auto", tiny())
    assert broken.calls == 1 and auto.step == eager.step
    a, b = _weights(auto), _weights(eager)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_train_compile_with_a_broken_compiler_is_a_one_line_error(tmp_path, monkeypatch):
    data = blocks_dataset(tmp_path / "data", per_category=4)
    monkeypatch.setattr(torch, "compile", BrokenCompiler())
    args = ["train", str(data), "--out", str(tmp_path / "run"), "--preset", "tiny"]
    args += ["--max-steps", "2", "--batch-size", "8", "--device", "cpu", "--compile"]
    result = CliRunner().invoke(app, [*args, "--preview-every", "0"])
    errors = [x for x in result.output.splitlines() if x.startswith("facediff: error:")]
    assert result.exit_code == 1 and "Traceback" not in result.output, result.output
    assert len(errors) == 1 and "torch.compile failed" in errors[0] and "--no-compile" in errors[0]


def test_sampling_falls_back_to_the_same_images_or_stops_when_asked(tmp_path, monkeypatch):
    from sampling_helpers import make_run

    from facediff import generation
    from facediff.generation import generate, prepare_denoiser
    from facediff.loading import load_for_inference
    from facediff.mix import parse_mix

    loaded = load_for_inference(make_run(tmp_path / "run"))
    mix, seeds = parse_mix("E", loaded.categories), [0, 1]
    eager = generate(loaded, mix, seeds, steps=3, device="cpu", compile=False)
    monkeypatch.setattr(torch, "compile", BrokenCompiler())
    monkeypatch.setattr(generation, "should_compile", lambda *a, **k: True)  # auto says yes
    den = prepare_denoiser(loaded, device="cpu", compile=None, images=2)
    with pytest.warns(RuntimeWarning, match="going on without compiling"):
        auto = generate(den, mix, seeds, steps=3)
    assert torch.equal(auto, eager)
    asked = prepare_denoiser(loaded, device="cpu", compile=True, images=2)
    with pytest.raises(cc.CompileFailed, match="--no-compile"):
        generate(asked, mix, seeds, steps=3)


@functools.lru_cache
def _always() -> bool:
    return True


class _Doubles(torch.nn.Module):
    """Asks an ``lru_cache``-wrapped constant, as diffusers' ``Upsample2D`` does in bf16."""

    def forward(self, x):
        return x * 2 if _always() else x


class _Triples(torch.nn.Module):
    """The same from another line: Dynamo warns once per call site."""

    def forward(self, x):
        return x * 3 if _always() else x


@pytest.mark.slow
def test_compiling_does_not_show_dynamos_lru_cache_warning():
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        torch.compile(_Triples())(torch.ones(3))
    assert any("lru_cache" in str(w.message) for w in seen)  # Dynamo warns on its own

    model = _Doubles()
    wrapped = CompiledOrEager(torch.compile(model), model, strict=True)
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        out = wrapped(torch.ones(3))
    assert not [str(w.message) for w in seen if "lru_cache" in str(w.message)]
    assert torch.equal(out, torch.full((3,), 2.0)) and wrapped.proven == {((3,),)}
