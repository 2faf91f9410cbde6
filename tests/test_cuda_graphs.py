"""``--cuda-graphs`` (facediff.cuda_graphs): the training update, and the sampling forward
per shape, captured once and replayed.

CI has no GPU, so :class:`ReplayGraph` and :class:`ReplayForward` stand in for CUDA graphs
the way they behave: capturing records the work without training, and every replay runs
the recorded work again on the same static input tensors, writing the same output tensor,
with the gradients overwritten rather than accumulated.
"""

from __future__ import annotations

import dataclasses
import json
import types
from typing import ClassVar

import pytest
import torch
from safetensors.torch import load_file
from train_helpers import blocks_dataset, tiny
from typer.testing import CliRunner

from facediff import cuda_graphs as graphs
from facediff.checkpoint import load_training_state
from facediff.cli import app
from facediff.training import train


class ReplayGraph:
    def __init__(self, optimizer: torch.optim.Optimizer) -> None:
        self.optimizer, self.replays = optimizer, 0

    def _tensors(self) -> list[torch.Tensor]:
        params = [p for g in self.optimizer.param_groups for p in g["params"]]
        state = [v for s in self.optimizer.state.values() for v in s.values()]
        return [t for t in params + state if isinstance(t, torch.Tensor)]

    def capture(self, fn):
        before = [t.detach().clone() for t in self._tensors()]
        self.fn, self.out = fn, fn()  # run once to record, then undo what it trained
        with torch.no_grad():
            for t, b in zip(self._tensors(), before, strict=True):
                t.copy_(b)
        return self.out

    def replay(self) -> None:
        for g in self.optimizer.param_groups:
            for p in g["params"]:
                p.grad.zero_()
        self.out.copy_(self.fn())
        self.replays += 1


@pytest.fixture
def fake_gpu_graphs(monkeypatch):
    """Make ``cuda_graphs=True`` apply on the CPU, with :class:`ReplayGraph` graphs."""
    made: list[graphs.GraphedUpdate] = []
    real = graphs.GraphedUpdate

    def graphed(update, optimizer, device, **kw):
        made.append(real(update, optimizer, device, new_graph=lambda: ReplayGraph(optimizer)))
        return made[-1]

    monkeypatch.setattr(graphs, "unsupported", lambda *a: None)
    monkeypatch.setattr(graphs, "GraphedUpdate", graphed)
    return made


def _weights(result) -> dict[str, torch.Tensor]:
    return load_file(str(result.checkpoint / "model.safetensors"))


def _losses(run) -> list[float]:
    lines = (run / "metrics.jsonl").read_text().splitlines()
    return [json.loads(line)["loss"] for line in lines]


def _assert_close(a: dict, b: dict) -> None:
    """The same weights, up to rounding. An attention key bias is left out: softmax ignores
    it (q·(k + b) shifts every key's score for a query alike), so its gradient is zero but
    for rounding, and AdamW scales that rounding noise up to steps of the learning rate's
    size, whose signs depend on the order of the CPU threads' sums."""
    assert a.keys() == b.keys()
    for k in a:
        if not k.endswith("to_k.bias"):
            torch.testing.assert_close(a[k], b[k], rtol=1e-5, atol=1e-6, msg=k)


def test_replayed_update_trains_like_the_eager_step(tmp_path, fake_gpu_graphs):
    data = blocks_dataset(tmp_path / "data", per_category=4)
    # The LR warms up over all 8 steps: a learning rate frozen at capture would show.
    cfg = tiny(max_steps=8, lr_warmup_steps=8, log_every=1, cond_drop=0.3)
    eager = train(data, tmp_path / "eager", cfg, cuda_graphs=False)
    graphed = train(data, tmp_path / "graphed", cfg, cuda_graphs=True)
    (update,) = fake_gpu_graphs
    assert update.eager_steps == graphs.WARMUP_STEPS and update.failed is None
    assert update.graph.replays == 8 - graphs.WARMUP_STEPS
    _assert_close(_weights(eager), _weights(graphed))
    assert _losses(tmp_path / "graphed") == pytest.approx(_losses(tmp_path / "eager"), rel=1e-5)
    assert len(set(_losses(tmp_path / "graphed"))) == 8  # each replay saw its own batch


