"""``FaceDiffPipeline``: a facediff model as a diffusers ``DiffusionPipeline``.

With facediff installed::

    from facediff.pipeline import FaceDiffPipeline
    pipe = FaceDiffPipeline.from_pretrained("faces-model")
    images = pipe(mix="OIE", generator=[torch.Generator().manual_seed(s) for s in range(4)]).images

With diffusers alone, from a folder written by ``facediff export`` (it holds a copy of
this file as ``pipeline.py`` and of ``facediff/guidance.py``, ``facediff/attributes.py`` and
``facediff/deep_cache.py`` next to it)::

    from diffusers import DiffusionPipeline
    pipe = DiffusionPipeline.from_pretrained(
        "faces-model", custom_pipeline="faces-model/pipeline.py", trust_remote_code=True
    )

Guidance, mixes, noise and the denoising loop are those of ``facediff sample`` (the
functions in :mod:`facediff.guidance`), so the same per-image seeds give the same images.
This file imports only torch, diffusers and its sibling ``guidance``, ``attributes`` and
``deep_cache`` modules (relatively, so the copy in an exported folder finds the copies next to it).

A model trained with attributes (``config.attributes``, the ``AttributeSet`` list) gets its
summed class embedding back on load and takes ``attributes={"gender": "female", "age":
"60-69"}`` and ``attribute_guidance={"gender": 5.0}`` as ``facediff sample`` does.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from diffusers import DiffusionPipeline, ImagePipelineOutput, UNet2DModel
from diffusers.schedulers.scheduling_utils import SchedulerMixin
from PIL import Image

from .attributes import AttributeSet, embedding_sizes
from .deep_cache import DeepCacheUNet
from .guidance import (
    Generators,
    attach_attributes,
    blended_row,
    check_deep_cache,
    check_interval,
    check_settings,
    conditions,
    denoise,
    find_category,
    initial_noise,
    parse_mix_spec,
    to_uint8,
    to_unit,
)

OUTPUT_TYPES = ("pil", "np", "pt")
SETTING_NAMES = ("mix_mode", "num_inference_steps", "guidance_scale")


def _whole(value: Any, name: str) -> int:
    """``value`` (an int, a numpy or 0-d torch number) as an int; ``ValueError`` naming
    ``name`` for a fraction (``2.5`` would otherwise be cut to 2 without a word), inf,
    nan or a non-number."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        number = math.nan
    if isinstance(value, bool) or not number.is_integer():
        raise ValueError(f"{name} must be a whole number; got {value!r}")
    return int(number)


def _weight(key: object, weight: Any) -> float:
    try:
        return float(weight)
    except (TypeError, ValueError):
        raise ValueError(f"mix= weight of {key!r} must be a number; got {weight!r}") from None


