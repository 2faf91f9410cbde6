"""What ``evaluate`` judges: the prepared data a run recorded, and samples per mix,
generated from the run or read from a ``facediff sample`` folder."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch

from facediff.categories import CategoryMap
from facediff.checkpoint import RUN_CONFIG_FILE, latest_checkpoint, load_for_inference, read_state
from facediff.config import DEFAULT_DATA_DIR, SampleConfig
from facediff.errors import CheckpointError, FacediffError
from facediff.mix import Mix, default_mixes, resolve_mixes
from facediff.progress import Progress, ProgressCallback, emit
from facediff.sample_folder import read_images, recorded_mixes


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


def generate_groups(
    run: Path,
    mixes: list[Mix],
    per_group: int,
    config: SampleConfig,
    device: torch.device,
    categories: CategoryMap,
    progress: ProgressCallback | None,
    step: int | None = None,
) -> tuple[list[Group], int]:
    """Samples for every mix, and the step of the checkpoint that drew them."""
    from facediff.generation import generate_each, prepare_denoiser  # diffusers is heavy

    loaded = load_for_inference(run, step=step, use_ema=config.use_ema)
    for warning in loaded.warnings:  # e.g. a damaged newest checkpoint was skipped
        emit(progress, Progress("sample", 0, None, message=warning))
    if loaded.categories.to_list() != categories.to_list():
        raise FacediffError(
            f"the run's categories ({loaded.categories.codes}) differ from the data's "
            f"({categories.codes}); pass the --data it was trained on"
        )
    den = prepare_denoiser(
        loaded, device=device, precision=config.precision, compile=config.compile
    )
    seeds = list(range(config.seed, config.seed + per_group))
    groups = [
        Group(mix, images)
        for mix, images in generate_each(den, mixes, seeds, config, progress=progress)
    ]
    return groups, loaded.step


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
    recorded = recorded_mixes(folder, categories)
    if specs:
        mixes = resolve_mixes(categories, specs)
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
        images = read_images(folder, mix.label, size, per_group) if sub.is_dir() else None
        if images is None or len(images) == 0:
            raise FacediffError(f"no PNG samples for mix {mix.label} in {sub}")
        groups.append(Group(mix, images))
    return groups
