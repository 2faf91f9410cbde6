"""Sampling with attributes: label rows, joint and per-attribute guidance (CPU, fp32)."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from sampling_helpers import EXACT, TINY, LinearFakeUNet

from facediff.attributes import AttributeSet, age_attribute, embedding_sizes, gender_attribute
from facediff.categories import DEFAULT_CATEGORIES
from facediff.errors import ConfigError
from facediff.generation import generate
from facediff.guidance import attach_attributes, conditions, guide
from facediff.loading import LoadedModel
from facediff.mix import parse_mix
from facediff.model import build_unet, scheduler_config

CATS = DEFAULT_CATEGORIES
NULL = CATS.null_label  # 3
ATTRS = AttributeSet((gender_attribute(), age_attribute((20, 40))))  # 2 genders, 3 ages
SIZES = embedding_sizes(len(CATS), ATTRS.sizes)  # (4, 3, 4)
G_NULL, A_NULL = ATTRS.nulls()  # 2, 3
SCHED = scheduler_config(
    num_train_timesteps=1000, beta_schedule="squaredcos_cap_v2", prediction_type="epsilon"
)
KW = dict(sampler="ddim", steps=4, device="cpu", precision="fp32", **EXACT)


def loaded_with(unet: torch.nn.Module, attributes: AttributeSet = ATTRS) -> LoadedModel:
    lm = LoadedModel(
        unet=unet,
        categories=CATS,
        model_config=dataclasses.replace(TINY, attribute_sizes=attributes.sizes),
        scheduler_config=SCHED,
        step=0,
        source=None,
        weights="ema",
    )
    lm.attributes = attributes  # what load_for_inference exposes
    return lm


def fake_with_attributes() -> LoadedModel:
    """The linear fake UNet over a summed table: categories+∅, genders+∅, ages+∅."""
    unet = LinearFakeUNet(sum(SIZES))
    return loaded_with(attach_attributes(unet, SIZES))


def fake_plain(table_row0: torch.Tensor) -> LoadedModel:
    """A category-only linear fake whose row 0 is ``table_row0`` (a closed-form reference)."""
    unet = LinearFakeUNet(NULL + 1)
    unet.class_embedding.weight.data[0] = table_row0
    return loaded_with(unet, AttributeSet())


@pytest.fixture(scope="module")
def tiny_attr():
    """A real tiny UNet with attributes whose attribute rows are large enough to matter."""
    torch.manual_seed(0)
    unet = build_unet(dataclasses.replace(TINY, attribute_sizes=ATTRS.sizes))
    with torch.no_grad():
        unet.class_embedding.weight.copy_(3 * torch.randn_like(unet.class_embedding.weight))
    return loaded_with(unet)


# ------------------------------------------------------------------ label rows


def test_rows_default_joint_and_own_terms():
    # Joint: the requested attributes ride along with every category term.
    cond = conditions((1, 2), (0.25, 0.75), "compose", 3.0, NULL, attributes=(1, A_NULL),
                      nulls=(G_NULL, A_NULL))  # fmt: skip
    assert cond.labels == ((1, 1, A_NULL), (2, 1, A_NULL), (NULL, G_NULL, A_NULL))
    assert cond.weights == (0.25, 0.75) and cond.attribute_scales == ()
    # Gender with its own scale: its own term (∅, female, ∅), not in the category terms.
    cond = conditions((0,), (1.0,), "compose", 3.0, NULL, attributes=(1, 2),
                      nulls=(G_NULL, A_NULL), attribute_scales=(5.0, None))  # fmt: skip
    assert cond.labels == ((0, G_NULL, 2), (NULL, 1, A_NULL), (NULL, G_NULL, A_NULL))
    assert cond.attribute_scales == (5.0,)
    # An own term needs ∅ even at guidance 1.
    cond = conditions((0,), (1.0,), "compose", 1.0, NULL, attributes=(1, A_NULL),
                      nulls=(G_NULL, A_NULL), attribute_scales=(2.0, None))  # fmt: skip
    assert cond.unconditional and cond.labels[-1] == (NULL, G_NULL, A_NULL)
    # Blend keeps one category row (indices[0], holding the blend) with the attributes.
    cond = conditions((1, 2), (0.5, 0.5), "blend", 3.0, NULL, attributes=(0, 1),
                      nulls=(G_NULL, A_NULL))  # fmt: skip
    assert cond.labels == ((1, 0, 1), (NULL, G_NULL, A_NULL))
    assert cond.blend == ((1, 2), (0.5, 0.5))
    # No attributes: rows of length 1, exactly the old labels.
    assert conditions((1, 2), (0.5, 0.5), "compose", 3.0, NULL).labels == ((1,), (2,), (NULL,))


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        (dict(attributes=(G_NULL, 0), attribute_scales=(5.0, None)), "no requested value"),
        (dict(attributes=(1, 0), attribute_scales=(float("nan"), None)), "finite"),
        (dict(attributes=(1,)), "one of each"),
        (dict(attributes=(3, 0)), "outside"),
    ],
)
def test_rows_refuse_bad_requests(kwargs, match):
    with pytest.raises(ValueError, match=match):
        conditions((0,), (1.0,), "compose", 3.0, NULL, nulls=(G_NULL, A_NULL), **kwargs)


def test_guide_adds_attribute_terms():
    torch.manual_seed(0)
    b = 2
    c1, a1, u = torch.randn(3, b, 3, 4, 4).unbind(0)
    cond = conditions((0,), (1.0,), "compose", 3.0, NULL, attributes=(1, A_NULL),
                      nulls=(G_NULL, A_NULL), attribute_scales=(5.0, None))  # fmt: skip
    got = guide(torch.cat([c1, a1, u]), cond, 3.0, b)
    torch.testing.assert_close(got, u + 3.0 * (c1 - u) + 5.0 * (a1 - u), rtol=0, atol=1e-6)


def test_one_batched_forward_with_label_rows_free_attributes_null():
    lm = fake_with_attributes()
    generate(lm, parse_mix("OI", CATS), [0, 1], attributes={"gender": "female"}, **KW)
    assert len(lm.unet.calls) == 4
    for size, labels in lm.unet.calls:
        assert size == 6  # (O, f, ∅), (I, f, ∅), ∅ for 2 images
        assert labels == [[1, 1, A_NULL]] * 2 + [[0, 1, A_NULL]] * 2 + [[NULL, G_NULL, A_NULL]] * 2
    lm.unet.calls.clear()
    # Nothing requested: every attribute at its null row (never a 1-D label).
    generate(lm, parse_mix("E", CATS), [0], guidance=1.0, **KW)
    assert lm.unet.calls[0][1] == [[2, G_NULL, A_NULL]]


# ------------------------------------------------------------------ closed forms


def _summed(table: torch.Tensor, row: tuple[int, int, int]) -> torch.Tensor:
    offsets = (0, SIZES[0], SIZES[0] + SIZES[1])
    return sum(table[o + r] for o, r in zip(offsets, row))


@pytest.mark.parametrize("mode", ["compose", "blend"])
@pytest.mark.parametrize("own", [None, 4.0])
def test_attribute_guidance_matches_closed_form(mode, own):
    """For a model linear in its (summed) class embedding, guided sampling equals a plain
    conditional model whose embedding is the guided combination (sampled at guidance 1)."""
    lm = fake_with_attributes()
    table = lm.unet.class_embedding.weight.detach().clone()
    mix, s, g, age = parse_mix("O:0.3,I:0.7", CATS), 2.5, 1, 2
    null = _summed(table, (NULL, G_NULL, A_NULL))
    gender_in_terms = g if own is None else G_NULL
    blend = sum(w * table[i] for i, w in zip(mix.indices, mix.weights))
    if mode == "compose":
        terms = sum(
            w * (_summed(table, (i, gender_in_terms, age)) - null)
            for i, w in zip(mix.indices, mix.weights)
        )
    else:  # one blended category row, then the attribute rows summed onto it
        terms = _summed(table, (NULL, gender_in_terms, age)) - table[NULL] + blend - null
    eff = null + s * terms
    if own is not None:
        eff = eff + own * (_summed(table, (NULL, g, A_NULL)) - null)
    request = {"gender": "female", "age": "45"}  # 45 is in the bucket 40+
    scales = {"gender": own} if own is not None else None
    got = generate(lm, mix, [0, 1, 2], guidance=s, mix_mode=mode, attributes=request,
                   attribute_guidance=scales, **KW)  # fmt: skip
    want = generate(fake_plain(eff), parse_mix("I", CATS), [0, 1, 2], guidance=1.0, **KW)
    assert (got.int() - want.int()).abs().max() <= 1
    assert torch.equal(lm.unet.class_embedding.weight, table)  # blend restored the table


# ------------------------------------------------------------------ a real UNet


def test_requested_attribute_changes_the_image_and_free_uses_the_null_row(tiny_attr):
    mix, seeds = parse_mix("I", CATS), [3, 4]
    female = generate(tiny_attr, mix, seeds, attributes={"gender": "female"}, **KW)
    male = generate(tiny_attr, mix, seeds, attributes={"gender": "m"}, **KW)
    free = generate(tiny_attr, mix, seeds, **KW)
    assert not torch.equal(female, male) and not torch.equal(female, free)
    assert torch.equal(
        female, generate(tiny_attr, mix, seeds, attributes={"gender": "female"}, **KW)
    )
    # Free means the null row: moving gender's null row changes the free images; moving
    # an age value's row changes nothing when age is free.
    weight = tiny_attr.unet.class_embedding.weight
    saved = weight.detach().clone()
    try:
        with torch.no_grad():
            weight[SIZES[0] + G_NULL] += 2.0
        assert not torch.equal(free, generate(tiny_attr, mix, seeds, **KW))
        with torch.no_grad():
            weight.copy_(saved)
            weight[SIZES[0] + SIZES[1] + 0] += 2.0  # age 0-19
        assert torch.equal(
            female, generate(tiny_attr, mix, seeds, attributes={"gender": "f"}, **KW)
        )
        young = generate(tiny_attr, mix, seeds, attributes={"gender": "f", "age": "5"}, **KW)
        with torch.no_grad():
            weight.copy_(saved)
        assert not torch.equal(
            young, generate(tiny_attr, mix, seeds, attributes={"gender": "f", "age": "5"}, **KW)
        )
    finally:
        with torch.no_grad():
            weight.copy_(saved)
    # Every free attribute at its null is the same as requesting nothing.
    assert torch.equal(free, generate(tiny_attr, mix, seeds, attributes={"age": None}, **KW))


def test_own_scale_zero_is_the_attribute_left_free(tiny_attr):
    """sₐ = 0 removes the attribute's term (and it no longer rides along): the image is
    that of the free attribute."""
    mix, seeds = parse_mix("O", CATS), [0]
    free = generate(tiny_attr, mix, seeds, **KW)
    zero = generate(tiny_attr, mix, seeds, attributes={"gender": "female"},
                    attribute_guidance={"gender": 0.0}, **KW)  # fmt: skip
    assert (free.int() - zero.int()).abs().max() <= 1
    own = generate(tiny_attr, mix, seeds, attributes={"gender": "female"},
                   attribute_guidance={"gender": 5.0}, **KW)  # fmt: skip
    assert not torch.equal(own, free)


@pytest.mark.parametrize(
    ("attributes", "guidance", "message"),
    [
        ({"age": "200-209"}, None, "age: unknown age '200-209'; choose from 0-19, 20-39, 40+"),
        ({"colour": "red"}, None, "colour: this model has no attribute 'colour'"),
        ({"gender": "x"}, None, "gender: unknown gender 'x'; choose from male, female"),
        ({}, {"gender": 2.0}, "attribute guidance: gender has its own scale but gender is not"),
        ({"gender": "f"}, {"gender": -1.0}, "attribute guidance: gender=-1.0 must be a finite"),
        ({}, {"hair": 2.0}, "attribute guidance: this model has no attribute 'hair'"),
    ],
)
def test_bad_requests_name_the_option(tiny_attr, attributes, guidance, message):
    with pytest.raises(ConfigError) as e:
        generate(tiny_attr, parse_mix("O", CATS), [0], attributes=attributes,
                 attribute_guidance=guidance, **KW)  # fmt: skip
    assert str(e.value).startswith(message)
    assert e.value.naming(lambda f: "--" + f.replace("_", "-")).startswith("--")


def test_model_without_attributes_refuses_a_request():
    lm = fake_plain(torch.zeros(3))
    with pytest.raises(ConfigError) as e:
        generate(lm, parse_mix("O", CATS), [0], attributes={"gender": "female"}, **KW)
    assert e.value.naming(lambda f: "--" + f) == (
        "--gender: this model was trained without attributes ('gender')"
    )
    # Free attributes ask nothing of it: the request {"age": None} is no request.
    assert generate(lm, parse_mix("O", CATS), [0], attributes={"age": None}, **KW).shape[0] == 1
