"""What ``evaluate`` judges: the prepared data a run recorded, and samples per mix,
generated from the run or read from a ``facediff sample`` folder."""

from __future__ import annotations

import hashlib
import itertools
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from facediff.attributes import AttributeSet
from facediff.categories import CategoryMap
from facediff.checkpoint import RUN_CONFIG_FILE, latest_checkpoint, read_state
from facediff.config import DEFAULT_DATA_DIR, HELDOUT_FILE, SampleConfig
from facediff.dataset import PreparedData, load_held_out, load_prepared
from facediff.device import resolve_precision
from facediff.errors import CheckpointError, ConfigError, FacediffError
from facediff.loading import load_for_inference
from facediff.mix import Mix, default_mixes, resolve_mixes, same_weights
from facediff.progress import Progress, ProgressCallback, emit
from facediff.sample_folder import image_origins, read_images, read_record, recorded_mixes


@dataclass
class Group:
    """Samples of one mix (a single category is a one-term mix) and the judge's view."""

    mix: Mix
    images: torch.Tensor  # uint8 N×3×S×S
    probs: torch.Tensor | None = None  # N×K
    feats: torch.Tensor | None = None  # judge features N×D
    inception: torch.Tensor | None = None  # N×2048 when available
    attributes: dict[str, torch.Tensor] | None = None  # judge's attribute probabilities
    resized_from: list[str] = field(default_factory=list)  # read from a folder: "64x64"
    sampled_by: list[dict] = field(default_factory=list)  # read from a folder: see sampled_by


EACH, JOINT = "each", "joint"
CELL_MODES = (EACH, JOINT)


def cell_requests(attributes: AttributeSet, mode: str = EACH) -> list[dict[str, str]]:
    """The attribute requests sampled per category: ``each`` value of each attribute alone
    (``[{"gender": "male"}, {"gender": "female"}, {"age": "0-9"}, …]``) or every ``joint``
    combination (``[{"gender": "male", "age": "0-9"}, …]``)."""
    if mode == EACH:
        return [{a.name: v} for a in attributes for v in a.values]
    if mode == JOINT:
        names = attributes.names
        combos = itertools.product(*(a.values for a in attributes))
        return [dict(zip(names, combo)) for combo in combos]
    raise ValueError(f"unknown attribute cells {mode!r}; choose from {', '.join(CELL_MODES)}")


@dataclass
class CellGroup:
    """Samples of one category with attribute values requested, and the judge's view."""

    category: int
    requested: dict[str, str]
    images: torch.Tensor  # uint8 N×3×S×S
    probs: torch.Tensor | None = None  # N×K category probabilities
    attributes: dict[str, torch.Tensor] | None = None  # name -> N×V probabilities


@dataclass
class RealPhotos:
    """The photos samples are set against (realism, colour, the memorisation baseline):
    the judge's held-out split of the prepared data, which the diffusion model trained on
    (``indices`` into it), or photos it never trained on (``prepare --holdout``, or
    ``evaluate --heldout``)."""

    images: torch.Tensor  # uint8 N×3×S×S
    labels: torch.Tensor  # int64 N
    indices: torch.Tensor | None = None  # into the prepared data: the judge's split
    source: dict[str, Any] | None = None  # --heldout: path, fingerprint, images, dropped

    @property
    def unseen(self) -> bool:
        return self.indices is None


def _image_digests(images: torch.Tensor) -> list[bytes]:
    return [hashlib.blake2b(im.numpy().tobytes(), digest_size=16).digest() for im in images]


