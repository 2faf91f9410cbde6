"""Guided sampling, shared by ``facediff sample`` and :class:`FaceDiffPipeline`.

Everything that decides what a sample looks like lives here once: the mix grammar,
the conditions evaluated at each step, how their outputs are combined, the initial
noise and the denoising loop. ``facediff.generation`` (the CLI and Python API) and
``facediff.pipeline`` (the diffusers pipeline) both call these functions, so the same
seed gives the same image from either.

This module imports only the standard library and torch: ``facediff export`` copies it
verbatim next to ``pipeline.py`` in the exported folder, where it is imported by
diffusers without facediff installed.

Guidance:

- one category — classifier-free guidance (Ho & Salimans 2022, arXiv:2207.12598)
  ``ε = ε(x,∅) + s·(ε(x,c) − ε(x,∅))``;
- ``compose`` — composable diffusion (Liu et al. 2022, arXiv:2206.01714)
  ``ε = ε(x,∅) + s·Σ wᵢ·(ε(x,cᵢ) − ε(x,∅))``, all K+1 conditions in one forward;
- ``blend`` — one class embedding ``Σ wᵢ·E[cᵢ]`` guided against ∅; one row of the
  UNet's embedding table holds the blend only while sampling, then is restored.

Attributes (a model whose class embedding is a :class:`SummedEmbedding`): each evaluated
condition is a label row ``(category, a₁, …, a_A)``, ∅ being every column's null. The
requested attributes ride along with every category term by default (the joint
condition ``(cᵢ, A)`` against the all-null ∅); an attribute given its own scale ``sₐ``
becomes its own term ``sₐ·(ε(x,(∅,a)) − ε(x,∅))`` in the same forward instead
(composable like the mix's categories). Rows of length 1 (no attributes) are passed to
the UNet as the plain 1-D labels of a category-only model.

With ``guidance == 1`` the unconditional branch cancels and is not evaluated. For
``v_prediction`` models the same linear combination is applied to the model outputs.

A guidance interval ``(σ_lo, σ_hi]`` (Kynkäänniemi et al. 2024, arXiv:2404.07724, as in
EDM2) guides only the steps whose noise level ``σ = √((1 − ᾱₜ)/ᾱₜ)`` lies in it; the
others evaluate the category terms alone (``Σ wᵢ ε(x,cᵢ)``, guidance 1), one forward of
K rows instead of K+1 (+ attribute terms).

Deep-feature caching (``deep_cache`` N > 1; DeepCache, Ma et al. 2024, arXiv:2312.00858)
runs the whole UNet at the first step and every N-th after it and only its shallow branch on
the deep features kept from then in between (:class:`facediff.deep_cache.DeepCacheUNet`);
the conditions stay batched, each row reusing its own features.
"""

from __future__ import annotations

import contextlib
import inspect
import math
import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch

MIX_MODES = ("compose", "blend")

#: A generator argument: one ``torch.Generator`` for the batch, one per image, or None.
Generators = torch.Generator | Sequence[torch.Generator] | None


# ------------------------------------------------------------------ mix grammar


def find_category(key: str, codes: Sequence[str], names: Sequence[str]) -> int:
    """Label index of the category ``key`` names: a one-letter code or a full name
    (both case-insensitive). Raises ``ValueError`` naming the valid choices."""
    k = key.strip()
    if len(k) == 1 and k.upper() in codes:
        return list(codes).index(k.upper())
    lowered = [n.lower() for n in names]
    if k.lower() in lowered:
        return lowered.index(k.lower())
    valid = ", ".join(f"{c} ({n})" for c, n in zip(codes, names))
    raise ValueError(f"unknown category {key!r}; valid: {valid}")


def _term_index(term: str, spec: str, codes: Sequence[str], names: Sequence[str]) -> int:
    try:
        return find_category(term, codes, names)
    except ValueError:
        valid = ", ".join(f"{c} ({n})" for c, n in zip(codes, names))
        raise ValueError(f"unknown category {term!r} in mix {spec!r}; valid: {valid}") from None


def _term_weight(text: str, spec: str) -> float:
    try:
        w = float(text)
    except ValueError:
        raise ValueError(f"invalid weight {text!r} in mix {spec!r}") from None
    if not math.isfinite(w) or w <= 0:
        raise ValueError(f"weights must be positive numbers; got {text!r} in mix {spec!r}")
    return w


