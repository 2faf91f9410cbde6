"""Checkpoints: complete, atomic, pruned, found by reading the folders (docs/architecture.md).

Layout of one checkpoint, ``<run>/checkpoints/step-XXXXXXXX/``:

- ``model.safetensors`` and ``ema.safetensors`` — UNet weights (raw and EMA);
- ``training_state.pt`` — optimizer, grad-scaler and RNG states, saved with
  ``torch.save`` and read back with ``torch.load(weights_only=True)`` (tensors,
  numbers and strings only; nothing is unpickled beyond that);
- ``state.json`` — step, epoch, images seen, and the run config (model, training,
  categories, schedule), so a checkpoint is self-describing.

A checkpoint is written to ``.tmp-step-XXXXXXXX`` and renamed into place only when
every file is flushed, so a crash never leaves a half-written checkpoint under a real
name; leftovers with the temporary prefix are ignored and cleaned up.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from facediff.categories import CategoryMap
from facediff.config import ModelConfig
from facediff.errors import CheckpointError
from facediff.files import write_json_atomic
from facediff.model import build_unet

CHECKPOINTS_DIR = "checkpoints"
RUN_CONFIG_FILE = "config.json"
STATE_FILE = "state.json"
MODEL_FILE = "model.safetensors"
EMA_FILE = "ema.safetensors"
TRAINING_STATE_FILE = "training_state.pt"
_STEP_RE = re.compile(r"^step-(\d{8,})$")
_TMP_PREFIX = ".tmp-"
_REQUIRED = (STATE_FILE, MODEL_FILE, EMA_FILE, TRAINING_STATE_FILE)


def step_dir_name(step: int) -> str:
    return f"step-{step:08d}"


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _contiguous(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: v.detach().to("cpu").contiguous() for k, v in sd.items()}


def save_checkpoint(
    run_dir: Path,
    step: int,
    *,
    model_state: dict[str, torch.Tensor],
    ema_state: dict[str, torch.Tensor],
    training_state: dict[str, Any],
    state: dict[str, Any],
    keep: int | None = None,
) -> Path:
    """Write a complete checkpoint for ``step`` atomically; prune to the newest ``keep``."""
    root = Path(run_dir) / CHECKPOINTS_DIR
    root.mkdir(parents=True, exist_ok=True)
    final = root / step_dir_name(step)
    tmp = root / (_TMP_PREFIX + step_dir_name(step))
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()
    save_file(_contiguous(model_state), str(tmp / MODEL_FILE))
    save_file(_contiguous(ema_state), str(tmp / EMA_FILE))
    torch.save(training_state, tmp / TRAINING_STATE_FILE)
    write_json_atomic(tmp / STATE_FILE, {**state, "step": step})
    for name in _REQUIRED:
        with open(tmp / name, "rb") as f:
            os.fsync(f.fileno())
    _fsync_dir(tmp)
    if final.exists():  # re-saving the same step (e.g. on interrupt right after a save)
        shutil.rmtree(final)
    os.replace(tmp, final)
    _fsync_dir(root)
    if keep is not None and keep > 0:
        prune_checkpoints(run_dir, keep)
    return final


def list_checkpoints(run_dir: Path) -> list[tuple[int, Path]]:
    """Complete checkpoints of a run, oldest first (temporary folders are ignored)."""
    root = Path(run_dir) / CHECKPOINTS_DIR
    if not root.is_dir():
        return []
    found = []
    for p in root.iterdir():
        m = _STEP_RE.match(p.name)
        if m and p.is_dir() and all((p / f).is_file() for f in _REQUIRED):
            found.append((int(m.group(1)), p))
    return sorted(found)


def latest_checkpoint(run_dir: Path) -> Path | None:
    cps = list_checkpoints(run_dir)
    return cps[-1][1] if cps else None


def prune_checkpoints(run_dir: Path, keep: int) -> None:
    """Delete all but the newest ``keep`` complete checkpoints, and stale temp folders."""
    root = Path(run_dir) / CHECKPOINTS_DIR
    for _, p in list_checkpoints(run_dir)[:-keep]:
        shutil.rmtree(p, ignore_errors=True)
    for p in root.glob(_TMP_PREFIX + "*"):
        shutil.rmtree(p, ignore_errors=True)


def read_state(checkpoint: Path) -> dict[str, Any]:
    try:
        return json.loads((Path(checkpoint) / STATE_FILE).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as e:
        raise CheckpointError(
            f"corrupt checkpoint {checkpoint}: cannot read {STATE_FILE} ({e})"
        ) from None


def load_weights(path: Path) -> dict[str, torch.Tensor]:
    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError) as e:
        raise CheckpointError(f"corrupt checkpoint file {path}: {e}") from None


def load_training_state(checkpoint: Path) -> dict[str, Any]:
    path = Path(checkpoint) / TRAINING_STATE_FILE
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises many types for a corrupt file
        raise CheckpointError(f"corrupt checkpoint file {path}: {e}") from None


@dataclass
class LoadedModel:
    """A model ready for sampling, with what is needed to interpret it."""

    unet: torch.nn.Module
    categories: CategoryMap
    model_config: ModelConfig
    scheduler_config: dict[str, Any]
    step: int
    source: Path  # the checkpoint or export folder it came from
    weights: str  # "ema", "model" or "export"

    def __post_init__(self) -> None:
        self.unet.eval().requires_grad_(False)


def resolve_checkpoint(run_dir: Path, step: int | None = None) -> Path:
    """The checkpoint folder of ``run_dir`` for ``step`` (newest when None)."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise CheckpointError(f"run folder not found: {run_dir}")
    cps = list_checkpoints(run_dir)
    if not cps:
        raise CheckpointError(f"no complete checkpoint in {run_dir / CHECKPOINTS_DIR}")
    if step is None:
        return cps[-1][1]
    for s, p in cps:
        if s == step:
            return p
    have = ", ".join(str(s) for s, _ in cps)
    raise CheckpointError(f"no checkpoint for step {step} in {run_dir}; available: {have}")


def load_for_inference(path: Path, *, step: int | None = None, use_ema: bool = True) -> LoadedModel:
    """Load a model from a run folder (newest checkpoint), a checkpoint folder or an export."""
    from facediff.exporting import EXPORT_INFO_FILE, load_export  # it imports this module

    path = Path(path)
    if (path / EXPORT_INFO_FILE).is_file():
        return load_export(path)
    ckpt = path if (path / STATE_FILE).is_file() else resolve_checkpoint(path, step)
    state = read_state(ckpt)
    try:
        model_cfg = ModelConfig.from_dict(state["model"])
        categories = CategoryMap.from_list(state["categories"])
        sched = dict(state["scheduler"])
    except (KeyError, TypeError) as e:
        raise CheckpointError(f"checkpoint {ckpt} lacks its run config ({e})") from None
    unet = build_unet(model_cfg)
    weights = load_weights(ckpt / (EMA_FILE if use_ema else MODEL_FILE))
    try:
        unet.load_state_dict(weights)
    except RuntimeError as e:
        raise CheckpointError(f"weights in {ckpt} do not match its config: {e}") from None
    weights_name = "ema" if use_ema else "model"
    return LoadedModel(unet, categories, model_cfg, sched, int(state["step"]), ckpt, weights_name)