def test_the_update_is_graphed_by_default_where_it_applies(tmp_path, fake_gpu_graphs):
    """No flag: a run where CUDA graphs apply replays its update (and trains what eager
    trains); ``--no-cuda-graphs`` (False) keeps it eager."""
    data = blocks_dataset(tmp_path / "data", per_category=4)
    cfg = tiny(max_steps=5, lr_warmup_steps=2)
    assert cfg.cuda_graphs is None  # auto is the default
    auto = train(data, tmp_path / "auto", cfg)
    (update,) = fake_gpu_graphs
    assert update.graph.replays == 5 - graphs.WARMUP_STEPS
    off = train(data, tmp_path / "off", cfg, cuda_graphs=False)
    assert len(fake_gpu_graphs) == 1  # no second GraphedUpdate
    _assert_close(_weights(auto), _weights(off))


def test_the_default_policy():
    """:func:`wanted`: an explicit setting is obeyed where graphs apply; auto turns them on
    wherever they apply, except for a compiled sampling model; nothing applies without a
    GPU (``why_not``)."""
    assert graphs.wanted(None, None) and graphs.wanted(True, None)
    assert not graphs.wanted(False, None)
    assert not graphs.wanted(None, None, compiled=True)  # compiled sampling: as it was
    assert graphs.wanted(True, None, compiled=True)  # reduce-overhead, as asked
    for setting in (None, True, False):
        assert not graphs.wanted(setting, "CUDA graphs need a GPU")


def test_a_graphed_run_resumes_eagerly(tmp_path, fake_gpu_graphs):
    data = blocks_dataset(tmp_path / "data", per_category=4)
    cfg = tiny(max_steps=5, lr_warmup_steps=2)
    first = train(data, tmp_path / "run", cfg, cuda_graphs=True)
    groups = load_training_state(first.checkpoint)["optimizer"]["param_groups"]
    assert all(type(g["lr"]) is float and not g["capturable"] for g in groups)
    straight = train(
        data, tmp_path / "straight", tiny(max_steps=7, lr_warmup_steps=2), cuda_graphs=False
    )
    resumed = train(data, tmp_path / "run", max_steps=7, cuda_graphs=False)
    assert resumed.step == 7
    _assert_close(_weights(straight), _weights(resumed))


def test_a_failed_capture_warns_and_trains_on_eagerly(tmp_path, monkeypatch):
    class Broken:
        def capture(self, fn):
            raise RuntimeError("operation not permitted when stream is capturing\nmore")

    real = graphs.GraphedUpdate
    monkeypatch.setattr(graphs, "unsupported", lambda *a: None)
    monkeypatch.setattr(
        graphs, "GraphedUpdate", lambda u, o, d, **kw: real(u, o, d, new_graph=Broken)
    )
    data = blocks_dataset(tmp_path / "data", per_category=4)
    cfg = tiny(max_steps=6, lr_warmup_steps=4)
    eager = train(data, tmp_path / "eager", cfg, cuda_graphs=False)
    with pytest.warns(RuntimeWarning, match="capturing the training step failed .operation not"):
        broken = train(data, tmp_path / "broken", cfg, cuda_graphs=True)
    assert broken.step == 6
    _assert_close(_weights(eager), _weights(broken))


def test_where_cuda_graphs_do_not_apply():
    cuda = torch.device("cuda")
    assert graphs.unsupported(cuda, torch.bfloat16, False) is None
    assert graphs.unsupported(cuda, torch.float32, False) is None
    assert "GPU" in graphs.unsupported(torch.device("cpu"), torch.float32, False)
    assert "fp16" in graphs.unsupported(cuda, torch.float16, False)
    assert "single-GPU" in graphs.unsupported(cuda, torch.bfloat16, True)