def _split_terms(s: str, spec: str, separator: str) -> list[str]:
    parts = s.split(separator)
    if any(not p.strip() for p in parts):
        raise ValueError(f"invalid mix {spec!r}: empty term")
    return parts


def parse_mix_spec(
    spec: str, codes: Sequence[str], names: Sequence[str]
) -> tuple[tuple[int, ...], tuple[float, ...]]:
    """Label indices and weights (normalised to sum to 1) of a mix spec.

    Accepted forms (codes or names, case-insensitive): ``OIE`` (equal weights),
    ``O+I``, ``Oriental+Indian``, ``O:0.7,I:0.3`` (weights), ``O`` or ``Oriental`` (one
    category). Raises ``ValueError`` with a one-line message.
    """
    s = spec.strip()
    if not s:
        raise ValueError("empty mix spec")
    terms: list[tuple[int, float]] = []
    if ":" in s or "," in s:
        for part in _split_terms(s, spec, ","):
            key, colon, w = part.partition(":")
            if not key.strip():
                raise ValueError(f"invalid mix {spec!r}: empty term")
            weight = _term_weight(w, spec) if colon else 1.0
            terms.append((_term_index(key, spec, codes, names), weight))
    elif "+" in s:
        terms = [(_term_index(p, spec, codes, names), 1.0) for p in _split_terms(s, spec, "+")]
    elif re.fullmatch(r"[A-Za-z]+", s) and s.lower() not in {n.lower() for n in names}:
        terms = [(_term_index(ch, spec, codes, names), 1.0) for ch in s]
    else:
        terms = [(_term_index(s, spec, codes, names), 1.0)]
    indices = [i for i, _ in terms]
    if len(set(indices)) != len(indices):
        dup = next(codes[i] for i in indices if indices.count(i) > 1)
        raise ValueError(f"category {dup} appears more than once in mix {spec!r}")
    return tuple(indices), _normalise([w for _, w in terms], spec)


def _normalise(raw: list[float], spec: str) -> tuple[float, ...]:
    """Weights summing to 1, each finite and > 0. Dividing by the largest first keeps
    the sum finite (``O:1e308,I:1e308`` would otherwise sum to inf and normalise to 0)."""
    top = max(raw)
    scaled = [w / top for w in raw]
    total = sum(scaled)
    weights = tuple(w / total for w in scaled)
    if not all(math.isfinite(w) and w > 0 for w in weights):
        raise ValueError(
            f"the weights of mix {spec!r} do not normalise to positive numbers "
            "(a weight is too small next to the others)"
        )
    return weights


# ------------------------------------------------------------------ attribute embeddings


class SummedEmbedding(torch.nn.Module):
    """The class embedding of a model with attributes: one table whose rows are the
    categories and ∅, then each attribute's values and its ∅, in that order.

    ``forward`` takes labels N×(1+A) (category, then one value index per attribute,
    each counted from 0 with its null last) and returns the sum of the rows they pick;
    1-D labels (N) pick one row, exactly like the ``nn.Embedding`` it replaces. It
    holds the replaced embedding's ``weight`` parameter itself, so the UNet's state dict
    (``class_embedding.weight``) is unchanged and a plain ``UNet2DModel`` with
    ``num_class_embeds = Σ sizes`` loads the same file.
    """

    def __init__(self, weight: torch.nn.Parameter, sizes: Sequence[int]) -> None:
        super().__init__()
        sizes = tuple(int(s) for s in sizes)
        if sum(sizes) != weight.shape[0]:
            raise ValueError(f"embedding rows {weight.shape[0]} != sum of sizes {sizes}")
        self.sizes = sizes
        self.weight = weight
        offsets = torch.tensor([0, *sizes[:-1]], dtype=torch.long).cumsum(0)
        self.register_buffer("offsets", offsets, persistent=False)

    def forward(self, labels: torch.Tensor) -> torch.Tensor:
        if labels.ndim == 1:
            return torch.nn.functional.embedding(labels, self.weight)
        rows = labels + self.offsets.to(labels.device)
        return torch.nn.functional.embedding(rows, self.weight).sum(1)