def load_heldout(path: Path | None, prepared: PreparedData) -> RealPhotos | None:
    """Photos the model never trained on: the prepared data at ``path`` (of the categories
    and size of ``prepared``, the training data), else those ``prepare --holdout`` kept
    out of ``prepared``; None when there are neither. Photos also in the training data
    (pixel for pixel) are dropped and counted."""
    if path is None:
        held = load_held_out(prepared)
        if held is None:
            return None
        sha = str(prepared.manifest["holdout"]["sha256"])
        return _unseen(held, prepared, str(held.path / HELDOUT_FILE), sha)

    def refused(why: str) -> ConfigError:  # "--heldout PATH ..." from the CLI
        return ConfigError("{} " + why.replace("{", "{{").replace("}", "}}"), "heldout")

    try:
        data = load_prepared(Path(path))
    except FacediffError as e:
        raise refused(f"{path}: {e}") from None
    if data.categories.to_list() != prepared.categories.to_list():
        raise refused(
            f"{path} holds the categories {data.categories.codes}, not the data's "
            f"{prepared.categories.codes}; prepare both with the same categories"
        )
    if data.size != prepared.size:
        raise refused(
            f"{path} is prepared at {data.size}x{data.size}, the data at "
            f"{prepared.size}x{prepared.size}; prepare it with --size {prepared.size}"
        )
    unseen = _unseen(data, prepared, str(path), data.fingerprint)
    if unseen is None:
        raise refused(
            f"{path}: every photo in it is also in the training data {prepared.path}; give "
            "photos the model never trained on"
        )
    return unseen


def _unseen(
    data: PreparedData, prepared: PreparedData, shown: str, fingerprint: str
) -> RealPhotos | None:
    """``data`` less the photos also in ``prepared``; None when nothing is left."""
    trained = set(_image_digests(prepared.images))
    keep = torch.tensor([d not in trained for d in _image_digests(data.images)], dtype=torch.bool)
    if not keep.any():
        return None
    source = {
        "path": shown,
        "fingerprint": fingerprint,
        "images": int(keep.sum()),
        "dropped": int((~keep).sum()),  # also in the training data
    }
    return RealPhotos(data.images[keep], data.labels[keep], source=source)


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


@dataclass
class Generated:
    """What :func:`generate_groups` drew: samples per mix, per attribute cell, and the step
    of the checkpoint that drew them."""

    groups: list[Group]
    step: int | None
    attributes: AttributeSet = field(default_factory=AttributeSet)  # the model's
    cells: list[CellGroup] = field(default_factory=list)


def check_attributes(model: AttributeSet, data: AttributeSet) -> None:
    """A model's attributes must be the data's (the judge learns the data's); a model
    without attributes is judged on its categories only, whatever the data carries."""
    if model and model.to_list() != data.to_list():

        def names(s: AttributeSet) -> str:
            return ", ".join(f"{a.name} ({'/'.join(a.values)})" for a in s) or "none"

        raise FacediffError(
            f"the run's attributes [{names(model)}] differ from the data's [{names(data)}]; "
            "pass the --data it was trained on"
        )


