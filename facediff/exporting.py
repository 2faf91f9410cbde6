"""``export``: a standard diffusers folder that loads without facediff (DESIGN §5).

Layout::

    <out>/unet/          UNet2DModel.save_pretrained (config.json + safetensors)
    <out>/scheduler/     the run's DDPMScheduler (scheduler_config.json)
    <out>/facediff.json  categories, codes, null label, size, step, model and scheduler
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from diffusers import DDPMScheduler

from facediff.checkpoint import EXPORT_INFO_FILE, load_for_inference, write_json_atomic
from facediff.errors import FacediffError

EXPORT_FORMAT_VERSION = 1


@dataclass
class ExportResult:
    out: Path
    step: int
    weights: str  # "ema" or "model"
    source: Path


def export(
    run: Path,
    out: Path,
    *,
    checkpoint_step: int | None = None,
    use_ema: bool = True,
    force: bool = False,
) -> ExportResult:
    """Write ``run``'s checkpoint (EMA weights by default) as a diffusers folder ``out``."""
    out = Path(out)
    if out.exists() and any(out.iterdir()) and not force:
        raise FacediffError(f"{out} already exists and is not empty; use --force to overwrite")
    loaded = load_for_inference(Path(run), step=checkpoint_step, use_ema=use_ema)
    if loaded.weights == "export":
        raise FacediffError(f"{run} is already an exported model")
    out.mkdir(parents=True, exist_ok=True)
    loaded.unet.save_pretrained(out / "unet", safe_serialization=True)
    scheduler = DDPMScheduler(**loaded.scheduler_config)
    scheduler.save_pretrained(out / "scheduler")
    cats = loaded.categories
    write_json_atomic(
        out / EXPORT_INFO_FILE,
        {
            "facediff_export_version": EXPORT_FORMAT_VERSION,
            "categories": cats.to_list(),
            "codes": {c.code: i for i, c in enumerate(cats)},
            "null_label": cats.null_label,
            "size": loaded.model_config.sample_size,
            "step": loaded.step,
            "weights": loaded.weights,
            "model": loaded.model_config.to_dict(),
            "scheduler": loaded.scheduler_config,
        },
    )
    return ExportResult(out=out, step=loaded.step, weights=loaded.weights, source=loaded.source)