def attach_attributes(unet: torch.nn.Module, sizes: Sequence[int]) -> torch.nn.Module:
    """Give ``unet`` a :class:`SummedEmbedding` over its own class table (in place);
    ``sizes`` are ``(C + 1, V₁ + 1, …)``. With one size (no attributes) the UNet is
    left exactly as it is. Returns ``unet``."""
    sizes = tuple(int(s) for s in sizes)
    current = unet.class_embedding
    if len(sizes) <= 1 or isinstance(current, SummedEmbedding):
        return unet
    unet.class_embedding = SummedEmbedding(current.weight, sizes)
    return unet


# ------------------------------------------------------------------ guidance


def check_settings(
    mode: str,
    steps: int,
    guidance: float,
    *,
    names: tuple[str, str, str] = ("mix mode", "steps", "guidance"),
) -> None:
    """Raise ``ValueError`` for a mix mode, step count or guidance scale that cannot
    sample; ``names`` are how the caller's user calls the three settings."""
    mode_name, steps_name, guidance_name = names
    if mode not in MIX_MODES:
        raise ValueError(f"unknown {mode_name} {mode!r}; choose from {', '.join(MIX_MODES)}")
    if steps < 1:
        raise ValueError(f"{steps_name} must be at least 1; got {steps}")
    if not (math.isfinite(guidance) and guidance >= 0):  # inf/nan would write black images
        raise ValueError(f"{guidance_name} must be a finite number >= 0; got {guidance}")


def check_interval(
    interval: Sequence[float] | None, name: str = "guidance interval"
) -> tuple[float, float] | None:
    """The guidance interval ``(σ_lo, σ_hi)`` as floats, or None; ``ValueError`` unless
    it is two numbers with ``0 <= σ_lo < σ_hi`` (σ_hi may be ``inf``)."""
    if interval is None:
        return None
    try:
        lo, hi = (float(v) for v in interval)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be two noise levels LO,HI; got {interval!r}") from None
    if not (0 <= lo < hi) or math.isinf(lo):  # nan fails the comparison
        raise ValueError(f"{name} needs 0 <= LO < HI; got {lo:g},{hi:g}")
    return lo, hi


def check_deep_cache(interval: object, name: str = "deep cache") -> int:
    """The deep-cache interval (``1``: off) as an int; ``ValueError`` naming ``name``
    unless it is a whole number >= 1."""
    if isinstance(interval, bool) or not isinstance(interval, int) or interval < 1:
        raise ValueError(f"{name} must be a whole number >= 1 (1: off); got {interval!r}")
    return interval


def runs_whole(step: int, every: int) -> bool:
    """Whether sampling step ``step`` (from 0) runs the whole UNet with the deep cache
    every ``every`` steps: the first step and every N-th after it. The others run the
    shallow branch, unless they evaluate more condition rows than the kept features have
    (:func:`denoise`)."""
    return step % every == 0


@dataclass(frozen=True)
class Conditions:
    """The label rows evaluated at each step and how their outputs are combined."""

    # Label rows (category, then one value index per attribute): the category terms,
    # then the attribute terms, then ∅ if used. Rows of length 1: no attributes.
    labels: tuple[tuple[int, ...], ...]
    weights: tuple[float, ...]  # one per category term (scaled by the guidance)
    unconditional: bool  # whether the last row is ∅
    blend: tuple[tuple[int, ...], tuple[float, ...]] | None  # blend mode: (indices, weights)
    attribute_scales: tuple[float, ...] = ()  # one per attribute term: its own scale


