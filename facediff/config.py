"""One source of defaults: frozen dataclasses for model, training and sampling.

The CLI reads its option defaults from these classes (nanoGPT's ``GPTConfig``,
improved-diffusion's defaults dict), so a default lives in exactly one place.
"""

from __future__ import annotations

import dataclasses
import math
import re
from dataclasses import dataclass, field
from typing import Any

from facediff.errors import ConfigError, UsageError, invalid, unknown

PACKED_FILE = "dataset.safetensors"
HELDOUT_FILE = "heldout.safetensors"  # prepare --holdout: photos training never reads
MAX_HOLDOUT = 0.5  # the largest --holdout fraction
MANIFEST_FILE = "manifest.json"
DATASET_VERSION = 1
DEFAULT_DATA_DIR = "data/faces"
DEFAULT_RUN_DIR = "runs/faces"
DEFAULT_SAMPLES_DIR = "generated_images"

#: Bounds of the prepared image side, in pixels.
MIN_SIZE, MAX_SIZE = 16, 512
#: Defaults of `facediff demo-data`.
DEMO_PER_CATEGORY = 200
DEMO_SIZE = 64
#: Columns (seeds) of a grid, and samples per category and mix that evaluate judges.
DEFAULT_GRID_SEEDS = 8
DEFAULT_SAMPLES_PER_GROUP = 100
#: Samples evaluate draws per category × requested attribute value (models with attributes):
#: 3 categories × (2 genders + 10 age decades) × 32 = 1152 samples; 32 puts a hit rate's
#: 95% interval within about ±0.17.
DEFAULT_SAMPLES_PER_CELL = 32
#: Images in a grid's mix strip.
DEFAULT_STRIP_STEPS = 7


@dataclass(frozen=True)
class PrepareConfig:
    size: int = 64
    workers: int = 0  # 0 = one per CPU core
    force: bool = False
    max_pixels: int = 64_000_000  # decompression-bomb bound, in source pixels
    min_side: int = 16  # sources with a smaller side are skipped ("too small")
    max_aspect: float = 4.0  # longer side / shorter side beyond this: skipped
    holdout: float = 0.0  # fraction of photos kept out of training, for evaluate


