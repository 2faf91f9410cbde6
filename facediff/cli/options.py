"""Option types shared by several commands (one definition each; huggingface_hub's
``cli/_cli_utils.py`` aliases). Defaults come from :mod:`facediff.config`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from facediff.categories import CategoryMap, resolve_categories
from facediff.config import (
    DEFAULT_DATA_DIR,
    DEFAULT_RUN_DIR,
    MIX_MODES,
    SAMPLERS,
    SPACINGS,
    SampleConfig,
    field_default,
    noise_interval,
)

CategoryOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--category",
        "-c",
        metavar="PREFIX=NAME:CODE",
        help="A category, repeated for each (replaces the default indian/asian/white map).",
    ),
]
CategoriesFileOpt = Annotated[
    Path | None,
    typer.Option("--categories-file", help="JSON file listing categories (prefix, name, code)."),
]
DataArg = Annotated[
    Path,
    typer.Argument(help="Prepared dataset folder (written by `facediff prepare`)."),
]
RunArg = Annotated[
    Path,
    typer.Argument(help="Run folder (written by `facediff train`) or an exported model folder."),
]
DeviceOpt = Annotated[str, typer.Option("--device", help="auto, cpu, cuda or cuda:N.")]
PrecisionOpt = Annotated[
    str, typer.Option("--precision", help="auto (bf16 on GPUs that support it), bf16, fp16, fp32.")
]
MAX_SEED = 2**63 - 1  # what a torch generator takes (facediff.generation.MAX_SEED)
SeedOpt = Annotated[int, typer.Option("--seed", min=0, max=MAX_SEED, help="Random seed.")]

DEFAULT_DATA = Path(DEFAULT_DATA_DIR)
DEFAULT_RUN = Path(DEFAULT_RUN_DIR)


def categories_from(options: list[str] | None, file: Path | None) -> CategoryMap:
    """The category map chosen on the command line."""
    return resolve_categories(options, file)


def check_choice(option: str, value: str, choices: tuple[str, ...] | list[str]) -> str:
    """Validate a string option against its allowed values (one-line error otherwise)."""
    if value not in choices:
        raise typer.BadParameter(f"{value!r} is not one of {', '.join(choices)}", param_hint=option)
    return value


def check_range(option: str, value: int, low: int, high: int | None = None) -> None:
    if value < low or (high is not None and value > high):
        bounds = f"between {low} and {high}" if high is not None else f">= {low}"
        raise typer.BadParameter(f"must be {bounds}, got {value}", param_hint=option)


# Sampling options shared by `sample`, `grid` and `evaluate`.
MixOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--mix",
        "-m",
        metavar="SPEC",
        help="A mix: OIE, O+I or O:0.7,I:0.3 (repeatable).",
    ),
]
SamplerOpt = Annotated[
    str, typer.Option("--sampler", help="dpmsolver++, ddim, unipc, euler or ddpm.")
]
StepsOpt = Annotated[int, typer.Option("--steps", help="Sampler steps (ddpm: up to 1000).")]
SpacingOpt = Annotated[
    str,
    typer.Option(
        "--spacing",
        help="Where the steps lie: time (evenly in time) or logsnr (evenly in log-SNR, "
        "DPM-Solver's low-resolution choice; dpmsolver++, euler and ddpm).",
    ),
]
GuidanceOpt = Annotated[
    float, typer.Option("--guidance", help="Classifier-free guidance scale (1 = none).")
]
GuidanceIntervalOpt = Annotated[
    str | None,
    typer.Option(
        "--guidance-interval",
        metavar="LO,HI",
        help="Guide only the steps whose noise level σ lies in (LO, HI], e.g. 0.28,5.42 "
        "(Kynkäänniemi et al. 2024); the other steps skip the unconditional evaluation. "
        "Default: every step.",
        show_default=False,
    ),
]
DeepCacheOpt = Annotated[
    int,
    typer.Option(
        "--deep-cache",
        metavar="N",
        help="Run the whole UNet every N steps and only its shallow blocks, on the deep "
        "features kept from then, in between (DeepCache, Ma et al. 2024): fewer FLOPs, "
        "approximate images. 1 = the whole UNet at every step (exact).",
    ),
]
MixModeOpt = Annotated[
    str, typer.Option("--mix-mode", help="compose (guidance over each category) or blend.")
]
BatchOpt = Annotated[int, typer.Option("--batch-size", help="Images per batch.")]
CheckpointOpt = Annotated[
    int | None,
    typer.Option("--checkpoint", metavar="STEP", help="Checkpoint step (default: the newest)."),
]
NoEmaOpt = Annotated[bool, typer.Option("--no-ema", help="Use the raw weights, not the EMA.")]
NO_EMA_DEFAULT = not field_default(SampleConfig, "use_ema")
CompileOpt = Annotated[
    bool | None,
    typer.Option(
        "--compile/--no-compile",
        help="torch.compile the model, with a persistent compile cache. Default: auto "
        "(on a GPU when the job is long enough to pay for compiling, per batch size: fewer "
        "images once this model's compile cache is warm; never on the CPU).",
        show_default=False,
    ),
]
CudaGraphsOpt = Annotated[
    bool | None,
    typer.Option(
        "--cuda-graphs/--no-cuda-graphs",
        help="Replay the model as a CUDA graph per batch shape after 2 eager calls: less "
        "per-step overhead for small batches, no compiling, the same images. GPU only. "
        "Default: auto (on a GPU unless the model is compiled; never on the CPU).",
        show_default=False,
    ),
]
ForceOpt = Annotated[bool, typer.Option("--force", help="Overwrite existing results.")]
QuietOpt = Annotated[
    bool, typer.Option("--quiet", "-q", help="No progress output (warnings and results only).")
]
JsonOpt = Annotated[
    bool, typer.Option("--json", help="Print the summary as JSON on stdout (no tables).")
]


def print_json(summary: dict) -> None:
    """A summary as one JSON document on stdout (paths as strings)."""
    import json

    print(json.dumps(summary, indent=2, default=str), flush=True)


#: The sampling options whose names are SampleConfig fields.
_SAMPLE_OPTIONS = (
    "sampler",
    "steps",
    "spacing",
    "guidance",
    "deep_cache",
    "mix_mode",
    "seed",
    "batch_size",
    "precision",
    "compile",
    "cuda_graphs",
    "device",
)


def guidance_interval(text: str | None) -> tuple[float, float] | None:
    """``--guidance-interval LO,HI`` as two noise levels (checked), or None."""
    if text is None:
        return None
    interval = noise_interval(text)
    if interval is None:
        raise typer.BadParameter(
            f"{text!r} is not LO,HI with 0 <= LO < HI (e.g. 0.28,5.42)",
            param_hint="--guidance-interval",
        )
    return interval


def sample_config(options: dict[str, Any], *, n: int | None = None) -> SampleConfig:
    """A :class:`SampleConfig` (which checks its values) from a command's sampling
    options, passed as its ``locals()``; ``n`` is its count of images per mix, if any."""
    check_choice("--sampler", options["sampler"], SAMPLERS)
    check_choice("--mix-mode", options["mix_mode"], MIX_MODES)
    check_choice("--spacing", options["spacing"], SPACINGS)
    settings = {name: options[name] for name in _SAMPLE_OPTIONS}
    settings["guidance_interval"] = guidance_interval(options["guidance_interval"])
    if n is not None:
        settings["n"] = n
    return SampleConfig(use_ema=not options["no_ema"], **settings)


# Attribute options shared by `sample` and `grid` (issue 14).
GenderOpt = Annotated[
    str | None,
    typer.Option("--gender", metavar="VALUE", help="Requested gender: female or male (f, m)."),
]
AgeOpt = Annotated[
    str | None,
    typer.Option(
        "--age", metavar="VALUE", help="Requested age: a bucket (60-69) or an age in it (63)."
    ),
]
AttributeGuidanceOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--attribute-guidance",
        metavar="NAME=SCALE",
        help="Give a requested attribute its own guidance term and scale (repeatable), "
        "e.g. gender=5; by default it rides along with each category.",
    ),
]


def attribute_options(
    gender: str | None, age: str | None, guidance: list[str] | None
) -> tuple[dict[str, str], dict[str, float]]:
    """The requested attribute values and per-attribute guidance scales of ``--gender``,
    ``--age`` and ``--attribute-guidance NAME=SCALE``."""
    wanted = {k: v for k, v in (("gender", gender), ("age", age)) if v is not None}
    scales: dict[str, float] = {}
    for item in guidance or []:
        name, eq, value = item.partition("=")
        name = name.strip()
        try:
            scale = float(value) if eq and name else None
        except ValueError:
            scale = None
        if scale is None:
            raise typer.BadParameter(
                f"{item!r} is not NAME=SCALE (e.g. gender=5)", param_hint="--attribute-guidance"
            )
        if name in scales:
            raise typer.BadParameter(f"{name} given twice", param_hint="--attribute-guidance")
        scales[name] = scale
    return wanted, scales
