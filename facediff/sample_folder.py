"""``sample``: generate faces per category and mix, write PNGs and a JSON record.

Layout (one folder per mix label, one file per seed)::

    <out>/<LABEL>/<LABEL>_<seed>.png     e.g. generated_images/OIE/OIE_3.png
    <out>/samples.json                   what was generated, how, and from which model

``LABEL`` is the mix label (``I``, ``OI``, ``O70I30``…). Seeds run from ``seed`` to
``seed + n - 1``; the image for a seed is the same whatever ``n`` or the batch size
(see :mod:`facediff.generation`). Existing images are never overwritten unless ``force``.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from PIL import Image

from facediff.categories import CategoryMap
from facediff.checkpoint import LoadedModel, load_for_inference, write_json_atomic
from facediff.config import SampleConfig
from facediff.errors import FacediffError, UsageError
from facediff.generation import generate_each, prepare_denoiser
from facediff.mix import Mix, default_mixes, parse_mix
from facediff.progress import Progress, ProgressCallback, emit

RECORD_FILE = "samples.json"


@dataclass
class SampleResult:
    out: Path
    record_path: Path
    files: dict[str, list[Path]] = field(default_factory=dict)  # by mix label
    seconds: float = 0.0

    @property
    def images(self) -> int:
        return sum(len(v) for v in self.files.values())


def resolve_mixes(
    categories: CategoryMap,
    mixes: Sequence[str] | None = None,
    single: Sequence[str] | None = None,
) -> list[Mix]:
    """Mixes to sample: the named categories, then the mix specs; all defaults if neither."""
    if not mixes and not single:
        return default_mixes(categories)
    out = [parse_mix(c, categories) for c in single or ()]
    for spec in mixes or ():
        m = parse_mix(spec, categories)
        if all(m.label != o.label for o in out):
            out.append(m)
    return out


def image_path(out: Path, label: str, seed: int) -> Path:
    return Path(out) / label / f"{label}_{seed}.png"


def save_png(image: torch.Tensor, path: Path) -> None:
    """Write one uint8 3×H×W image as PNG."""
    Image.fromarray(image.permute(1, 2, 0).contiguous().numpy()).save(path)


def _check_free(out: Path, mixes: list[Mix], seeds: list[int], force: bool) -> None:
    if force:
        return
    for m in mixes:
        for s in seeds:
            p = image_path(out, m.label, s)
            if p.exists():
                raise FacediffError(f"{p} already exists; use --force to overwrite")


def _record_entry(
    loaded: LoadedModel, config: SampleConfig, mixes: list[Mix], seeds: list[int], seconds: float
) -> dict[str, Any]:
    return {
        "model": str(loaded.source),
        "step": loaded.step,
        "weights": loaded.weights,
        "sampler": config.sampler,
        "steps": config.steps,
        "guidance": config.guidance,
        "mix_mode": config.mix_mode,
        "size": loaded.model_config.sample_size,
        "seeds": seeds,
        "mixes": {m.label: m.to_dict(loaded.categories)["weights"] for m in mixes},
        "seconds": round(seconds, 3),
    }


def write_record(out: Path, entry: dict[str, Any]) -> Path:
    """Append ``entry`` to ``<out>/samples.json`` (``{"entries": [...]}``, newest last)."""
    path = Path(out) / RECORD_FILE
    entries: list[Any] = []
    if path.is_file():
        try:
            entries = list(json.loads(path.read_text(encoding="utf-8")).get("entries", []))
        except (OSError, ValueError, AttributeError):
            entries = []  # an unreadable record is replaced, never fatal
    write_json_atomic(path, {"entries": [*entries, entry]})
    return path


def sample(
    run: Path,
    out: Path,
    config: SampleConfig,
    *,
    mixes: list[str] | None = None,
    categories: list[str] | None = None,
    checkpoint_step: int | None = None,
    force: bool = False,
    progress: ProgressCallback | None = None,
) -> SampleResult:
    """Generate ``config.n`` images for every requested category and mix into ``out``."""
    if config.n < 1:
        raise UsageError(f"-n must be at least 1; got {config.n}")
    loaded = load_for_inference(Path(run), step=checkpoint_step, use_ema=config.use_ema)
    plan = resolve_mixes(loaded.categories, mixes, categories)
    seeds = list(range(config.seed, config.seed + config.n))
    out = Path(out)
    _check_free(out, plan, seeds, force)
    den = prepare_denoiser(
        loaded, device=config.device, precision=config.precision, compile=config.compile
    )
    result = SampleResult(out=out, record_path=out / RECORD_FILE)
    total = len(plan) * len(seeds)
    emit(progress, Progress("sample", 0, total))
    start = time.perf_counter()
    for mix, images in generate_each(den, plan, seeds, config, progress=progress):
        (out / mix.label).mkdir(parents=True, exist_ok=True)
        paths = [image_path(out, mix.label, s) for s in seeds]
        for img, p in zip(images, paths):
            save_png(img, p)
        result.files[mix.label] = paths
    result.seconds = time.perf_counter() - start
    write_record(out, _record_entry(loaded, config, plan, seeds, result.seconds))
    return result