def generate_groups(
    run: Path,
    mixes: list[Mix],
    per_group: int,
    config: SampleConfig,
    device: torch.device,
    categories: CategoryMap,
    progress: ProgressCallback | None,
    step: int | None = None,
    *,
    attributes: AttributeSet | None = None,
    per_cell: int = 0,
    cells: str = EACH,
) -> Generated:
    """Samples for every mix and, for a model with ``attributes`` (the data's), ``per_cell``
    samples per category × attribute request (see :func:`cell_requests`)."""
    from facediff.generation import (  # heavy
        as_request,
        generate,
        generate_each,
        prepare_for,
    )

    dtype = resolve_precision(config.precision, device)  # load straight onto the device
    loaded = load_for_inference(run, step=step, use_ema=config.use_ema, device=device, dtype=dtype)
    for warning in loaded.notes():  # e.g. a damaged newest checkpoint was skipped
        emit(progress, Progress("sample", 0, None, message=warning))
    if loaded.categories.to_list() != categories.to_list():
        raise FacediffError(
            f"the run's categories ({loaded.categories.codes}) differ from the data's "
            f"({categories.codes}); pass the --data it was trained on"
        )
    model_attributes = loaded.attributes
    check_attributes(model_attributes, attributes or AttributeSet())
    requests = []
    if model_attributes and per_cell > 0:
        wanted = cell_requests(model_attributes, cells)
        requests = [(k, r) for k in range(len(categories)) for r in wanted]
    cell_mixes = [Mix(categories[k].code, (k,), (1.0,)) for k, _ in requests]
    jobs = [(mix, None, per_group) for mix in mixes] + [
        (mix, as_request(model_attributes, r), per_cell)
        for mix, (_, r) in zip(cell_mixes, requests)
    ]
    den = prepare_for(loaded, config, jobs, device=device)
    for warning in den.warnings:  # e.g. a corrupt compile cache was ignored
        emit(progress, Progress("sample", 0, None, message=warning))
    seeds = list(range(config.seed, config.seed + per_group))
    groups = [
        Group(mix, images)
        for mix, images in generate_each(den, mixes, seeds, config, progress=progress)
    ]
    out = Generated(groups, loaded.step, model_attributes)
    cell_seeds = list(range(config.seed, config.seed + per_cell))
    total = len(requests) * per_cell
    for i, (mix, (k, request)) in enumerate(zip(cell_mixes, requests)):
        done = i * per_cell
        relay = (
            None
            if progress is None
            else lambda e, done=done: progress(
                Progress("sample attributes", done + e.completed, total, e.info, e.message)
            )
        )
        images = generate(den, mix, cell_seeds, config, attributes=request, progress=relay)
        out.cells.append(CellGroup(k, request, images))
    return out


def _as_sampled(mix: Mix, folder: Path, recorded: dict[str, Mix]) -> Mix:
    """``mix`` under the label its samples were recorded with, when its own label has no
    folder but a recorded mix weighs the same categories alike."""
    if (folder / mix.label).is_dir():
        return mix
    for label, m in recorded.items():
        if same_weights(m.weight_map, mix.weight_map) and (folder / label).is_dir():
            return m
    return mix


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
    if specs:  # IO or O+I finds the folder OI that `sample --mix OI` wrote
        mixes = [_as_sampled(m, folder, recorded) for m in resolve_mixes(categories, specs)]
    else:
        candidates = {m.label: m for m in default_mixes(categories)} | recorded
        mixes = [m for label, m in candidates.items() if (folder / label).is_dir()]
        if not mixes:
            raise FacediffError(
                f"no sample folders in {folder}: expected <LABEL>/*.png as written by "
                "`facediff sample`"
            )
    groups = []
    record = read_record(folder)
    for mix in mixes:
        sub = folder / mix.label
        read = read_images(folder, mix.label, size, per_group) if sub.is_dir() else None
        if read is None or len(read.images) == 0:
            raise FacediffError(f"no PNG samples for mix {mix.label} in {sub}")
        if len(read.images) < 2:  # as -n 1 is refused: no spread, no distance to measure
            raise FacediffError(f"{sub} holds 1 sample PNG; evaluate needs at least 2 per mix")
        group = Group(mix, read.images, resized_from=read.resized_from)
        group.sampled_by = sampled_by(record, mix.label, read.seeds, read.unseeded)
        groups.append(group)
    return groups


def sampled_by(record: list[Any], label: str, seeds: list[int], unseeded: int) -> list[dict]:
    """What drew the images read, by the folder's ``record``: one entry per distinct origin
    (model, step, weights, size, sampling settings) with its ``"images"``; an entry with
    only ``"images"`` counts those the record does not list (or PNGs without a seed)."""
    found = []
    unrecorded = unseeded
    for origin, its_seeds in image_origins(record, label, seeds):
        if origin is None:
            unrecorded += len(its_seeds)
        else:
            found.append({**origin, "images": len(its_seeds)})
    return found + ([{"images": unrecorded}] if unrecorded else [])