@dataclass(frozen=True)
class ModelConfig:
    """Architecture of the ``diffusers.UNet2DModel`` (class count comes from the data)."""

    sample_size: int = 64
    block_out_channels: tuple[int, ...] = (128, 256, 256, 512)
    layers_per_block: int = 2
    down_block_types: tuple[str, ...] = (
        "DownBlock2D",
        "DownBlock2D",
        "AttnDownBlock2D",
        "AttnDownBlock2D",
    )
    up_block_types: tuple[str, ...] = (
        "AttnUpBlock2D",
        "AttnUpBlock2D",
        "UpBlock2D",
        "UpBlock2D",
    )
    attention_head_dim: int = 64
    norm_num_groups: int = 32
    dropout: float = 0.0
    resnet_time_scale_shift: str = "scale_shift"
    num_categories: int = 3  # the UNet gets num_categories + 1 class embeddings (last = null)
    # Values per attribute (facediff/attributes.py), null excluded; () = category only.
    attribute_sizes: tuple[int, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ModelConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        kw = {k: (tuple(v) if isinstance(v, list) else v) for k, v in d.items() if k in known}
        return cls(**kw)


#: Named architectures. Sizes are measured and documented in the README.
PRESETS: dict[str, ModelConfig] = {
    # For CPU tests and the demo: small enough to learn synthetic faces in minutes on 2 cores.
    "tiny": ModelConfig(
        block_out_channels=(32, 64, 64),
        layers_per_block=1,
        down_block_types=("DownBlock2D", "DownBlock2D", "AttnDownBlock2D"),
        up_block_types=("AttnUpBlock2D", "UpBlock2D", "UpBlock2D"),
        attention_head_dim=32,
        norm_num_groups=16,
    ),
    # The quality preset for 64x64 faces.
    "base": ModelConfig(),
    # The architecture the original project used: UNet2DModel's defaults.
    "seed": ModelConfig(
        block_out_channels=(224, 448, 672, 896),
        layers_per_block=2,
        down_block_types=("DownBlock2D", "AttnDownBlock2D", "AttnDownBlock2D", "AttnDownBlock2D"),
        up_block_types=("AttnUpBlock2D", "AttnUpBlock2D", "AttnUpBlock2D", "UpBlock2D"),
        attention_head_dim=8,
        norm_num_groups=32,
        resnet_time_scale_shift="default",
    ),
    # diffusers' examples/unconditional_image_generation/train_unconditional.py at 64x64.
    "diffusers-example": ModelConfig(
        block_out_channels=(128, 128, 256, 256, 512, 512),
        layers_per_block=2,
        down_block_types=(
            "DownBlock2D",
            "DownBlock2D",
            "DownBlock2D",
            "DownBlock2D",
            "AttnDownBlock2D",
            "DownBlock2D",
        ),
        up_block_types=(
            "UpBlock2D",
            "AttnUpBlock2D",
            "UpBlock2D",
            "UpBlock2D",
            "UpBlock2D",
            "UpBlock2D",
        ),
        attention_head_dim=8,
        norm_num_groups=32,
        resnet_time_scale_shift="default",
    ),
}
DEFAULT_PRESET = "base"


#: Presets that grow extra full-resolution levels above 64 px, so attention stays at
#: 16x16 and below (self-attention cost grows with the 4th power of the side).
_RESOLUTION_ADAPTIVE = ("tiny", "base")


def preset(name: str, *, sample_size: int, num_categories: int) -> ModelConfig:
    """The named preset at the data's resolution and class count.

    For ``tiny`` and ``base`` every doubling of the side above 64 px adds one leading
    ``DownBlock2D``/``UpBlock2D`` level (first level's width), so 128 and 256 px keep
    attention at the same low resolutions as 64 px.
    """
    if name not in PRESETS:
        raise UsageError(f"unknown preset {name!r}; choose from {', '.join(PRESETS)}")
    cfg = PRESETS[name]
    extra = 0
    while name in _RESOLUTION_ADAPTIVE and (64 << extra) < sample_size:
        extra += 1
    if extra:
        cfg = dataclasses.replace(
            cfg,
            block_out_channels=(cfg.block_out_channels[0],) * extra + cfg.block_out_channels,
            down_block_types=("DownBlock2D",) * extra + cfg.down_block_types,
            up_block_types=cfg.up_block_types + ("UpBlock2D",) * extra,
        )
    factor = 2 ** (len(cfg.block_out_channels) - 1)
    if sample_size < factor or sample_size % factor:
        raise UsageError(
            f"preset {name!r} needs an image size divisible by {factor}; the data is {sample_size}"
        )
    return dataclasses.replace(cfg, sample_size=sample_size, num_categories=num_categories)


PREDICTION_TYPES = ("epsilon", "v_prediction")
PRECISIONS = ("auto", "bf16", "fp16", "fp32")
SAMPLERS = ("dpmsolver++", "ddim", "unipc", "euler", "ddpm")
MIX_MODES = ("compose", "blend")
#: Step placements (facediff.guidance.set_timesteps): evenly in time or in log-SNR.
SPACINGS = ("time", "logsnr")
#: Samplers whose diffusers scheduler takes custom timesteps, as ``logsnr`` needs.
LOGSNR_SAMPLERS = ("dpmsolver++", "euler", "ddpm")


def takes_spacing(sampler: str, spacing: str) -> bool:
    """Whether ``sampler`` can place its steps by ``spacing`` (``logsnr`` needs a scheduler
    that takes custom timesteps)."""
    return spacing != "logsnr" or sampler in LOGSNR_SAMPLERS


BETA_SCHEDULES = ("linear", "scaled_linear", "squaredcos_cap_v2")


@dataclass(frozen=True)
class TrainConfig:
    """Everything that shapes a training run (recorded in ``config.json``).

    ``batch_size`` is per process: under ``torchrun`` the global batch is
    ``batch_size × world_size``. With neither ``epochs`` nor ``max_steps`` set, training
    runs :data:`DEFAULT_EPOCHS` epochs.
    """

    preset: str = DEFAULT_PRESET
    epochs: int | None = None
    max_steps: int | None = None
    batch_size: int = 32
    lr: float = 2e-4
    lr_warmup_steps: int = 100
    weight_decay: float = 0.0
    adam_betas: tuple[float, float] = (0.9, 0.999)
    grad_clip: float = 1.0
    precision: str = "auto"  # auto | bf16 | fp16 | fp32
    compile: bool | None = None  # None: auto (facediff.compile_cache.should_compile)
    # replay the update as a CUDA graph (facediff.cuda_graphs); None: auto, on where it
    # applies (one GPU, bf16 or fp32), silently off elsewhere
    cuda_graphs: bool | None = None
    ema_decay: float = 0.9995  # cap of the warm-up schedule min(decay, (1+t)/(10+t))
    cond_drop: float = 0.1
    # Attribute labels dropped to their own null, each column independently: one rate
    # for every attribute, or {name: rate} (names left out, and None: ``cond_drop``).
    attribute_dropout: float | dict[str, float] | None = None
    prediction_type: str = "v_prediction"  # epsilon | v_prediction
    beta_schedule: str = "squaredcos_cap_v2"
    num_train_timesteps: int = 1000
    min_snr_gamma: float | None = 5.0  # None = plain MSE
    checkpoint_every: int = 1000  # steps
    keep: int = 3
    preview_every: int = 1000  # steps; 0 = no previews
    preview_columns: int = 4  # images per category in a preview
    preview_steps: int = 20  # DDIM steps of a preview
    preview_guidance: float = 3.0
    log_every: int = 50  # steps
    balance: bool = False
    flip: bool = True
    seed: int = 0
    device: str = "auto"  # auto | cpu | cuda | cuda:N

    def __post_init__(self) -> None:
        _check_train_config(self)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrainConfig:
        """Rebuild from :meth:`to_dict` output (unknown keys ignored)."""
        known = {f.name for f in dataclasses.fields(cls)}
        kw = {k: (tuple(v) if isinstance(v, list) else v) for k, v in d.items() if k in known}
        return cls(**kw)


#: Fields that define the model and objective: a run cannot resume with other values.
ARCHITECTURE_FIELDS = ("preset", "prediction_type", "beta_schedule", "num_train_timesteps")


def _check_train_config(c: TrainConfig) -> None:
    if c.preset not in PRESETS:
        raise invalid("preset", c.preset, f"choose from {', '.join(PRESETS)}")
    if type(c.seed) is not int or not 0 <= c.seed <= 2**63 - 1:
        raise invalid("seed", c.seed, f"use a whole number from 0 to {2**63 - 1}")
    if c.epochs is not None and c.max_steps is not None:
        raise ConfigError("use either {} or {}, not both", "epochs", "max_steps")
    for name in (
        "epochs",
        "max_steps",
        "batch_size",
        "checkpoint_every",
        "keep",
        "log_every",
        "num_train_timesteps",
        "preview_columns",
        "preview_steps",
    ):
        _check_positive_int(c, name)
    for name in ("preview_every", "lr_warmup_steps"):
        if not isinstance(getattr(c, name), int) or getattr(c, name) < 0:
            raise invalid(name, getattr(c, name), "must be an integer >= 0")
    if not (math.isfinite(c.lr) and c.lr > 0):  # inf/nan: the first step diverges
        raise invalid("lr", c.lr, "must be a finite number > 0")
    if not 0.0 <= c.cond_drop < 1.0:
        raise invalid("cond_drop", c.cond_drop, "must be in [0, 1)")
    _check_attribute_dropout(c.attribute_dropout)
    if not 0.0 <= c.ema_decay < 1.0:
        raise invalid("ema_decay", c.ema_decay, "must be in [0, 1)")
    if c.min_snr_gamma is not None and not c.min_snr_gamma > 0:
        raise invalid("min_snr_gamma", c.min_snr_gamma, "must be > 0 (or omitted)")
    if not c.grad_clip > 0:  # nan would make every gradient nan
        raise invalid("grad_clip", c.grad_clip, "must be > 0")
    if not (math.isfinite(c.weight_decay) and c.weight_decay >= 0):
        raise invalid("weight_decay", c.weight_decay, "must be a finite number >= 0")
    if len(c.adam_betas) != 2 or not all(0 <= b < 1 for b in c.adam_betas):
        raise invalid("adam_betas", c.adam_betas, "use two numbers in [0, 1)")
    _check_choice(c, "precision", PRECISIONS)
    if c.prediction_type not in PREDICTION_TYPES:
        raise invalid("prediction_type", c.prediction_type, f"use {' or '.join(PREDICTION_TYPES)}")
    check_device_name(c.device)
    if c.beta_schedule not in BETA_SCHEDULES:
        raise invalid("beta_schedule", c.beta_schedule, f"use {', '.join(BETA_SCHEDULES)}")


def _check_attribute_dropout(value: Any) -> None:
    rates = value.values() if isinstance(value, dict) else [] if value is None else [value]
    if isinstance(value, dict) and not all(isinstance(k, str) and k for k in value):
        raise invalid("attribute_dropout", value, "attribute names must be text")
    for rate in rates:
        if isinstance(rate, bool) or not isinstance(rate, (int, float)) or not 0 <= rate < 1:
            raise invalid("attribute_dropout", value, "rates must be in [0, 1)")


def parse_attribute_dropout(text: str) -> float | dict[str, float]:
    """``"0.2"`` (every attribute) or ``"gender=0.3,age=0.1"`` (per attribute)."""
    try:
        if "=" not in text:
            return float(text)
        pairs = [part.split("=", 1) for part in text.split(",")]
        rates = {name.strip(): float(rate) for name, rate in pairs}
        if len(rates) != len(pairs):
            raise ValueError("an attribute is named twice")
    except ValueError:
        raise invalid(
            "attribute_dropout", text, "use a rate (0.2) or name=rate pairs (gender=0.3,age=0.1)"
        ) from None
    return rates


def attribute_drop_rates(config: TrainConfig, names: tuple[str, ...]) -> tuple[float, ...]:
    """The dropout rate of each attribute in ``names`` (a model's attribute order);
    :class:`ConfigError` when ``attribute_dropout`` names an attribute not there."""
    value = config.attribute_dropout
    if value is None:
        return tuple(config.cond_drop for _ in names)
    if not isinstance(value, dict):
        return tuple(float(value) for _ in names)
    extra = sorted(set(value) - set(names))
    if extra:
        have = ", ".join(names) or "none"
        raise invalid(
            "attribute_dropout", value, f"no attribute {extra[0]!r} (the data has: {have})"
        )
    return tuple(float(value.get(name, config.cond_drop)) for name in names)


def _check_positive_int(config: Any, name: str) -> None:
    value = getattr(config, name)
    if value is not None and (not isinstance(value, int) or value < 1):
        raise invalid(name, value, "must be a positive integer")


def _check_choice(config: Any, name: str, choices: tuple[str, ...]) -> None:
    value = getattr(config, name)
    if value not in choices:
        raise invalid(name, value, f"use {', '.join(choices)}")


DEFAULT_EPOCHS = 100
_DEVICE_RE = re.compile(r"auto|cpu|cuda(:\d+)?")


def check_device_name(name: str) -> str:
    """Check the form of a device name (whether the device exists is checked later)."""
    if not isinstance(name, str) or not _DEVICE_RE.fullmatch(name):
        raise invalid("device", name, "use auto, cpu, cuda or cuda:N")
    return name


def noise_interval(value: Any) -> tuple[float, float] | None:
    """``(lo, hi)`` as floats when ``value`` is two noise levels (a pair or the text
    ``"LO,HI"``) with ``0 <= lo < hi`` (``hi`` may be infinite), else None (the check of
    :func:`facediff.guidance.check_interval`, kept here so the config stays free of torch)."""
    if isinstance(value, str):
        value = value.split(",")
    try:
        lo, hi = (float(v) for v in value)
    except (TypeError, ValueError):
        return None
    return (lo, hi) if 0 <= lo < hi and not math.isinf(lo) else None


#: The :class:`SampleConfig` fields that change the images, not how fast they are made.
IMAGE_SETTINGS = (
    "sampler",
    "steps",
    "spacing",
    "guidance",
    "guidance_interval",
    "deep_cache",
    "mix_mode",
    "seed",
    "use_ema",
)


@dataclass(frozen=True)
class SampleConfig:
    """How to sample: the settings of ``sample``, ``grid``, ``evaluate`` and ``generate``."""

    sampler: str = "dpmsolver++"  # one of SAMPLERS
    steps: int = 25
    # where the steps lie: evenly in time, or evenly in log-SNR (one of SPACINGS)
    spacing: str = "time"
    guidance: float = 3.0
    # (σ_lo, σ_hi): guide only the steps with σ_lo < σ <= σ_hi; None: every step
    guidance_interval: tuple[float, float] | None = None
    # run the whole UNet every N steps, its shallow branch on the kept deep features
    # between (facediff.deep_cache); 1: every step whole (exact). 3 kept FID within chance
    # on base at 64 px and cuts the FLOPs per image to 58% (docs/speed.md)
    deep_cache: int = 3
    mix_mode: str = "compose"  # one of MIX_MODES
    n: int = 8  # images per category and mix
    seed: int = 0
    batch_size: int = 64  # images per batch
    use_ema: bool = True
    precision: str = "auto"
    compile: bool | None = None  # None: auto (facediff.compile_cache.should_compile)
    # replay the UNet as CUDA graphs (facediff.cuda_graphs); None: auto, on a GPU when
    # the model runs uncompiled
    cuda_graphs: bool | None = None
    device: str = "auto"

    def __post_init__(self) -> None:
        if self.sampler not in SAMPLERS:
            raise unknown("sampler", self.sampler, SAMPLERS)
        if self.mix_mode not in MIX_MODES:
            raise unknown("mix_mode", self.mix_mode, MIX_MODES)
        if self.spacing not in SPACINGS:
            raise unknown("spacing", self.spacing, SPACINGS)
        if not takes_spacing(self.sampler, self.spacing):
            raise invalid(
                "spacing",
                self.spacing,
                f"needs the {', '.join(LOGSNR_SAMPLERS[:-1])} or {LOGSNR_SAMPLERS[-1]} sampler, "
                f"not {self.sampler}",
            )
        for name in ("steps", "n", "batch_size", "deep_cache"):
            _check_positive_int(self, name)
        if not (math.isfinite(self.guidance) and self.guidance >= 0):  # inf/nan: black images
            raise invalid("guidance", self.guidance, "must be a finite number >= 0")
        if self.guidance_interval is not None:
            interval = noise_interval(self.guidance_interval)
            if interval is None:
                raise invalid(
                    "guidance_interval",
                    self.guidance_interval,
                    "must be two noise levels LO,HI with 0 <= LO < HI",
                )
            object.__setattr__(self, "guidance_interval", interval)
        if type(self.seed) is not int or not 0 <= self.seed <= 2**63 - 1:
            raise invalid("seed", self.seed, f"must lie in 0 … {2**63 - 1}")
        if self.seed + self.n > 2**63:  # image k's seed is seed + k
            raise invalid(
                "n", self.n, f"with --seed {self.seed} the seeds seed … seed + n − 1 pass 2**63 − 1"
            )
        _check_choice(self, "precision", PRECISIONS)
        check_device_name(self.device)

    def changed_image_settings(self) -> list[str]:
        """The fields set away from their defaults that change the images (``steps``,
        ``guidance``…; not the device, precision, compile, CUDA graphs or batch size): a
        command that reads images instead of sampling them refuses these."""
        default = SampleConfig()
        return [k for k in IMAGE_SETTINGS if getattr(self, k) != getattr(default, k)]

    def recorded_extras(self) -> dict[str, Any]:
        """The settings a record (``samples.json``, an evaluation report, an export's
        defaults) names only when set: a guidance interval, a spacing other than ``time``, a
        deep cache other than 1 (so the default's 3 is named). Absent, they mean what records
        made before them meant: every step guided, time, the whole UNet at every step."""
        extras: dict[str, Any] = {}
        if self.guidance_interval is not None:
            extras["guidance_interval"] = list(self.guidance_interval)
        if self.spacing != "time":
            extras["spacing"] = self.spacing
        if self.deep_cache != 1:
            extras["deep_cache"] = self.deep_cache
        return extras


def field_default(cls: type, name: str) -> Any:
    """The default of dataclass field ``name`` (for CLI option defaults)."""
    f = {f.name: f for f in dataclasses.fields(cls)}[name]
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:  # type: ignore[misc]
        return f.default_factory()  # type: ignore[misc]
    raise KeyError(name)


__all__ = [
    "DEFAULT_EPOCHS",
    "DEFAULT_PRESET",
    "PRESETS",
    "ModelConfig",
    "PrepareConfig",
    "SampleConfig",
    "TrainConfig",
    "field",
    "field_default",
    "preset",
]
