"""Sampling: a pure function of (model, noise, conditions, schedule) with per-image seeds.

Image *i* is determined by ``seeds[i]``: its initial noise, and the fresh noise of a
stochastic sampler (DDPM), come from its own ``torch.Generator`` (EDM's
``StackedRandomGenerator``, Karras et al. 2022), generated on the CPU so a seed means
the same noise on every device. The rest of the computation is per image too, so an
image does not depend on which other images share its batch; the only caveat is
floating point: matrix-multiply kernels may pick a different summation order for a
different batch *shape*, so equality across batch sizes is exact for the noise and
equal to within rounding (identical uint8 pixels almost everywhere) for the network.

The guidance formulas, mix modes and the denoising loop are in :mod:`facediff.guidance`,
shared with the diffusers pipeline (:mod:`facediff.pipeline`); this module adds the
samplers facediff offers, device placement and compilation, and batching over seeds.
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from diffusers import (
    DDIMScheduler,
    DDPMScheduler,
    DPMSolverMultistepScheduler,
    EulerDiscreteScheduler,
    UniPCMultistepScheduler,
)

from facediff import sample_memory
from facediff.attribute_request import AttributeRequest, resolve_request
from facediff.attributes import AttributeSet
from facediff.compile_cache import (
    CompileCache,
    CompiledOrEager,
    compile_cache,
    should_compile,
)
from facediff.config import SAMPLERS, ModelConfig, SampleConfig
from facediff.cuda_graphs import GraphedForward, needs_gpu, wanted
from facediff.deep_cache import DeepCacheUNet
from facediff.device import enable_fast_math, resolve_device, resolve_precision
from facediff.errors import UsageError, invalid
from facediff.guidance import (
    Conditions,
    blended_row,
    conditions,
    denoise,
    initial_noise,
    to_uint8,
    unguided,
)
from facediff.loading import LoadedModel
from facediff.mix import Mix
from facediff.progress import Progress, ProgressCallback, emit

# cuDNN autotuning (``torch.backends.cudnn.benchmark``) for sampling jobs of at least this
# many images, or compiled ones. Measured on an H200 (base preset, 64 px, bf16, eager): the
# first batch of 8 images took 1.2 s without autotuning and 2.4-3.2 s with it, while 256
# images take about 5 s, so a shorter job cannot win back what the tuning costs.
AUTOTUNE_MIN_IMAGES = 256


def autotunes(images: int, compiled: bool) -> bool:
    """Whether a sampling job of ``images`` (0: unknown) turns cuDNN autotuning on."""
    return compiled or images == 0 or images >= AUTOTUNE_MIN_IMAGES


def make_scheduler(name: str, scheduler_config: dict[str, Any]) -> Any:
    """A fresh diffusers scheduler for sampler ``name`` on the run's noise schedule.

    DPM-Solver++ (Lu et al. 2022, arXiv:2211.01095), DDIM (Song et al. 2021,
    arXiv:2010.02502), UniPC (Zhao et al. 2023, arXiv:2302.04867), Euler (Karras et al.
    2022, arXiv:2206.00364) and ancestral DDPM (Ho et al. 2020, arXiv:2006.11239).
    """
    base = {
        "num_train_timesteps": int(scheduler_config.get("num_train_timesteps", 1000)),
        "beta_schedule": scheduler_config.get("beta_schedule", "linear"),
        "prediction_type": scheduler_config.get("prediction_type", "epsilon"),
    }
    # With the cosine schedule ᾱ at t=999 is ~1e-8: an ε error there is amplified ~1e4×
    # in the predicted x₀. Each sampler gets the standard guard: clip x₀ to the data
    # range [-1, 1] (improved-diffusion's clip_denoised; dynamic thresholding with a
    # maximum of 1), DPM-Solver's λ clipping for cosine schedules, or starting below 999.
    if name == "dpmsolver++":
        return DPMSolverMultistepScheduler(
            **base,
            algorithm_type="dpmsolver++",
            solver_order=2,
            thresholding=True,
            sample_max_value=1.0,
            lambda_min_clipped=-5.1,
        )
    if name == "ddim":
        return DDIMScheduler(**base, clip_sample=True, steps_offset=1)
    if name == "unipc":
        return UniPCMultistepScheduler(**base, thresholding=True, sample_max_value=1.0)
    if name == "euler":
        return EulerDiscreteScheduler(**base, timestep_spacing="leading", steps_offset=1)
    if name == "ddpm":
        return DDPMScheduler(**base, clip_sample=True)
    raise UsageError(f"unknown sampler {name!r}; choose from {', '.join(SAMPLERS)}")


@dataclass
class Denoiser:
    """A model placed on its device and dtype for sampling (see :func:`prepare_denoiser`)."""

    net: torch.nn.Module  # what is called (compiled or not)
    module: torch.nn.Module  # the underlying UNet (its class embedding may be swapped)
    device: torch.device
    dtype: torch.dtype
    scheduler_config: dict[str, Any]
    null_label: int
    sample_size: int
    compiled: bool
    attributes: AttributeSet = dataclasses.field(default_factory=AttributeSet)
    cache: CompileCache | None = None  # the persistent compile cache, when compiled
    cuda_graphs: bool = False  # replayed as CUDA graphs (compiled: mode="reduce-overhead")
    warnings: list[str] = dataclasses.field(default_factory=list)  # e.g. a corrupt cache
    compile_mode: str = "default"  # torch.compile's mode, when compiled
    strict: bool = False  # a failed compilation raises (an explicit --compile)
    model_config: ModelConfig | None = None  # for sizing CPU batches (None: not checked)
    _deep_net: torch.nn.Module | None = dataclasses.field(default=None, repr=False)
    _fitted: dict[tuple[int, int], int] = dataclasses.field(default_factory=dict, repr=False)

    def deep_net(self) -> torch.nn.Module:
        """The UNet split for deep-feature caching (:class:`~facediff.deep_cache.
        DeepCacheUNet`), compiled or replayed as CUDA graphs as :attr:`net` is; built on
        first use."""
        if self._deep_net is None:
            split = DeepCacheUNet(self.module)
            if self.compiled:
                mode = None if self.compile_mode == "default" else self.compile_mode
                compiled = torch.compile(split, dynamic=False, mode=mode)
                self._deep_net = CompiledOrEager(compiled, split, strict=self.strict)
            elif self.cuda_graphs:
                self._deep_net = GraphedForward(split, self.device)
            else:
                self._deep_net = split
        return self._deep_net

    def fitting_batch(self, rows: int, batch_size: int) -> tuple[int, str | None]:
        """The images per batch that fit in memory when each runs ``rows`` UNet rows:
        ``batch_size`` off the CPU or where it fits, else fewer, with a warning the first
        time (:func:`facediff.sample_memory.fitting_batch`)."""
        if self.device.type != "cpu" or self.model_config is None:
            return batch_size, None
        if (rows, batch_size) in self._fitted:
            return self._fitted[rows, batch_size], None
        fitted, note = sample_memory.fitting_batch(
            self.module, self.model_config, self.dtype, rows, batch_size
        )
        self._fitted[rows, batch_size] = fitted
        return fitted, note

    def request(
        self,
        attributes: Mapping[str, str | None] | AttributeRequest | None = None,
        guidance: Mapping[str, float] | None = None,
    ) -> AttributeRequest:
        """Check a request of attribute values (and per-attribute guidance scales)
        against this model's attributes (see :func:`resolve_request`)."""
        return as_request(self.attributes, attributes, guidance)