class FaceDiffPipeline(DiffusionPipeline):
    """Class-conditional faces per category and hybrid mixes of categories.

    Components: ``unet`` (a ``UNet2DModel`` with one class embedding per category plus
    a last, null one used for guidance) and ``scheduler`` (any diffusers scheduler).
    Config: ``categories`` (a list of ``{"prefix", "name", "code"}`` in label order),
    ``sample_defaults`` (``num_inference_steps``, ``guidance_scale``, ``mix_mode`` used
    when a call leaves them out; ``facediff export`` writes facediff's defaults) and
    ``attributes`` (the model's attributes, ``[{"name", "values", "edges"?}]``; empty for a
    category-only model). With attributes the UNet's class table (categories + ∅, then
    each attribute's values + its ∅) is summed by ``SummedEmbedding``, attached here.
    """

    model_cpu_offload_seq = "unet"

    def __init__(
        self,
        unet: UNet2DModel,
        scheduler: SchedulerMixin,
        categories: list[dict[str, str]] | None = None,
        sample_defaults: dict[str, Any] | None = None,
        attributes: list[dict[str, Any]] | None = None,
        training_counts: list[int] | None = None,
    ) -> None:
        super().__init__()
        model_attributes = AttributeSet.from_list(attributes)
        if model_attributes:  # the saved UNet is a plain UNet2DModel: sum its table again
            sizes = embedding_sizes(len(categories or []), model_attributes.sizes)
            if sum(sizes) != unet.class_embedding.weight.shape[0]:
                raise ValueError(
                    f"the UNet has {unet.class_embedding.weight.shape[0]} class embeddings; "
                    f"its categories and attributes need {sum(sizes)}"
                )
            attach_attributes(unet, sizes)
        self.register_modules(unet=unet, scheduler=scheduler)
        self.register_to_config(
            categories=list(categories or []),
            sample_defaults=dict(sample_defaults or {}),
            attributes=model_attributes.to_list(),
            training_counts=None if training_counts is None else [int(n) for n in training_counts],
        )

    @property
    def attributes(self) -> AttributeSet:
        """The attributes the model was trained with (empty: category only)."""
        return AttributeSet.from_list(getattr(self.config, "attributes", None))

    @property
    def codes(self) -> list[str]:
        return [c["code"] for c in self.config.categories]

    @property
    def names(self) -> list[str]:
        return [c["name"] for c in self.config.categories]

    def resolve_mix(
        self,
        category: str | int | None = None,
        mix: str | Mapping[str, float] | Sequence[str] | None = None,
    ) -> tuple[tuple[int, ...], tuple[float, ...]]:
        """Label indices and normalised weights for ``category=`` or ``mix=``.

        ``category``: a code (``"O"``), a name (``"Oriental"``) or a label index.
        ``mix``: a spec (``"OIE"``, ``"O+I"``, ``"O:0.7,I:0.3"``, ``"Oriental+Indian"``),
        a mapping of codes or names to weights, or a list of codes or names (equal weights).
        """
        if not self.config.categories:
            raise ValueError("this pipeline has no categories in its config")
        if (category is None) == (mix is None):
            raise ValueError("pass exactly one of category= or mix=")
        if category is not None:
            if isinstance(category, bool):
                raise ValueError(f"category must be a code, a name or an index; got {category}")
            if isinstance(category, int):
                if not 0 <= category < len(self.codes):
                    last = len(self.codes) - 1
                    raise ValueError(f"category index {category} is outside 0..{last}")
                return (category,), (1.0,)
            return (find_category(str(category), self.codes, self.names),), (1.0,)
        if isinstance(mix, Mapping):
            spec = ",".join(f"{k}:{_weight(k, w)!r}" for k, w in mix.items())
        elif isinstance(mix, str):
            spec = mix
        else:
            spec = "+".join(str(k) for k in mix)
        return parse_mix_spec(spec, self.codes, self.names)

    def resolve_attributes(
        self,
        attributes: Mapping[str, str | None] | None = None,
        attribute_guidance: Mapping[str, float] | None = None,
    ) -> tuple[tuple[int, ...], tuple[int, ...], tuple[float | None, ...]]:
        """Value index per attribute (its null when free), the nulls, and each one's own
        guidance scale (None: rides along with the category terms)."""
        model = self.attributes
        wanted = {k: v for k, v in (attributes or {}).items() if v is not None}
        scales = dict(attribute_guidance or {})
        if (wanted or scales) and not model:
            raise ValueError("this pipeline's model was trained without attributes")
        for name in scales:
            model.get(name)  # ValueError naming the attributes there are
            if name not in wanted:
                raise ValueError(
                    f"attribute_guidance gives {name} its own scale but attributes= does not "
                    f"request a {name}"
                )
        indices = model.request(wanted)
        return indices, model.nulls(), tuple(scales.get(n) for n in model.names)

    def _default(self, name: str, value: Any) -> Any:
        if value is not None:
            return value
        defaults = self.config.sample_defaults or {}
        if name not in defaults:
            raise ValueError(f"pass {name}= (this pipeline's config has no default for it)")
        return defaults[name]

    @torch.no_grad()
    def __call__(
        self,
        category: str | int | None = None,
        mix: str | Mapping[str, float] | Sequence[str] | None = None,
        mix_mode: str | None = None,
        num_inference_steps: int | None = None,
        guidance_scale: float | None = None,
        batch_size: int | None = None,
        generator: Generators = None,
        attributes: Mapping[str, str | None] | None = None,
        attribute_guidance: Mapping[str, float] | None = None,
        guidance_interval: tuple[float, float] | None = None,
        spacing: str | None = None,
        deep_cache: int | None = None,
        output_type: str = "pil",
        return_dict: bool = True,
    ) -> ImagePipelineOutput | tuple[Any]:
        """Generate faces of one category or of a mix.

        Args:
            category: a code, a name or a label index (or use ``mix``).
            mix: a mix spec, a mapping of categories to weights, or a list of categories.
            mix_mode: ``"compose"`` (guidance summed over the mix's categories) or
                ``"blend"`` (one interpolated class embedding).
            num_inference_steps: scheduler steps.
            guidance_scale: classifier-free guidance scale (1 = no guidance).
            batch_size: images to generate (default: one per generator, else 1).
            generator: one ``torch.Generator`` for the batch, or one per image; with one
                per image, image ``i`` depends only on ``generator[i]`` (as ``facediff
                sample --seed`` does with ``torch.Generator().manual_seed(seed)``).
            output_type: ``"pil"`` (list of PIL images), ``"np"`` (N×H×W×3 floats in
                [0, 1]) or ``"pt"`` (N×3×H×W floats in [0, 1]).
            return_dict: return an ``ImagePipelineOutput`` rather than a tuple.
            attributes: requested attribute values of a model trained with attributes,
                e.g. ``{"gender": "female", "age": "60-69"}`` (an age such as ``"63"``
                picks its bucket); attributes not given are left free.
            attribute_guidance: an own guidance scale per requested attribute, e.g.
                ``{"gender": 5.0}``: that attribute becomes its own guidance term instead
                of riding along with the category terms.
            guidance_interval: ``(σ_lo, σ_hi)``: guide only the steps whose noise level
                σ = √((1 − ᾱ)/ᾱ) lies in ``(σ_lo, σ_hi]`` (Kynkäänniemi et al. 2024); the
                others run the category terms alone, with fewer network evaluations.
                Default: the export's ``sample_defaults`` (None: every step).
            spacing: where the steps lie: ``"time"`` (evenly in time, the scheduler's own
                placement) or ``"logsnr"`` (evenly in log-SNR, for schedulers that take
                custom timesteps, such as DPM-Solver++). Default: the export's
                ``sample_defaults`` (else ``"time"``).
            deep_cache: run the whole UNet every N steps and only its shallow branch on
                the kept deep features between (DeepCache, Ma et al. 2024; ``facediff
                sample --deep-cache``). Default: the export's ``sample_defaults`` (else 1:
                the whole UNet at every step).
        """
        indices, weights = self.resolve_mix(category, mix)
        self._warn_untrained(indices)
        values, nulls, scales = self.resolve_attributes(attributes, attribute_guidance)
        mode = self._default("mix_mode", mix_mode)
        steps = _whole(self._default("num_inference_steps", num_inference_steps), SETTING_NAMES[1])
        guidance = float(self._default("guidance_scale", guidance_scale))
        check_settings(mode, steps, guidance, names=SETTING_NAMES)
        limit = self._max_steps()
        if steps > limit:  # past the schedule the scheduler indexes out of its tables
            raise ValueError(
                f"num_inference_steps must be at most {limit} with this scheduler (its "
                f"num_train_timesteps); got {steps}"
            )
        if guidance_interval is None:  # exports without one guide every step
            guidance_interval = (self.config.sample_defaults or {}).get("guidance_interval")
        interval = check_interval(guidance_interval, "guidance_interval")
        if deep_cache is None:
            deep_cache = (self.config.sample_defaults or {}).get("deep_cache", 1)
        every = check_deep_cache(deep_cache, "deep_cache")
        # checked by denoise (guidance.set_timesteps) before the first evaluation
        spacing = spacing or (self.config.sample_defaults or {}).get("spacing", "time")
        if output_type not in OUTPUT_TYPES:
            raise ValueError(f"output_type must be one of {', '.join(OUTPUT_TYPES)}")
        n = self._batch_size(batch_size, generator)
        size = self.unet.config.sample_size
        height, width = (size, size) if isinstance(size, int) else tuple(size)
        shape = (n, self.unet.config.in_channels, height, width)
        device = self._execution_device
        noise = initial_noise(generator, shape).to(device)
        cond = conditions(
            indices,
            weights,
            mode,
            guidance,
            len(self.codes),
            attributes=values,
            nulls=nulls,
            attribute_scales=scales,
        )
        with blended_row(self.unet, cond):
            x = denoise(
                self.unet if every == 1 else DeepCacheUNet(self.unet),
                self.scheduler,
                noise,
                cond,
                steps=steps,
                guidance=guidance,
                dtype=self.unet.dtype,
                generator=generator,
                progress=self.progress_bar,
                guidance_interval=interval,
                spacing=spacing,
                deep_cache=every,
            )
        self.maybe_free_model_hooks()
        if output_type == "pil":
            pixels = to_uint8(x).permute(0, 2, 3, 1).cpu().numpy()
            images: Any = [Image.fromarray(p) for p in pixels]
        elif output_type == "np":
            images = to_unit(x).permute(0, 2, 3, 1).cpu().numpy()
        else:
            images = to_unit(x).cpu()
        if not return_dict:
            return (images,)
        return ImagePipelineOutput(images=images)

    def _warn_untrained(self, indices: Sequence[int]) -> None:
        """A ``UserWarning`` when the mix holds a category the model saw no image of
        (``training_counts``, recorded by exports since facediff recorded them)."""
        counts = getattr(self.config, "training_counts", None)
        if not isinstance(counts, list) or len(counts) != len(self.codes):
            return
        for k in indices:
            if counts[k] == 0:
                code, name = self.codes[k], self.names[k]
                warnings.warn(
                    f"the model never trained on an image of {name} ({code}): {code} samples "
                    f"and mixes with {code} come from an untrained label",
                    UserWarning,
                    stacklevel=3,
                )

    def _max_steps(self) -> int:
        """The most steps the scheduler takes: one per training timestep, less its
        ``steps_offset`` (DDIM's 1 would index one past the schedule)."""
        config = self.scheduler.config
        n = int(getattr(config, "num_train_timesteps", 1000))
        return n - int(getattr(config, "steps_offset", 0) or 0)

    @staticmethod
    def _batch_size(batch_size: int | None, generator: Generators) -> int:
        if generator is not None and not isinstance(generator, (torch.Generator, Sequence)):
            raise ValueError(
                "generator must be a torch.Generator or a list of them (one per image); "
                f"got {type(generator).__name__}"
            )
        if isinstance(generator, Sequence):
            if batch_size is not None and batch_size != len(generator):
                raise ValueError(
                    f"batch_size {batch_size} does not match the {len(generator)} generators"
                )
            if not generator:
                raise ValueError("generator= is an empty list")
            return len(generator)
        n = 1 if batch_size is None else _whole(batch_size, "batch_size")
        if n < 1:
            raise ValueError(f"batch_size must be at least 1; got {n}")
        return n