def conditions(
    indices: Sequence[int],
    weights: Sequence[float],
    mode: str,
    guidance: float,
    null_label: int,
    *,
    attributes: Sequence[int] = (),
    nulls: Sequence[int] = (),
    attribute_scales: Sequence[float | None] = (),
) -> Conditions:
    """What to evaluate for a mix of ``indices`` with ``weights`` in mix ``mode``
    (checked by :func:`check_settings`).

    For a model with attributes, ``attributes`` holds the requested value index of each
    (its null, from ``nulls``, when left free) and ``attribute_scales`` (default: all
    None) each one's own guidance scale, or None to ride along with the category terms.
    Raises ``ValueError`` for mismatched lengths, a scale for a free attribute or a
    scale that is not a finite number >= 0.
    """
    indices, weights = tuple(int(i) for i in indices), tuple(float(w) for w in weights)
    attributes, nulls = tuple(int(a) for a in attributes), tuple(int(n) for n in nulls)
    scales = tuple(attribute_scales) or (None,) * len(nulls)
    if not len(attributes) == len(nulls) == len(scales):
        raise ValueError(
            f"{len(attributes)} attribute values, {len(nulls)} nulls and {len(scales)} "
            "scales: one of each per attribute"
        )
    for j, (a, n, sc) in enumerate(zip(attributes, nulls, scales)):
        if not 0 <= a <= n:
            raise ValueError(f"attribute {j}: value index {a} is outside 0..{n}")
        if sc is not None and not (math.isfinite(sc) and sc >= 0):
            raise ValueError(f"attribute {j}: guidance scale must be a finite number >= 0")
        if sc is not None and a == n:
            raise ValueError(f"attribute {j} has its own guidance scale but no requested value")
    joint = tuple(n if sc is not None else a for a, n, sc in zip(attributes, nulls, scales))
    own = [(j, float(sc)) for j, sc in enumerate(scales) if sc is not None]
    attribute_rows = tuple(
        (null_label, *(attributes[k] if k == j else n for k, n in enumerate(nulls))) for j, _ in own
    )
    unconditional = guidance != 1.0 or bool(own)
    blend = None
    if mode == "blend" and len(indices) > 1:
        # One label whose embedding row holds Σ wᵢ E[cᵢ] while sampling.
        blend = (indices, weights)
        indices, weights = (indices[0],), (1.0,)
    rows = tuple((i, *joint) for i in indices) + attribute_rows
    if unconditional:
        rows += ((null_label, *nulls),)
    return Conditions(rows, weights, unconditional, blend, tuple(sc for _, sc in own))


@contextlib.contextmanager
def blended_row(module: torch.nn.Module, cond: Conditions) -> Iterator[None]:
    """Blend mode: row ``indices[0]`` of the class table holds ``Σ wᵢ E[cᵢ]``.

    The row is written in place (so a compiled model sees the same module and needs
    no recompilation) and restored on exit: the saved UNet never changes.
    """
    if cond.blend is None:
        yield
        return
    indices, weights = cond.blend
    weight = module.class_embedding.weight
    row = indices[0]
    with torch.no_grad():
        saved = weight[row].clone()
        mixed = sum(w * weight[i].double() for i, w in zip(indices, weights))
        weight[row] = mixed.to(weight.dtype)
    try:
        yield
    finally:
        with torch.no_grad():
            weight[row] = saved


def unguided(cond: Conditions) -> Conditions:
    """``cond`` at guidance 1 without attribute terms: the category rows alone, which
    :func:`guide` sums as ``Σ wᵢ ε(x,cᵢ)`` (the steps outside a guidance interval)."""
    k = len(cond.weights)
    return Conditions(cond.labels[:k], cond.weights, False, cond.blend)


#: Where a run's steps lie between its first timestep and t = 0: ``time`` evenly in t (the
#: scheduler's own placement), ``logsnr`` evenly in log-SNR λ = log(αₜ/σₜ).
SPACINGS = ("time", "logsnr")


def takes_timesteps(scheduler: Any) -> bool:
    """Whether a diffusers scheduler's ``set_timesteps`` takes a list of timesteps."""
    return "timesteps" in inspect.signature(scheduler.set_timesteps).parameters


def set_timesteps(
    scheduler: Any, steps: int, spacing: str = "time", device: torch.device | str | None = None
) -> None:
    """Place ``steps`` steps on ``scheduler``. ``time``: as the scheduler places them.
    ``logsnr``: from the same first timestep down to t = 0, evenly in log-SNR (DPM-Solver's
    "logSNR" steps, Lu et al. 2022, arXiv:2206.00927, suggested for low-resolution
    pixel-space models), through :func:`logsnr_timesteps`; the same ODE from the same start,
    so both spacings approach the same images as the steps grow. ``logsnr`` needs a
    scheduler that takes custom timesteps (DPM-Solver++, Euler, DDPM)."""
    if spacing not in SPACINGS:
        raise ValueError(f"spacing must be one of {', '.join(SPACINGS)}, not {spacing!r}")
    scheduler.set_timesteps(steps, device=device)
    if spacing == "time":
        return
    if not takes_timesteps(scheduler):
        raise ValueError(f"{type(scheduler).__name__} takes no custom timesteps: no logsnr spacing")
    start = min(int(scheduler.timesteps[0]), len(scheduler.alphas_cumprod) - 1)
    timesteps = logsnr_timesteps(scheduler.alphas_cumprod, start, steps)
    scheduler.set_timesteps(device=device, timesteps=timesteps)
    if hasattr(scheduler, "set_begin_index"):  # count steps from the first, not by lookup
        scheduler.set_begin_index(0)


