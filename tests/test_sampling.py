"""The sampling core: per-image seeds, guidance formulas, samplers (CPU, fp32)."""

from __future__ import annotations

import pytest
import torch
from sampling_helpers import EXACT, TINY, LinearFakeUNet, make_run

from facediff.categories import DEFAULT_CATEGORIES
from facediff.errors import FacediffError
from facediff.generation import SAMPLERS, generate, make_scheduler, mix_conditions
from facediff.guidance import guide
from facediff.loading import LoadedModel, load_for_inference
from facediff.mix import parse_mix
from facediff.model import scheduler_config

CATS = DEFAULT_CATEGORIES
NULL = CATS.null_label


def fake_loaded(table: torch.Tensor | None = None, prediction_type: str = "epsilon"):
    unet = LinearFakeUNet(NULL + 1)
    if table is not None:
        unet.class_embedding.weight.data = table.clone()
    return LoadedModel(
        unet=unet,
        categories=CATS,
        model_config=TINY,
        scheduler_config=scheduler_config(
            num_train_timesteps=1000,
            beta_schedule="squaredcos_cap_v2",
            prediction_type=prediction_type,
        ),
        step=0,
        source=None,
        weights="ema",
    )


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return load_for_inference(make_run(tmp_path_factory.mktemp("run") / "run"))


@pytest.mark.parametrize("sampler", SAMPLERS)
def test_image_depends_only_on_its_seed(sampler):
    """Bit-exact across n and batch size, including DDPM's per-step noise."""
    lm = fake_loaded()
    mix = parse_mix("OIE", CATS)
    kw = dict(sampler=sampler, steps=4, device="cpu", precision="fp32", **EXACT)
    five = generate(lm, mix, [10, 11, 12, 13, 14], batch_size=2, **kw)
    assert five.shape == (5, 3, 16, 16) and five.dtype == torch.uint8
    assert torch.equal(generate(lm, mix, [12], batch_size=1, **kw)[0], five[2])
    assert torch.equal(generate(lm, mix, [14, 12, 10], batch_size=3, **kw), five[[4, 2, 0]])
    assert not torch.equal(five[0], five[1])


def test_real_unet_same_seed_same_image(tiny):
    mix = parse_mix("OI", CATS)
    kw = dict(sampler="ddpm", steps=3, device="cpu", precision="fp32")
    a = generate(tiny, mix, [0, 1, 2, 3], batch_size=2, **kw)
    b = generate(tiny, mix, [2, 3], batch_size=2, **kw)  # same batch shape: bit-exact
    assert torch.equal(a[2:], b)
    # Another batch shape changes only the kernels' summation order, not the noise.
    c = generate(tiny, mix, [0, 1, 2, 3], batch_size=4, **kw)
    assert (a.int() - c.int()).abs().max() <= 2
    assert (a == c).float().mean() > 0.99


def test_guide_formula():
    torch.manual_seed(0)
    b = 3
    c1, c2, u = torch.randn(3, b, 3, 4, 4).unbind(0)
    cond = mix_conditions(parse_mix("O:0.25,E:0.75", CATS), "compose", 4.0, NULL)
    assert cond.labels == ((1,), (2,), (NULL,))
    got = guide(torch.cat([c1, c2, u]), cond, 4.0, b)
    want = u + 4.0 * (0.25 * (c1 - u) + 0.75 * (c2 - u))
    torch.testing.assert_close(got, want, rtol=0, atol=1e-6)
    # One category is ordinary classifier-free guidance.
    single = mix_conditions(parse_mix("I", CATS), "compose", 4.0, NULL)
    assert single.labels == ((0,), (NULL,))
    assert torch.equal(guide(torch.cat([c1, u]), single, 4.0, b), u + 4.0 * (c1 - u))
    # guidance 1: no unconditional branch at all.
    g1 = mix_conditions(parse_mix("O:0.25,E:0.75", CATS), "compose", 1.0, NULL)
    assert g1.labels == ((1,), (2,))
    torch.testing.assert_close(guide(torch.cat([c1, c2]), g1, 1.0, b), 0.25 * c1 + 0.75 * c2)


def test_compose_is_one_batched_forward_per_step():
    lm = fake_loaded()
    generate(lm, parse_mix("OIE", CATS), [0, 1], steps=3, batch_size=2, device="cpu", **EXACT)
    assert len(lm.unet.calls) == 3
    for size, labels in lm.unet.calls:
        assert size == 8
        assert labels == [1, 1, 0, 0, 2, 2, NULL, NULL]
    lm.unet.calls.clear()
    generate(lm, parse_mix("OI", CATS), [0], steps=2, guidance=1.0, device="cpu", **EXACT)
    assert [labels for _, labels in lm.unet.calls] == [[1, 0], [1, 0]]


@pytest.mark.parametrize("mode", ["compose", "blend"])
def test_mix_matches_closed_form(mode):
    """For a model linear in its class embedding, both modes equal a plain conditional
    model whose embedding is E∅ + s·Σ wᵢ(E[cᵢ] − E∅) (sampled with guidance 1)."""
    lm = fake_loaded()
    table = lm.unet.class_embedding.weight.detach().clone()
    mix = parse_mix("O:0.2,I:0.3,E:0.5", CATS)
    s = 2.5
    eff = table[NULL] + s * sum(
        w * (table[i] - table[NULL]) for i, w in zip(mix.indices, mix.weights)
    )
    table2 = table.clone()
    table2[0] = eff
    kw = dict(sampler="ddim", steps=5, device="cpu", precision="fp32", **EXACT)
    got = generate(lm, mix, [0, 1, 2], guidance=s, mix_mode=mode, **kw)
    want = generate(fake_loaded(table2), parse_mix("I", CATS), [0, 1, 2], guidance=1.0, **kw)
    assert (got.int() - want.int()).abs().max() <= 1
    assert torch.equal(lm.unet.class_embedding.weight, table)  # blend restored the table