def as_request(
    model_attributes: AttributeSet,
    attributes: Mapping[str, str | None] | AttributeRequest | None = None,
    guidance: Mapping[str, float] | None = None,
) -> AttributeRequest:
    """A request of attribute values (and per-attribute guidance scales), or one already
    resolved, checked against ``model_attributes`` (see :func:`resolve_request`)."""
    if isinstance(attributes, AttributeRequest):
        if guidance:
            return resolve_request(model_attributes, attributes.values, guidance)
        return attributes
    return resolve_request(model_attributes, attributes, guidance)


def compile_choice(
    model_config: Mapping[str, Any],
    device: torch.device,
    dtype: torch.dtype,
    setting: bool | None,
    *,
    images: int,
    batch_size: int | None = None,
    shapes: Sequence[int] | None = None,
    deep_cache: int = 1,
    cuda_graphs: bool | None = None,
    cache_root: Path | None = None,
) -> tuple[bool, CompileCache | None, str]:
    """Whether a sampling job compiles its UNet, the compile cache it uses (None for
    ``setting=False``) and torch.compile's mode: what :func:`prepare_denoiser` decides
    (see there for the arguments), for a benchmark to ask too. The cache is keyed by the
    batch sizes the UNet is called with and the mode; with the deep cache (``deep_cache``
    above 1) each shape compiles two graphs, the whole pass and the shallow one, under a
    key of their own. ``cache_root`` replaces the user's cache folder
    (:func:`facediff.compile_cache.cache_root`)."""
    # Asked for with --compile: the compiled model is replayed (reduce-overhead).
    graphed = wanted(cuda_graphs, needs_gpu(device), compiled=True)
    mode = "reduce-overhead" if graphed else "default"
    if setting is False:
        return False, None, mode
    batch = max(1, min(batch_size or SampleConfig().batch_size, max(images, 1)))
    split = deep_cache > 1
    cache = compile_cache(
        dict(model_config),
        device,
        dtype,
        tuple(shapes) if shapes else batch,
        f"{mode}+deep-cache" if split else mode,
        root=cache_root,
    )
    graphs = len(shapes or (batch,)) * (2 if split else 1)
    chosen = should_compile(setting, device, images=images, warm=cache.warm, shapes=graphs)
    return chosen, cache, mode