def test_cli_on_the_cpu_says_it_trains_without_them(tmp_path):
    data = blocks_dataset(tmp_path / "data", per_category=4)
    args = ["train", str(data), "--out", str(tmp_path / "run"), "--preset", "tiny"]
    args += ["--max-steps", "2", "--batch-size", "4", "--device", "cpu", "--preview-every", "0"]
    result = CliRunner().invoke(app, [*args, "--cuda-graphs"])
    assert result.exit_code == 0, result.output
    assert "CUDA graphs need a GPU: training without --cuda-graphs" in result.output
    saved = json.loads((tmp_path / "run" / "config.json").read_text())
    assert saved["train"]["cuda_graphs"] is True
    # The default (auto) says nothing on the CPU and records auto; the flag's off side works.
    for flags, recorded in (([], None), (["--no-cuda-graphs"], False)):
        out = tmp_path / f"run-{recorded}"
        result = CliRunner().invoke(app, [*args[:3], str(out), *args[4:], *flags])
        assert result.exit_code == 0, result.output
        assert "CUDA graph" not in result.output
        saved = json.loads((out / "config.json").read_text())
        assert saved["train"]["cuda_graphs"] is recorded


@pytest.mark.parametrize(("name", "attribute_sizes"), [("base", ()), ("tiny", (2, 3))])
def test_the_update_never_reads_a_value_back_to_the_host(name, attribute_sizes):
    """A CUDA graph cannot capture a host sync (``.item()``, ``if loss > x:``…). Fake
    tensors hold no data, so any such read in the update raises here: the preset's forward
    (attribute embeddings too), the loss, backward, clipping, and fused AdamW with the
    tensor learning rate a graphed run gives it."""
    from torch._subclasses.fake_tensor import FakeTensorMode

    from facediff.config import TrainConfig, preset
    from facediff.model import build_unet
    from facediff.training.state import Parts
    from facediff.training.step import update

    model = preset(name, sample_size=64, num_categories=3)
    model = dataclasses.replace(model, attribute_sizes=attribute_sizes)
    setup = types.SimpleNamespace(
        device=torch.device("cpu"), dtype=torch.bfloat16, config=TrainConfig()
    )
    n = 8
    with FakeTensorMode():
        unet = build_unet(model)
        optimizer = torch.optim.AdamW(unet.parameters(), lr=1e-4, fused=True)
        for group in optimizer.param_groups:
            group["lr"] = torch.tensor(1e-4)
        scaler = torch.amp.GradScaler("cpu", enabled=False)
        parts = Parts(unet, unet, optimizer, scaler, None, None, None)
        x_t = torch.randn(n, 3, 64, 64).contiguous(memory_format=torch.channels_last)
        labels = torch.zeros(n, 1 + len(attribute_sizes), dtype=torch.long)
        labels = labels if attribute_sizes else labels[:, 0]
        t = torch.randint(0, 1000, (n,))
        inputs = (x_t, t, labels, torch.randn(n, 3, 64, 64), torch.rand(n))
        for _ in range(2):  # the second step has the optimizer's state
            loss = update(parts, setup, inputs, cache_casts=False)
    assert loss.shape == ()


class ReplayForward:
    made: ClassVar[list[ReplayForward]] = []

    def __init__(self, pool) -> None:
        self.replays = 0
        ReplayForward.made.append(self)

    def capture(self, fn):
        self.fn, self.out = fn, fn()
        return self.out

    def replay(self) -> None:
        for out, new in zip(self.out, self.fn(), strict=True):  # the forward's output tuple
            out.copy_(new)
        self.replays += 1


def _graphed(den, new_graph=ReplayForward):
    """``den`` replayed as CUDA graphs: the UNet and its split for the deep cache."""
    from facediff.cuda_graphs import GraphedForward
    from facediff.deep_cache import DeepCacheUNet

    return dataclasses.replace(
        den,
        net=GraphedForward(den.module, den.device, new_graph=new_graph),
        _deep_net=GraphedForward(DeepCacheUNet(den.module), den.device, new_graph=new_graph),
    )