def _cfg_reference(unet, label, seeds, guidance, steps):
    """A hand-written DDIM loop with classifier-free guidance (or none when guidance=1)."""
    sched = make_scheduler("ddim", unet_sched)
    sched.set_timesteps(steps)
    x = torch.stack(
        [torch.randn(3, 16, 16, generator=torch.Generator().manual_seed(s)) for s in seeds]
    )
    b = len(seeds)
    with torch.inference_mode():
        for t in sched.timesteps:
            if guidance == 1.0:
                eps = unet(x, t, class_labels=torch.full((b,), label)).sample
            else:
                labels = torch.tensor([label] * b + [NULL] * b)
                c, u = unet(torch.cat([x, x]), t, class_labels=labels).sample.split(b)
                eps = u + guidance * (c - u)
            x = sched.step(eps, int(t), x).prev_sample
    return ((x.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)


unet_sched = scheduler_config(
    num_train_timesteps=1000, beta_schedule="squaredcos_cap_v2", prediction_type="epsilon"
)


@pytest.mark.parametrize("guidance", [1.0, 3.0])
def test_single_category_is_plain_cfg_and_blend_agrees(tiny, guidance):
    # the reference is a hand-written CFG loop: the whole UNet at every step
    kw = dict(sampler="ddim", steps=3, guidance=guidance, device="cpu", precision="fp32", **EXACT)
    mix = parse_mix("E", CATS)
    compose = generate(tiny, mix, [5, 6], mix_mode="compose", **kw)
    blend = generate(tiny, mix, [5, 6], mix_mode="blend", **kw)
    assert torch.equal(compose, blend)
    assert torch.equal(compose, _cfg_reference(tiny.unet, 2, [5, 6], guidance, 3))


def test_blend_differs_from_compose_and_restores_the_table(tiny):
    before = {k: v.clone() for k, v in tiny.unet.state_dict().items()}
    original = tiny.unet.class_embedding
    mix = parse_mix("OIE", CATS)
    kw = dict(steps=3, device="cpu", precision="fp32")
    blend = generate(tiny, mix, [0, 1], mix_mode="blend", **kw)
    compose = generate(tiny, mix, [0, 1], mix_mode="compose", **kw)
    assert not torch.equal(blend, compose)
    assert tiny.unet.class_embedding is original
    for k, v in tiny.unet.state_dict().items():
        assert torch.equal(v, before[k])


@pytest.mark.parametrize("sampler", SAMPLERS)
def test_small_model_error_is_not_amplified_at_the_noisy_end(sampler):
    """Under the cosine schedule ᾱ(999) ≈ 1e-8: a 2% ε error there must not blow up."""
    lm = fake_loaded()
    lm.unet.eps_error = 0.02
    steps = 50 if sampler == "ddpm" else 10
    x = generate(
        lm, parse_mix("I", CATS), range(8), sampler=sampler, steps=steps, guidance=1.0, **EXACT
    )
    saturated = ((x == 0) | (x == 255)).float().mean()
    assert saturated < 0.15
    assert 100 < x.float().mean() < 160


def test_v_prediction_and_every_sampler_run(tmp_path):
    lm = load_for_inference(make_run(tmp_path / "v", prediction_type="v_prediction"))
    for sampler in SAMPLERS:
        out = generate(lm, parse_mix("OI", CATS), [0], sampler=sampler, steps=2, device="cpu")
        assert out.shape == (1, 3, 16, 16)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"sampler": "heun"}, "unknown sampler"),
        ({"mix_mode": "average"}, "unknown mix mode"),
        ({"steps": 0}, "steps"),
        ({"guidance": -1.0}, "guidance"),
        ({"batch_size": 0}, "batch size"),
    ],
)
def test_bad_arguments(kwargs, match):
    with pytest.raises(FacediffError, match=match):
        generate(fake_loaded(), parse_mix("O", CATS), [0], **kwargs)


def test_images_are_plain_contiguous_tensors_even_from_a_channels_last_model(tmp_path, monkeypatch):
    """On CUDA the UNet runs channels-last; its images once came back as a strided view,
    which ``safetensors.save_file`` refuses (the GPU steps sweep failed on it)."""
    from safetensors.torch import load_file, save_file

    from facediff import generation

    denoise = generation.denoise

    def channels_last(*args, **kwargs):
        return denoise(*args, **kwargs).contiguous(memory_format=torch.channels_last)

    monkeypatch.setattr(generation, "denoise", channels_last)
    lm = fake_loaded()
    images = generate(lm, parse_mix("O", CATS), [0, 1], steps=2, device="cpu", **EXACT)
    assert images.is_contiguous()
    save_file({"images": images}, str(tmp_path / "s.safetensors"))
    assert torch.equal(load_file(str(tmp_path / "s.safetensors"))["images"], images)