def prepare_denoiser(
    loaded: LoadedModel,
    *,
    device: str | torch.device | None = None,
    precision: str = "auto",
    compile: bool | None = False,
    images: int = 0,
    batch_size: int | None = None,
    cuda_graphs: bool | None = None,
    shapes: Sequence[int] | None = None,
    deep_cache: int = 1,
) -> Denoiser:
    """Put the UNet on ``device`` in eval mode with weights in the sampling dtype.

    On CUDA the weights are cast to bf16 (fp16 where bf16 is unsupported) rather than
    autocast, and use channels-last memory. A model :func:`~facediff.checkpoint.
    load_for_inference` already placed (``device=``/``dtype=``) is used as it is, else a
    copy is moved; the :class:`LoadedModel` itself is left untouched unless nothing needs
    to change.

    ``compile``: ``True``/``False`` or ``None`` for auto, decided by
    :func:`facediff.compile_cache.should_compile` from the job's ``images``, the batch
    sizes the UNet will be called with (``shapes``, from :func:`forward_batches`: one
    compilation each) and whether the compile cache of those shapes is warm. Without
    ``shapes`` the job counts as one shape, keyed by ``batch_size`` images per batch. A
    compiled model uses the persistent compile cache (:mod:`facediff.compile_cache`).
    ``cuda_graphs`` (CUDA only; ``True`` elsewhere puts a note in ``warnings``) replays the
    UNet forward as a CUDA graph per input shape: an eager model through
    :class:`~facediff.cuda_graphs.GraphedForward` (no compilation), a compiled one with
    ``mode="reduce-overhead"``; ``None`` (auto) graphs an eager model on a GPU and leaves a
    compiled one as it is (:func:`facediff.cuda_graphs.wanted`). If compiling fails, auto
    goes on eagerly with a warning and ``compile=True`` raises
    :class:`~facediff.compile_cache.CompileFailed` (see
    :class:`~facediff.compile_cache.CompiledOrEager`).
    ``deep_cache`` (the job's :attr:`SampleConfig.deep_cache`): above 1 the job compiles
    the split UNet's two passes per shape (:meth:`Denoiser.deep_net`), under a compile
    cache of their own.
    """
    dev = device if isinstance(device, torch.device) else resolve_device(device or "auto")
    dtype = resolve_precision(precision, dev)
    module = loaded.unet  # with attributes, loading attached its summed class embedding
    param = next(module.parameters())
    if param.device != dev or param.dtype != dtype:
        # nn.Module.to, not ModelMixin.to: the latter warns about fp32-only modules (none here).
        module = torch.nn.Module.to(copy.deepcopy(module), device=dev, dtype=dtype)
    if dev.type == "cuda":
        module = module.to(memory_format=torch.channels_last)
    module.eval().requires_grad_(False)
    no_gpu = needs_gpu(dev)
    asked = compile
    compile, cache, mode = compile_choice(
        loaded.model_config.to_dict(),
        dev,
        dtype,
        compile,
        images=images,
        batch_size=batch_size,
        shapes=shapes,
        deep_cache=deep_cache,
        cuda_graphs=cuda_graphs,
    )
    graphs = wanted(cuda_graphs, no_gpu, compiled=compile)
    if compile:
        assert cache is not None
        cache.activate()
        cache.load()
        compiled = torch.compile(module, dynamic=False, mode=None if mode == "default" else mode)
        net = CompiledOrEager(compiled, module, strict=asked is True)
    else:
        net, cache = module, None
        if graphs:
            net = GraphedForward(module, dev)
    notes = list(cache.warnings) if cache else []
    if cuda_graphs and no_gpu:
        notes.append(f"note: {no_gpu}: sampling on {dev.type} without them")
    enable_fast_math(dev, autotune=autotunes(images, bool(compile)))
    return Denoiser(
        net=net,
        module=module,
        device=dev,
        dtype=dtype,
        scheduler_config=dict(loaded.scheduler_config),
        null_label=loaded.categories.null_label,
        sample_size=int(loaded.model_config.sample_size),
        compiled=bool(compile),
        attributes=loaded.attributes,
        cache=cache,
        cuda_graphs=graphs,
        warnings=notes,
        compile_mode=mode,
        strict=asked is True,
        model_config=loaded.model_config,
    )


