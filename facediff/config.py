"""One source of defaults: frozen dataclasses for model, training and sampling.

The CLI reads its option defaults from these classes (nanoGPT's ``GPTConfig``,
improved-diffusion's defaults dict), so a default lives in exactly one place.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from facediff.errors import FacediffError

PACKED_FILE = "dataset.safetensors"
MANIFEST_FILE = "manifest.json"
DATASET_VERSION = 1
DEFAULT_DATA_DIR = "data/faces"
DEFAULT_RUN_DIR = "runs/faces"
DEFAULT_SAMPLES_DIR = "generated_images"


@dataclass(frozen=True)
class PrepareConfig:
    size: int = 64
    workers: int = 0  # 0 = one per CPU core
    force: bool = False
    max_pixels: int = 64_000_000  # decompression-bomb bound, in source pixels


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


def preset(name: str, *, sample_size: int, num_categories: int) -> ModelConfig:
    """The named preset at the data's resolution and class count."""
    if name not in PRESETS:
        raise FacediffError(f"unknown preset {name!r}; choose from {', '.join(PRESETS)}")
    return dataclasses.replace(
        PRESETS[name], sample_size=sample_size, num_categories=num_categories
    )


@dataclass(frozen=True)
class TrainConfig:
    """Everything that shapes a training run (recorded in ``config.json``)."""

    preset: str = DEFAULT_PRESET
    epochs: int | None = None  # None with max_steps None -> DEFAULT_EPOCHS
    max_steps: int | None = None
    batch_size: int = 64
    lr: float = 2e-4
    lr_warmup_steps: int = 500
    weight_decay: float = 0.0
    adam_betas: tuple[float, float] = (0.9, 0.999)
    grad_clip: float = 1.0
    precision: str = "auto"  # auto | bf16 | fp16 | fp32
    compile: bool = False
    ema_decay: float = 0.9995
    ema_warmup_steps: int = 1000
    cond_drop: float = 0.1
    prediction_type: str = "epsilon"  # epsilon | v_prediction
    beta_schedule: str = "squaredcos_cap_v2"
    num_train_timesteps: int = 1000
    min_snr_gamma: float | None = 5.0
    checkpoint_every: int = 1000  # steps
    keep: int = 3
    preview_every: int = 1000  # steps
    log_every: int = 50  # steps
    balance: bool = False
    flip: bool = True
    seed: int = 0
    device: str = "auto"  # auto | cpu | cuda

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


DEFAULT_EPOCHS = 100


@dataclass(frozen=True)
class SampleConfig:
    sampler: str = "dpmsolver++"  # dpmsolver++ | ddim | unipc | euler | ddpm
    steps: int = 25
    guidance: float = 3.0
    mix_mode: str = "compose"  # compose | blend
    n: int = 8
    seed: int = 0
    batch_size: int = 64
    use_ema: bool = True
    precision: str = "auto"
    compile: bool = False
    device: str = "auto"


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