@pytest.mark.parametrize("deep_cache", [3, 1], ids=["default-deep-cache", "exact"])
def test_replayed_forward_samples_the_eager_images(tmp_path, deep_cache):
    """Every shape the jobs run (a category: 2 conditions per image, a pair: 3, OIE: 4;
    steps outside the guidance interval: the category rows alone; a last batch of one
    image) gets its graph, and the images are the eager ones, bit for bit."""
    from sampling_helpers import make_run

    from facediff.categories import DEFAULT_CATEGORIES
    from facediff.generation import generate, prepare_denoiser
    from facediff.loading import load_for_inference
    from facediff.mix import parse_mix

    den = prepare_denoiser(load_for_inference(make_run(tmp_path / "run")), device="cpu")
    ReplayForward.made.clear()
    graphed = _graphed(den)
    kw = {"steps": 8, "batch_size": 2, "guidance_interval": (0.5, 50.0), "deep_cache": deep_cache}
    for spec in ("O", "OI", "OIE"):
        mix = parse_mix(spec, DEFAULT_CATEGORIES)
        want = generate(den, mix, [3, 4, 5], **kw)
        assert torch.equal(generate(graphed, mix, [3, 4, 5], **kw), want), spec
    # Shapes are shared across mixes: the graphs take the labels as an input.
    used = graphed.net if deep_cache == 1 else graphed._deep_net
    assert len(ReplayForward.made) == len(used.graphs)
    assert all(g.replays > 0 for g in ReplayForward.made)
    if deep_cache == 1:
        assert sorted(key[0][0][0] for key in used.graphs) == [1, 2, 3, 4, 6, 8]
        assert not graphed._deep_net.graphs
    else:  # the whole pass and the shallow one (the kept features as an input); a shape
        # called no more than WARMUP_CALLS times (the whole pass of the last, 1-image
        # batch: 3 of 8 steps, guided or not) stays eager
        assert {key[3] is None for key in used.graphs} == {True, False}
        assert {key[0][0][0] for key in used.graphs} >= {2, 4, 6, 8}
        assert not graphed.net.graphs


def test_a_failed_forward_capture_warns_and_samples_eagerly(tmp_path):
    from sampling_helpers import make_run

    from facediff.categories import DEFAULT_CATEGORIES
    from facediff.generation import generate, prepare_denoiser
    from facediff.loading import load_for_inference
    from facediff.mix import parse_mix

    class Broken:
        def __init__(self, pool) -> None:
            pass

        def capture(self, fn):
            raise RuntimeError("CUDA error: operation not permitted when stream is capturing")

    den = prepare_denoiser(load_for_inference(make_run(tmp_path / "run")), device="cpu")
    mix = parse_mix("OE", DEFAULT_CATEGORIES)
    want = generate(den, mix, [0, 1], steps=5)
    with pytest.warns(RuntimeWarning, match="capturing the model failed .CUDA error"):
        got = generate(_graphed(den, Broken), mix, [0, 1], steps=5)
    assert torch.equal(got, want)


def test_sample_cli_on_the_cpu_notes_it_samples_without_them(tmp_path):
    from sampling_helpers import invoke, make_run

    run = make_run(tmp_path / "run")
    args = ["sample", run, "-c", "O", "-n", "1", "--steps", "2", "--device", "cpu"]
    plain = invoke([*args, "--out", tmp_path / "a"])
    graphed = invoke([*args, "--out", tmp_path / "b", "--cuda-graphs"])
    off = invoke([*args, "--out", tmp_path / "c", "--no-cuda-graphs"])
    assert plain.exit_code == graphed.exit_code == off.exit_code == 0, graphed.output
    assert "CUDA graphs need a GPU: sampling on cpu without them" in graphed.output
    assert "CUDA graphs" not in plain.output and "CUDA graphs" not in off.output
    a, b, c = (tmp_path / d / "O" / "O_0.png" for d in "abc")
    assert a.read_bytes() == b.read_bytes() == c.read_bytes()


def test_the_sampling_forward_never_reads_a_value_back_to_the_host():
    """What :class:`GraphedForward` captures: the UNet's inference forward at a 0-d
    timestep, as the sampling loop calls it (see the update's test above)."""
    from torch._subclasses.fake_tensor import FakeTensorMode

    from facediff.config import preset
    from facediff.model import build_unet

    with FakeTensorMode(), torch.inference_mode():
        unet = build_unet(preset("base", sample_size=64, num_categories=3)).eval()
        x = torch.randn(8, 3, 64, 64).contiguous(memory_format=torch.channels_last)
        out = unet(x, torch.tensor(999), torch.zeros(8, dtype=torch.long), return_dict=False)[0]
    assert out.shape == x.shape
