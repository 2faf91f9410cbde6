"""What ``evaluate`` judges: the prepared data a run recorded, and samples per mix,
generated from the run or read from a ``facediff sample`` folder."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from facediff.categories import CategoryMap
from facediff.checkpoint import RUN_CONFIG_FILE, latest_checkpoint, load_for_inference, read_state
from facediff.config import DEFAULT_DATA_DIR, SampleConfig
from facediff.errors import CheckpointError, FacediffError
from facediff.mix import Mix, default_mixes, parse_mix
from facediff.progress import ProgressCallback

SAMPLES_RECORD = "samples.json"


@dataclass
class Group:
    """Samples of one mix (a single category is a one-term mix) and the judge's view."""

    mix: Mix
    images: torch.Tensor  # uint8 N×3×S×S
    probs: torch.Tensor | None = None  # N×K
    feats: torch.Tensor | None = None  # judge features N×D
    inception: torch.Tensor | None = None  # N×2048 when available


def recorded_data_path(run: Path) -> Path:
    """The prepared data a run was trained on (config.json, else the newest checkpoint's
    state.json); :data:`DEFAULT_DATA_DIR` when neither records one."""
    run = Path(run)
    try:
        path = json.loads((run / RUN_CONFIG_FILE).read_text(encoding="utf-8"))["data"]["path"]
        if path:
            return Path(path)
    except (OSError, ValueError, KeyError, TypeError):
        pass
    ckpt = latest_checkpoint(run)
    if ckpt is not None:
        try:
            path = read_state(ckpt)["data"]["path"]
            if path:
                return Path(path)
        except (CheckpointError, KeyError, TypeError):
            pass
    return Path(DEFAULT_DATA_DIR)


def resolve_mixes(specs: list[str] | None, categories: CategoryMap) -> list[Mix]:
    if not specs:
        return default_mixes(categories)
    mixes: list[Mix] = []
    for spec in specs:
        m = parse_mix(spec, categories)
        if all(m.label != o.label for o in mixes):
            mixes.append(m)
    return mixes


def generate_groups(
    run: Path,
    mixes: list[Mix],
    per_group: int,
    config: SampleConfig,
    device: torch.device,
    categories: CategoryMap,
    progress: ProgressCallback | None,
) -> list[Group]:
    from facediff.generation import generate_each, prepare_denoiser  # diffusers is heavy

    loaded = load_for_inference(run, use_ema=config.use_ema)
    if loaded.categories.to_list() != categories.to_list():
        raise FacediffError(
            f"the run's categories ({loaded.categories.codes}) differ from the data's "
            f"({categories.codes}); pass the --data it was trained on"
        )
    den = prepare_denoiser(
        loaded, device=device, precision=config.precision, compile=config.compile
    )
    seeds = list(range(config.seed, config.seed + per_group))
    return [
        Group(mix, images)
        for mix, images in generate_each(den, mixes, seeds, config, progress=progress)
    ]


def _recorded_mixes(folder: Path, categories: CategoryMap) -> dict[str, Mix]:
    """Mixes listed in a ``facediff sample`` record (``samples.json``), by label."""
    try:
        record = json.loads((folder / SAMPLES_RECORD).read_text(encoding="utf-8"))
        entries = record.get("entries", [])
    except (OSError, ValueError, AttributeError):
        return {}
    found: dict[str, Mix] = {}
    for entry in entries:
        for label, weights in (entry.get("mixes") or {}).items():
            try:
                spec = ",".join(f"{code}:{w}" for code, w in weights.items())
                m = parse_mix(spec, categories)
            except (FacediffError, AttributeError):
                continue
            found[label] = Mix(label, m.indices, m.weights)
    return found


def _load_pngs(folder: Path, size: int, limit: int) -> torch.Tensor:
    paths = sorted(p for p in folder.iterdir() if p.suffix.lower() == ".png")[:limit]
    arrays = []
    for p in paths:
        try:
            with Image.open(p) as im:
                im = im.convert("RGB")
                if im.size != (size, size):
                    im = im.resize((size, size), Image.LANCZOS)
                arrays.append(np.asarray(im, dtype=np.uint8))
        except OSError as e:
            raise FacediffError(f"cannot read sample image {p}: {e}") from None
    if not arrays:
        return torch.empty((0, 3, size, size), dtype=torch.uint8)
    return torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).contiguous()


def read_groups(
    folder: Path,
    specs: list[str] | None,
    per_group: int,
    categories: CategoryMap,
    size: int,
) -> list[Group]:
    """Samples from ``<folder>/<LABEL>/*.png`` (the layout ``facediff sample`` writes)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FacediffError(f"samples folder not found: {folder}")
    recorded = _recorded_mixes(folder, categories)
    if specs:
        mixes = resolve_mixes(specs, categories)
    else:
        candidates = {m.label: m for m in default_mixes(categories)} | recorded
        mixes = [m for label, m in candidates.items() if (folder / label).is_dir()]
        if not mixes:
            raise FacediffError(
                f"no sample folders in {folder}: expected <LABEL>/*.png as written by "
                "`facediff sample`"
            )
    groups = []
    for mix in mixes:
        sub = folder / mix.label
        images = _load_pngs(sub, size, per_group) if sub.is_dir() else None
        if images is None or len(images) == 0:
            raise FacediffError(f"no PNG samples for mix {mix.label} in {sub}")
        groups.append(Group(mix, images))
    return groups