def logsnr_timesteps(alphas_cumprod: torch.Tensor, start: int, steps: int) -> list[int]:
    """``steps`` distinct integer timesteps from ``start`` down to 0 whose log-SNR
    λₜ = ½·log(ᾱₜ/(1 − ᾱₜ)) is evenly spaced, each rounded to the nearest timestep. Where
    rounding repeats a timestep (many steps crowd near t = 0) the repeats move to the next
    free timesteps above, and the top ones down below ``start``."""
    if not 1 <= steps <= start + 1:
        raise ValueError(f"logsnr spacing from timestep {start} takes 1 to {start + 1} steps")
    if steps == 1:
        return [start]
    a = alphas_cumprod.detach().double().cpu()[: start + 1]
    rising = (0.5 * (a.log() - (1 - a).log())).flip(0)  # λ at t = start, start − 1, …, 0
    goal = torch.linspace(float(rising[0]), float(rising[-1]), steps, dtype=torch.float64)
    j = torch.searchsorted(rising, goal).clamp(1, start)
    lo, hi = rising[j - 1], rising[j]
    t = (start - j + 1) - (goal - lo) / (hi - lo)  # linear between t = start−j+1 and start−j
    picked = t.round().long().tolist()
    picked[-1] = max(picked[-1], 0)
    for i in range(steps - 2, -1, -1):  # repeats move up …
        picked[i] = max(picked[i], picked[i + 1] + 1)
    picked[0] = min(picked[0], start)
    for i in range(1, steps):  # … but not past the start
        picked[i] = min(picked[i], picked[i - 1] - 1)
    return picked


def noise_levels(scheduler: Any, timesteps: Sequence[float]) -> list[float]:
    """σ = √((1 − ᾱₜ)/ᾱₜ) of each of a diffusers scheduler's ``timesteps``."""
    alphas = getattr(scheduler, "alphas_cumprod", None)
    if alphas is None:
        raise ValueError(f"{type(scheduler).__name__} has no alphas_cumprod: no noise levels")
    alphas = alphas.double().cpu()
    picked = [float(alphas[min(round(float(t)), len(alphas) - 1)]) for t in timesteps]
    return [math.sqrt((1 - a) / a) for a in picked]


def guide(outputs: torch.Tensor, cond: Conditions, guidance: float, batch: int) -> torch.Tensor:
    """Combine the stacked outputs ``[ε(x,c₁); …; ε(x,c_K); ε(x,a₁); …; ε(x,∅)]`` (module
    docstring): ``ε(x,∅) + s·Σ wᵢ(ε(x,cᵢ) − ε(x,∅)) + Σ sₐ(ε(x,a) − ε(x,∅))``.

    Without the unconditional branch (guidance 1, no attribute terms) this is
    ``Σ wᵢ ε(x,cᵢ)``.
    """
    parts = outputs.float().split(batch)
    k = len(cond.weights)
    if not cond.unconditional:
        out = parts[0] * cond.weights[0]
        for w, e in zip(cond.weights[1:], parts[1:k]):
            out = out + w * e
        return out
    m = len(cond.attribute_scales)
    uncond = parts[k + m]
    delta = cond.weights[0] * (parts[0] - uncond)
    for w, e in zip(cond.weights[1:], parts[1:k]):
        delta = delta + w * (e - uncond)
    out = uncond + guidance * delta
    for sc, e in zip(cond.attribute_scales, parts[k : k + m]):
        out = out + sc * (e - uncond)
    return out


# ------------------------------------------------------------------ noise and the loop


def initial_noise(generator: Generators, shape: Sequence[int]) -> torch.Tensor:
    """Standard normal noise of ``shape`` (N×C×H×W), drawn on the generators' devices.

    With a list of generators, image ``i`` comes from ``generator[i]`` alone (EDM's
    ``StackedRandomGenerator``, Karras et al. 2022): it does not depend on the batch.
    """
    shape = tuple(int(s) for s in shape)
    if generator is None:
        return torch.randn(shape)
    if isinstance(generator, torch.Generator):
        return torch.randn(shape, generator=generator, device=generator.device)
    generators = list(generator)
    if len(generators) != shape[0]:
        raise ValueError(f"{len(generators)} generators for a batch of {shape[0]} images")
    if not generators:
        return torch.empty(shape)
    draws = [torch.randn(shape[1:], generator=g, device=g.device).cpu() for g in generators]
    return torch.stack(draws)


