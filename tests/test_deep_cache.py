"""Deep-feature caching (DeepCache): the split UNet, which steps run it whole, and the
option through generate, the CLI, CUDA-graph replay and the records."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch
from sampling_helpers import error_lines, invoke, make_run

from facediff.categories import DEFAULT_CATEGORIES
from facediff.config import PRESETS, preset
from facediff.deep_cache import DeepCacheUNet
from facediff.generation import generate, prepare_denoiser
from facediff.loading import load_for_inference
from facediff.mix import parse_mix
from facediff.model import build_unet

CATS = DEFAULT_CATEGORIES


def _unet(name: str, size: int, **kw) -> torch.nn.Module:
    torch.manual_seed(0)
    config = dataclasses.replace(preset(name, sample_size=size, num_categories=3), **kw)
    unet = build_unet(config).eval()
    with torch.no_grad():  # class rows large enough to matter
        for weight in unet.class_embedding.parameters():
            weight.copy_(3 * torch.randn_like(weight))
    return unet


@pytest.mark.parametrize(
    "name, size, kw",
    [("tiny", 16, {}), ("base", 64, {}), ("tiny", 16, {"attribute_sizes": (2, 10)})],
    ids=["tiny", "base", "tiny-attributes"],
)
def test_the_whole_pass_is_the_unets_forward_and_the_shallow_pass_reuses_it(name, size, kw):
    unet = _unet(name, size, **kw)
    split = DeepCacheUNet(unet)
    x = torch.randn(2, 3, size, size)
    t = torch.tensor(700)
    labels = torch.tensor([[0, 1, 3], [3, 2, 10]]) if kw else torch.tensor([0, 3])
    with torch.no_grad():
        want = unet(x, t, class_labels=labels, return_dict=False)[0]
        out, features = split(x, t, labels)
        assert torch.equal(out, want)
        # The shallow branch on this very input's features is the whole pass again...
        again, kept = split(x, t, labels, features)
        assert torch.equal(again, want) and kept is features
        # ...and on another input's features it is not: they are really used.
        _, other = split(torch.randn_like(x), t, labels)
        assert not torch.allclose(split(x, t, labels, other)[0], want, atol=1e-3)
    # the kept features enter the last up block: its width, at the full resolution
    assert features.shape == (2, unet.up_blocks[-2].resnets[-1].out_channels, size, size)


def test_a_model_without_a_unets_blocks_is_refused_by_name():
    from sampling_helpers import LinearFakeUNet

    with pytest.raises(ValueError, match=r"LinearFakeUNet is not a UNet2DModel \(no conv_in"):
        DeepCacheUNet(LinearFakeUNet())


def test_the_shallow_pass_costs_a_third_of_the_base_model():
    from torch.utils.flop_counter import FlopCounterMode

    unet = build_unet(PRESETS["base"]).eval()
    split = DeepCacheUNet(unet)
    x, t, labels = torch.randn(1, 3, 64, 64), torch.tensor(500), torch.tensor([0])
    with torch.no_grad():
        with FlopCounterMode(display=False) as whole:
            _, features = split(x, t, labels)
        with FlopCounterMode(display=False) as shallow:
            split(x, t, labels, features)
    share = shallow.get_total_flops() / whole.get_total_flops()
    assert 0.3 < share < 0.4, share  # the module docstring's 35%


def _spy(monkeypatch) -> list[tuple[int, bool]]:
    """(rows, whole) of every DeepCacheUNet call."""
    calls: list[tuple[int, bool]] = []
    forward = DeepCacheUNet.forward

    def spy(self, sample, timestep, class_labels=None, cached=None):
        calls.append((sample.shape[0], cached is None))
        return forward(self, sample, timestep, class_labels, cached)

    monkeypatch.setattr(DeepCacheUNet, "forward", spy)
    return calls


@pytest.fixture(scope="module")
def den(tmp_path_factory):
    run = make_run(tmp_path_factory.mktemp("deep") / "run")
    return prepare_denoiser(load_for_inference(run), device="cpu")


def test_every_nth_step_runs_the_whole_unet(den, monkeypatch):
    calls = _spy(monkeypatch)
    mix = parse_mix("OI", CATS)
    exact = generate(den, mix, [1, 2], steps=7, deep_cache=1)
    assert not calls  # deep_cache=1 never calls the split UNet
    cached = generate(den, mix, [1, 2], steps=7)  # the default: 3
    assert calls == [(6, i % 3 == 0) for i in range(7)]  # 3 conditions × 2 images
    assert (cached.int() - exact.int()).abs().max() > 2  # an approximation: other pixels
    calls.clear()
    generate(den, mix, [1, 2], steps=7, deep_cache=2)
    assert calls == [(6, i % 2 == 0) for i in range(7)]


def test_a_step_with_more_conditions_than_the_kept_features_runs_whole(den, monkeypatch):
    """With a guidance interval the noisiest steps (σ above it) evaluate the categories
    alone: the first guided step needs the unconditional rows too, so it runs whole;
    the clean steps below the interval reuse the first rows of a guided step's features."""
    calls = _spy(monkeypatch)
    generate(den, parse_mix("O", CATS), [1, 2], steps=10, deep_cache=100, guidance_interval=(1, 5))
    rows = [r for r, _ in calls]
    assert rows[0] == 2 and 4 in rows and rows[-1] == 2  # unguided, guided, unguided
    first_guided = rows.index(4)
    whole = [i for i, (_, w) in enumerate(calls) if w]
    assert whole == [0, first_guided]