Job = tuple[Mix, AttributeRequest | None, int]  # (mix, attribute request, images)


def prepare_for(
    loaded: LoadedModel,
    config: SampleConfig,
    jobs: Sequence[Job],
    *,
    device: str | torch.device | None = None,
) -> Denoiser:
    """:func:`prepare_denoiser` for sampling ``jobs`` ``(mix, request, images)`` with
    ``config`` (its device, precision, compile, CUDA-graph and deep-cache settings): the
    compile choice weighs their images and the UNet batch sizes they call
    (:func:`forward_batches`, one compilation each). ``device`` (already resolved)
    replaces ``config.device``."""
    return prepare_denoiser(
        loaded,
        device=config.device if device is None else device,
        precision=config.precision,
        compile=config.compile,
        cuda_graphs=config.cuda_graphs,
        images=sum(n for *_, n in jobs),
        batch_size=config.batch_size,
        shapes=forward_batches(jobs, config, loaded.categories.null_label) or None,
        deep_cache=config.deep_cache,
    )


def forward_batches(
    jobs: Iterable[Job],
    config: SampleConfig,
    null_label: int,
) -> tuple[int, ...]:
    """The batch sizes the UNet is called with when :func:`generate` samples each job
    ``(mix, attribute request, images)`` with ``config``: conditions per image × images
    per batch (a compiled model pads the last batch to full size), for the guided steps
    and, with a guidance interval, for the unguided ones (counted even if every step falls
    inside the interval). A compiled model compiles once per size."""
    sizes = set()
    for mix, request, images in jobs:
        if images < 1:
            continue
        batch = min(config.batch_size, images)
        cond = mix_conditions(mix, config.mix_mode, float(config.guidance), null_label, request)
        sizes.add(len(cond.labels) * batch)
        if config.guidance_interval is not None and cond.unconditional:
            sizes.add(len(unguided(cond).labels) * batch)
    return tuple(sorted(sizes))


def mix_conditions(
    mix: Mix,
    mode: str,
    guidance: float,
    null_label: int,
    request: AttributeRequest | None = None,
) -> Conditions:
    """The conditions evaluated for ``mix`` under an attribute ``request`` (see
    :func:`facediff.guidance.conditions`)."""
    request = request or AttributeRequest()
    return conditions(
        mix.indices,
        mix.weights,
        mode,
        guidance,
        null_label,
        attributes=request.indices,
        nulls=request.nulls,
        attribute_scales=request.scales,
    )


def seeded_noise(seeds: Sequence[int], size: int) -> tuple[list[torch.Generator], torch.Tensor]:
    """Per-image CPU generators and their first draw: N×3×S×S standard normal noise.

    Row i comes from a generator seeded with ``seeds[i]``; the generators are returned so
    a stochastic sampler keeps drawing each image's step noise from its own stream.
    """
    generators = [torch.Generator().manual_seed(int(s)) for s in seeds]
    return generators, initial_noise(generators, (len(generators), 3, size, size))