def _takes_generator(scheduler: Any) -> bool:
    return "generator" in inspect.signature(scheduler.step).parameters


def denoise(
    net: Callable[..., Any],
    scheduler: Any,
    noise: torch.Tensor,
    cond: Conditions,
    *,
    steps: int,
    guidance: float,
    dtype: torch.dtype,
    generator: Generators = None,
    progress: Callable[[Iterable[int]], Iterable[int]] | None = None,
    guidance_interval: Sequence[float] | None = None,
    spacing: str = "time",
    deep_cache: int = 1,
) -> torch.Tensor:
    """Run a diffusers ``scheduler`` from ``noise`` (on the model's device) to x₀ in
    ``steps`` steps placed by ``spacing`` (:func:`set_timesteps`).

    ``net`` is a ``UNet2DModel`` (or compiled one); each step evaluates every label row
    of ``cond`` in one batched forward and combines the outputs with :func:`guide`.
    With ``guidance_interval`` ``(σ_lo, σ_hi)`` only steps with σ_lo < σ <= σ_hi are
    guided; the others evaluate the category rows alone (:func:`unguided`).
    Stochastic schedulers draw their step noise from ``generator`` (per image when it
    is a list). Returns float32 images in model space ([-1, 1] for a trained model).
    ``progress`` may wrap the step indices (e.g. a progress bar).

    With ``deep_cache`` N > 1, ``net`` is a :class:`~facediff.deep_cache.DeepCacheUNet`
    (or compiled one), called ``net(x, t, labels, cached)`` for ``(output, features)``:
    the first step and every N-th after it run the whole UNet and keep its deep
    features; the others run its shallow branch on them (a step that evaluates more
    condition rows than the kept features have runs whole).
    """
    set_timesteps(scheduler, steps, spacing, device=noise.device)
    host_timesteps = scheduler.timesteps.tolist()  # one sync, then none inside the loop
    x = noise * scheduler.init_noise_sigma
    batch = x.shape[0]
    rows = torch.tensor(cond.labels, dtype=torch.long, device=x.device)
    if rows.shape[1] == 1:  # no attributes: the 1-D labels of a category-only model
        rows = rows[:, 0]
    labels = rows.repeat_interleave(batch, dim=0)
    interval = check_interval(guidance_interval)
    guided = [True] * len(host_timesteps)
    if interval is not None and cond.unconditional:
        lo, hi = interval
        guided = [lo < s <= hi for s in noise_levels(scheduler, host_timesteps)]
    plain = unguided(cond)
    plain_labels = labels[: len(plain.labels) * batch]  # the category rows come first
    every = check_deep_cache(deep_cache)
    features: torch.Tensor | None = None
    step_kwargs = {"generator": generator} if generator is not None else {}
    if not _takes_generator(scheduler):
        step_kwargs = {}
    indices: Iterable[int] = range(len(host_timesteps))
    if progress is not None:
        indices = progress(indices)
    for i in indices:
        t = host_timesteps[i]
        x_in = scheduler.scale_model_input(x, t).to(dtype)
        use, use_labels = (cond, labels) if guided[i] else (plain, plain_labels)
        n_rows = len(use.labels)
        x_all = x_in if n_rows == 1 else torch.cat([x_in] * n_rows)
        if every == 1:
            out = net(x_all, scheduler.timesteps[i], class_labels=use_labels, return_dict=False)[0]
        else:
            cached = None
            if (
                not runs_whole(i, every)
                and features is not None
                and features.shape[0] >= x_all.shape[0]
            ):
                cached = features[: x_all.shape[0]]  # an unguided step's rows come first
            out, kept = net(x_all, scheduler.timesteps[i], use_labels, cached)
            if cached is None:
                features = kept
        eps = guide(out, use, guidance, batch)
        x = scheduler.step(eps, t, x, return_dict=False, **step_kwargs)[0]
    return x.float()


def to_unit(x: torch.Tensor) -> torch.Tensor:
    """Model space [-1, 1] to [0, 1] floats (clamped)."""
    return (x.float().clamp(-1, 1) + 1) / 2


def to_uint8(x: torch.Tensor) -> torch.Tensor:
    """Model space [-1, 1] to uint8 pixels (on the tensor's device)."""
    return ((x.float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