def test_replayed_cuda_graphs_give_the_eager_cached_images(den):
    from test_cuda_graphs import ReplayForward

    from facediff.cuda_graphs import GraphedForward

    graphed = dataclasses.replace(
        den,
        _deep_net=GraphedForward(DeepCacheUNet(den.module), den.device, new_graph=ReplayForward),
    )
    mix = parse_mix("OIE", CATS)
    want = generate(den, mix, [3, 4], steps=8, deep_cache=2)
    assert torch.equal(generate(graphed, mix, [3, 4], steps=8, deep_cache=2), want)
    # one graph for the whole pass and one for the shallow pass (cached given)
    assert sorted(key[3] is None for key in graphed._deep_net.graphs) == [False, True]


def test_sample_cli_caches_every_third_step_by_default_and_records_it(tmp_path):
    run = make_run(tmp_path / "run")
    args = ["sample", run, "-c", "O", "-n", "2", "--steps", "4", "--device", "cpu"]
    for out, flags in (
        ("default", []),
        ("three", ["--deep-cache", "3"]),
        ("exact", ["--deep-cache", "1"]),
    ):
        r = invoke([*args, "--out", tmp_path / out, *flags])
        assert r.exit_code == 0, r.output
    record = {
        d: json.loads((tmp_path / d / "samples.json").read_text()) for d in ("default", "exact")
    }
    assert '"deep_cache": 3' in json.dumps(record["default"])
    # the exact model, as records always meant
    assert "deep_cache" not in json.dumps(record["exact"])
    png = {d: (tmp_path / d / "O" / "O_0.png").read_bytes() for d in ("default", "three", "exact")}
    assert png["default"] == png["three"]
    assert png["default"] != png["exact"]
    bad = invoke([*args, "--out", tmp_path / "c", "--deep-cache", "0"])
    assert bad.exit_code != 0
    assert error_lines(bad) == [
        "facediff: error: invalid --deep-cache 0: must be a positive integer"
    ]
    assert not (tmp_path / "c").exists()


def test_both_passes_trace_as_one_graph_each_for_torch_compile():
    """A graph break would split the compiled passes (and keep CUDA graphs from them);
    Dynamo's tracing alone (the eager backend) says so without inductor's slow CPU build."""
    import torch._dynamo

    torch._dynamo.reset()
    unet = _unet("tiny", 16)
    split = DeepCacheUNet(unet)
    traced = torch.compile(split, backend="eager", fullgraph=True, dynamic=False)
    x, t, labels = torch.randn(2, 3, 16, 16), torch.tensor(500), torch.tensor([0, 3])
    with torch.inference_mode():
        want = unet(x, t, class_labels=labels, return_dict=False)[0]
        out, features = traced(x, t, labels)
        again, _ = traced(x, t, labels, features)
    assert torch.equal(out, want) and torch.equal(again, want)