def _sample_batch(
    den: Denoiser,
    seeds: Sequence[int],
    cond: Conditions,
    *,
    sampler: str,
    steps: int,
    guidance: float,
    guidance_interval: tuple[float, float] | None = None,
    spacing: str = "time",
    deep_cache: int = 1,
) -> torch.Tensor:
    """Run one batch from its seeds to uint8 images on the CPU."""
    generators, noise = seeded_noise(seeds, den.sample_size)
    noise = noise.to(den.device)
    if den.device.type == "cuda":
        noise = noise.contiguous(memory_format=torch.channels_last)
    x = denoise(
        den.net if deep_cache == 1 else den.deep_net(),
        make_scheduler(sampler, den.scheduler_config),
        noise,
        cond,
        steps=steps,
        guidance=guidance,
        dtype=den.dtype,
        generator=generators,
        guidance_interval=guidance_interval,
        spacing=spacing,
        deep_cache=deep_cache,
    )
    # On CUDA the latents are channels-last; callers get plain N×3×S×S tensors (safetensors
    # refuses to save a strided view).
    return to_uint8(x).contiguous().cpu()


#: Seeds are whole numbers in [0, 2**63 - 1] (torch generators take 64 bits).
MAX_SEED = 2**63 - 1


def max_steps(sampler: str, scheduler_config: dict[str, Any], spacing: str = "time") -> int:
    """The most inference steps ``sampler`` can take on the run's noise schedule (DDIM's
    ``steps_offset`` of 1 would index one past the schedule at its training length); with
    ``logsnr`` spacing, one per timestep from the first one down to 0."""
    n = int(scheduler_config.get("num_train_timesteps", 1000))
    limit = n - 1 if sampler == "ddim" else n
    if spacing == "logsnr":
        scheduler = make_scheduler(sampler, scheduler_config)
        scheduler.set_timesteps(limit)
        limit = min(limit, int(scheduler.timesteps[0]) + 1)
    return limit


def check_seeds(seeds: Sequence[int]) -> None:
    """Refuse seeds a torch generator cannot take."""
    bad = next((s for s in seeds if not 0 <= int(s) <= MAX_SEED), None)
    if bad is not None:
        raise invalid("seed", bad, f"seeds run from 0 to {MAX_SEED}")


def generate(
    loaded: LoadedModel | Denoiser,
    mix: Mix,
    seeds: Sequence[int],
    config: SampleConfig | None = None,
    *,
    attributes: Mapping[str, str | None] | AttributeRequest | None = None,
    attribute_guidance: Mapping[str, float] | None = None,
    progress: ProgressCallback | None = None,
    **settings: Any,
) -> torch.Tensor:
    """Generate ``len(seeds)`` images of ``mix``: uint8 N×3×S×S on the CPU.

    ``attributes`` maps attribute names to requested values (``{"gender": "female",
    "age": "60-69"}``; an age such as ``"63"`` picks its bucket); the others are left
    free (their null). They ride along with every category term unless
    ``attribute_guidance`` gives one its own scale (``{"gender": 5.0}``), which makes it
    a term of its own. A model without attributes refuses any request.

    Sampled with ``config`` (default :class:`SampleConfig`), any ``settings`` replacing
    its fields: ``generate(model, mix, seeds, steps=10)``. Its ``n`` and ``seed`` are not
    used: ``seeds`` says which images to make.

    ``batch_size`` counts images per batch (each runs ``len(conditions)`` network
    evaluations per step in one forward). A compiled denoiser always runs full batches
    of ``min(batch_size, len(seeds))`` images (the last one padded with throwaway
    seeds) so it sees one shape per mix size. Pass a
    :class:`Denoiser` from :func:`prepare_denoiser` to reuse a placed/compiled model.
    :func:`generate_batches` gives the images batch by batch, as they are done.
    """
    chunks = [
        images
        for _, images in generate_batches(
            loaded,
            mix,
            seeds,
            config,
            attributes=attributes,
            attribute_guidance=attribute_guidance,
            progress=progress,
            **settings,
        )
    ]
    size = loaded.sample_size if isinstance(loaded, Denoiser) else loaded.model_config.sample_size
    return _stack(chunks, int(size))


def _stack(chunks: list[torch.Tensor], size: int) -> torch.Tensor:
    """The batches' images as one N×3×S×S uint8 tensor (0×3×S×S for none)."""
    if chunks:
        return torch.cat(chunks)
    return torch.empty((0, 3, size, size), dtype=torch.uint8)


def generate_batches(
    loaded: LoadedModel | Denoiser,
    mix: Mix,
    seeds: Sequence[int],
    config: SampleConfig | None = None,
    *,
    attributes: Mapping[str, str | None] | AttributeRequest | None = None,
    attribute_guidance: Mapping[str, float] | None = None,
    progress: ProgressCallback | None = None,
    **settings: Any,
) -> Iterator[tuple[list[int], torch.Tensor]]:
    """:func:`generate`, one batch at a time: ``(seeds, images)`` of each batch as soon as
    it is done, so a caller can keep the images before the next batch starts. Progress
    counts a batch once the caller has taken it."""
    c = dataclasses.replace(config or SampleConfig(), **settings)
    request = as_request(loaded.attributes, attributes, attribute_guidance)
    den = (
        loaded
        if isinstance(loaded, Denoiser)
        else prepare_for(loaded, c, [(mix, request, len(seeds))])
    )
    limit = max_steps(c.sampler, den.scheduler_config, c.spacing)
    if c.steps > limit:
        spaced = " with logsnr spacing" if c.spacing == "logsnr" else ""
        raise invalid(
            "steps", c.steps, f"the {c.sampler} sampler takes at most {limit}{spaced} on this model"
        )
    seeds = [int(s) for s in seeds]
    check_seeds(seeds)
    cond = mix_conditions(mix, c.mix_mode, float(c.guidance), den.null_label, request)
    task = f"sample {request.label(mix.label)}"
    emit(progress, Progress(task, 0, len(seeds)))
    batch_size, note = den.fitting_batch(len(cond.labels), min(c.batch_size, max(1, len(seeds))))
    if note:
        emit(progress, Progress(task, 0, len(seeds), message=note))
    for start in range(0, len(seeds), batch_size):
        part = seeds[start : start + batch_size]
        pad = batch_size - len(part) if den.compiled else 0
        with blended_row(den.module, cond), torch.inference_mode():
            images = _sample_batch(
                den,
                part + [0] * pad,
                cond,
                sampler=c.sampler,
                steps=c.steps,
                guidance=c.guidance,
                guidance_interval=c.guidance_interval,
                spacing=c.spacing,
                deep_cache=c.deep_cache,
            )
        yield part, images[: len(part)]
        emit(progress, Progress(task, start + len(part), len(seeds)))
    if den.cache is not None:  # kernels compiled for a new shape: keep them for next time
        den.cache.save()


def generate_each(
    den: Denoiser,
    mixes: Sequence[Mix],
    seeds: Sequence[int],
    config: SampleConfig,
    *,
    attributes: Mapping[str, str | None] | AttributeRequest | None = None,
    attribute_guidance: Mapping[str, float] | None = None,
    progress: ProgressCallback | None = None,
) -> Iterator[tuple[Mix, torch.Tensor]]:
    """``(mix, images)`` for each mix in turn, sampled with ``config``'s settings and
    the attribute request (see :func:`generate`).

    Progress is reported as one ``sample`` task over all mixes.
    """
    each = _each_mix(den, mixes, seeds, config, attributes, attribute_guidance, progress)
    for mix, batches in each:
        yield mix, _stack([images for _, images in batches], den.sample_size)


def generate_each_batch(
    den: Denoiser,
    mixes: Sequence[Mix],
    seeds: Sequence[int],
    config: SampleConfig,
    *,
    attributes: Mapping[str, str | None] | AttributeRequest | None = None,
    attribute_guidance: Mapping[str, float] | None = None,
    progress: ProgressCallback | None = None,
) -> Iterator[tuple[Mix, list[int], torch.Tensor]]:
    """:func:`generate_each`, one batch at a time: ``(mix, seeds, images)`` of each batch
    as soon as it is done (see :func:`generate_batches`)."""
    each = _each_mix(den, mixes, seeds, config, attributes, attribute_guidance, progress)
    for mix, batches in each:
        for part, images in batches:
            yield mix, part, images


def _each_mix(den, mixes, seeds, config, attributes, attribute_guidance, progress):
    """``(mix, its batches)`` in turn, progress relayed as one ``sample`` task."""
    total = len(mixes) * len(seeds)
    request = den.request(attributes, attribute_guidance)  # checked before the first mix
    for k, mix in enumerate(mixes):
        done = k * len(seeds)
        relay = (
            None
            if progress is None
            else lambda e, done=done: progress(
                Progress("sample", done + e.completed, total, e.info, e.message)
            )
        )
        yield mix, generate_batches(den, mix, seeds, config, attributes=request, progress=relay)
