"""Checkpoints: complete, atomic, pruned, found by reading the folders (docs/architecture.md).

Layout of one checkpoint, ``<run>/checkpoints/step-XXXXXXXX/``:

- ``model.safetensors`` and ``ema.safetensors`` — UNet weights (raw and EMA);
- ``training_state.pt`` — optimizer, grad-scaler and RNG states, saved with
  ``torch.save`` and read back with ``torch.load(weights_only=True)`` (tensors,
  numbers and strings only; nothing is unpickled beyond that);
- ``state.json`` — step, epoch, images seen, the run config (model, training,
  categories, schedule), so a checkpoint is self-describing, and ``files``: the size
  and sha256 of each of the three other files, checked whenever one is loaded.

A checkpoint is written to ``.tmp-step-XXXXXXXX`` and renamed into place only when
every file is flushed, so a crash or a full disk never leaves a half-written checkpoint
under a real name; leftovers with the temporary prefix are ignored and cleaned up.
Pruning renames a checkpoint to a temporary name before deleting it, so a prune that is
killed half-way leaves nothing that looks like a checkpoint.

A checkpoint whose state cannot be read or whose files do not match their checksums is
*damaged*: :func:`find_usable` skips it (with a warning) for the newest intact one.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import re
import shutil
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from facediff.errors import CheckpointError, first_line
from facediff.files import write_json_atomic

CHECKPOINTS_DIR = "checkpoints"
RUN_CONFIG_FILE = "config.json"
STATE_FILE = "state.json"
MODEL_FILE = "model.safetensors"
EMA_FILE = "ema.safetensors"
TRAINING_STATE_FILE = "training_state.pt"
_STEP_RE = re.compile(r"^step-(\d{8,})$")
_TMP_PREFIX = ".tmp-"
_REQUIRED = (STATE_FILE, MODEL_FILE, EMA_FILE, TRAINING_STATE_FILE)
_CHECKSUMMED = (MODEL_FILE, EMA_FILE, TRAINING_STATE_FILE)
_STATE_INTS = ("step", "epoch", "images_seen")


class DamagedCheckpoint(CheckpointError):
    """A checkpoint whose state is unreadable or whose files fail their checksums."""


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
    """Write a complete checkpoint for ``step`` atomically; prune to the newest ``keep``.

    If writing fails (a full disk, an interrupt) the temporary folder is removed and
    the checkpoints already there are untouched; the error says which one is newest.
    """
    root = Path(run_dir) / CHECKPOINTS_DIR
    root.mkdir(parents=True, exist_ok=True)
    final = root / step_dir_name(step)
    tmp = root / (_TMP_PREFIX + step_dir_name(step))
    if tmp.is_symlink() or tmp.is_file():
        tmp.unlink()
    elif tmp.exists():
        shutil.rmtree(tmp)
    try:
        tmp.mkdir()
        save_file(_contiguous(model_state), str(tmp / MODEL_FILE))
        save_file(_contiguous(ema_state), str(tmp / EMA_FILE))
        torch.save(training_state, tmp / TRAINING_STATE_FILE)
        files = {name: _file_record(tmp / name) for name in _CHECKSUMMED}
        write_json_atomic(tmp / STATE_FILE, {**state, "step": step, "files": files})
        for name in _REQUIRED:
            with open(tmp / name, "rb") as f:
                os.fsync(f.fileno())
        _fsync_dir(tmp)
    except BaseException as e:
        shutil.rmtree(tmp, ignore_errors=True)
        if isinstance(e, (OSError, RuntimeError, SafetensorError)):
            previous = latest_checkpoint(run_dir)
            kept = (
                f"the previous checkpoint {previous} is intact"
                if previous
                else "no earlier checkpoint exists"
            )
            raise CheckpointError(
                f"cannot write checkpoint {final} ({first_line(e)}); nothing half-written "
                f"was left and {kept}"
            ) from None
        raise
    if final.exists():  # re-saving the same step (e.g. on interrupt right after a save)
        _remove_checkpoint(final)
    os.replace(tmp, final)
    _fsync_dir(root)
    if keep is not None and keep > 0:
        prune_checkpoints(run_dir, keep, upto=step)
    return final


def _file_record(path: Path) -> dict[str, Any]:
    return {"bytes": path.stat().st_size, "sha256": _sha256(path)}


def _sha256(path: Path, chunk: int = 1 << 20) -> str:
    st = path.stat()
    return _sha256_cached(str(path), st.st_size, st.st_mtime_ns, st.st_ino, chunk)


@functools.lru_cache(maxsize=16)
def _sha256_cached(path: str, size: int, mtime_ns: int, inode: int, chunk: int) -> str:
    """Keyed by size, mtime and inode: resume checks a checkpoint twice, hashes it once."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def list_checkpoints(run_dir: Path) -> list[tuple[int, Path]]:
    """Complete checkpoints of a run, oldest first (temporary folders are ignored)."""
    root = Path(run_dir) / CHECKPOINTS_DIR
    if not root.is_dir():
        return []
    found = []
    for p in root.iterdir():
        m = _STEP_RE.match(p.name)
        if m and p.is_dir() and _complete(p):
            found.append((int(m.group(1)), p))
    return sorted(found)


def _complete(folder: Path) -> bool:
    return all((folder / f).is_file() for f in _REQUIRED)


def latest_checkpoint(run_dir: Path) -> Path | None:
    cps = list_checkpoints(run_dir)
    return cps[-1][1] if cps else None


def _remove_checkpoint(path: Path) -> None:
    """Rename to a temporary name (atomic), then delete: a kill half-way leaves only a
    ``.tmp-`` folder, which the next prune removes, never a half-deleted checkpoint."""
    doomed = path.with_name(f"{_TMP_PREFIX}old-{path.name}")
    if doomed.exists():
        shutil.rmtree(doomed, ignore_errors=True)
    os.replace(path, doomed)
    try:
        shutil.rmtree(doomed, ignore_errors=True)
    except BaseException:  # interrupted: finish removing it, then stop
        shutil.rmtree(doomed, ignore_errors=True)
        raise


def prune_checkpoints(run_dir: Path, keep: int, upto: int | None = None) -> None:
    """Delete all but the newest ``keep`` complete checkpoints at or below step ``upto``,
    incomplete checkpoint folders older than those kept (left by an older facediff killed
    mid-prune), and stale temporary folders. Checkpoints above ``upto`` (damaged ones a
    resumed run fell back from) are left alone until the run overwrites them."""
    root = Path(run_dir) / CHECKPOINTS_DIR
    complete = [(s, p) for s, p in list_checkpoints(run_dir) if upto is None or s <= upto]
    for _, p in complete[:-keep]:
        _remove_checkpoint(p)
    oldest_kept = complete[-keep:][0][0] if complete else None
    for p in root.iterdir():
        m = _STEP_RE.match(p.name)
        old = m is not None and oldest_kept is not None and int(m.group(1)) < oldest_kept
        if old and p.is_dir() and not p.is_symlink() and not _complete(p):
            _remove_checkpoint(p)
    for p in root.glob(_TMP_PREFIX + "*"):
        if p.is_symlink() or p.is_file():
            p.unlink()
        else:
            shutil.rmtree(p, ignore_errors=True)


def read_state(checkpoint: Path) -> dict[str, Any]:
    """``state.json`` of a checkpoint, checked for the fields every reader relies on."""
    path = Path(checkpoint) / STATE_FILE
    try:
        if path.stat().st_size > 64 << 20:
            raise ValueError("larger than 64 MiB")
        state = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as e:
        raise DamagedCheckpoint(
            f"checkpoint {checkpoint} is damaged: cannot read {STATE_FILE} ({first_line(e)})"
        ) from None
    if not isinstance(state, dict):
        raise DamagedCheckpoint(f"checkpoint {checkpoint} is damaged: {path} is not an object")
    for key in _STATE_INTS:
        value = state.get(key, 0)
        if type(value) is not int or value < 0:
            raise DamagedCheckpoint(
                f"checkpoint {checkpoint} is damaged: {path} has {key} {value!r} "
                "(a whole number >= 0 was expected)"
            )
    files = state.get("files", {})
    if not isinstance(files, dict) or not all(
        isinstance(r, dict) and isinstance(r.get("sha256"), str) and type(r.get("bytes")) is int
        for r in files.values()
    ):
        raise DamagedCheckpoint(f"checkpoint {checkpoint} is damaged: {path} has bad 'files'")
    return state


def verify_file(checkpoint: Path, name: str, state: dict[str, Any]) -> Path:
    """``checkpoint/name`` after checking it against the size and sha256 in ``state``
    (checkpoints written before checksums were recorded are only checked to exist)."""
    path = Path(checkpoint) / name
    record = state.get("files", {}).get(name)
    try:
        size = path.stat().st_size
        if record is not None and (size != record["bytes"] or _sha256(path) != record["sha256"]):
            raise DamagedCheckpoint(
                f"checkpoint {checkpoint} is damaged: {name} does not match the checksum "
                f"recorded in its {STATE_FILE}"
            )
    except OSError as e:
        raise DamagedCheckpoint(
            f"checkpoint {checkpoint} is damaged: cannot read {name} ({first_line(e)})"
        ) from None
    return path


def verify_checkpoint(checkpoint: Path, files: tuple[str, ...] = _CHECKSUMMED) -> dict[str, Any]:
    """The checkpoint's state, after checking ``files`` against their checksums."""
    state = read_state(checkpoint)
    for name in files:
        verify_file(checkpoint, name, state)
    return state


def find_usable(
    run_dir: Path, files: tuple[str, ...] = _CHECKSUMMED
) -> tuple[Path, dict[str, Any], list[str]] | None:
    """The newest checkpoint that verifies, its state, and a warning for each newer damaged
    one (None if the run has no checkpoint; :class:`DamagedCheckpoint` if none is intact)."""
    cps = list_checkpoints(run_dir)
    if not cps:
        return None
    warnings: list[str] = []
    for _, ckpt in reversed(cps):
        try:
            state = verify_checkpoint(ckpt, files)
        except DamagedCheckpoint as e:
            warnings.append(str(e))
            continue
        return (
            ckpt,
            state,
            [
                f"warning: {w}; using the newest intact checkpoint {ckpt.name} instead"
                for w in warnings
            ],
        )
    raise DamagedCheckpoint(
        f"every checkpoint in {Path(run_dir) / CHECKPOINTS_DIR} is damaged; the newest: "
        f"{warnings[0]}"
    )


def load_weights(path: Path, device: torch.device | None = None) -> dict[str, torch.Tensor]:
    """The tensors of a safetensors file, read straight onto ``device`` (the CPU)."""
    try:
        return load_file(str(path), device=str(device or "cpu"))
    except (SafetensorError, OSError, ValueError) as e:
        raise DamagedCheckpoint(
            f"checkpoint {Path(path).parent} is damaged: {Path(path).name} cannot be read "
            f"({first_line(e)}); move the folder away to use the previous checkpoint"
        ) from None


def load_training_state(checkpoint: Path) -> dict[str, Any]:
    path = Path(checkpoint) / TRAINING_STATE_FILE
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises many types (and several lines) for a corrupt file
        why = type(e).__name__ if "weights_only" in str(e) else first_line(e)
        raise DamagedCheckpoint(
            f"checkpoint {checkpoint} is damaged: {TRAINING_STATE_FILE} cannot be read "
            f"({why}); move the folder away to resume from the previous checkpoint"
        ) from None


def resolve_checkpoint(
    run_dir: Path, step: int | None = None, files: tuple[str, ...] = _CHECKSUMMED
) -> tuple[Path, dict[str, Any], list[str]]:
    """The checkpoint of ``run_dir`` for ``step`` (the newest intact one when None), its
    verified state, and warnings about damaged newer checkpoints that were skipped."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise CheckpointError(f"run folder not found: {run_dir}")
    cps = list_checkpoints(run_dir)
    if not cps:
        raise CheckpointError(f"no complete checkpoint in {run_dir / CHECKPOINTS_DIR}")
    if step is None:
        found = find_usable(run_dir, files)
        assert found is not None
        return found
    for s, p in cps:
        if s == step:
            try:
                return p, verify_checkpoint(p, files), []
            except DamagedCheckpoint as e:
                newest = _newest_intact(cps, files, but=step)
                hint = f"--checkpoint {newest} is intact" if newest is not None else "no other"
                raise DamagedCheckpoint(f"{e} ({hint})") from None
    have = ", ".join(str(s) for s, _ in cps)
    raise CheckpointError(f"no checkpoint for step {step} in {run_dir}; available: {have}")


def _newest_intact(cps: list[tuple[int, Path]], files: tuple[str, ...], but: int) -> int | None:
    for s, p in reversed(cps):
        if s == but:
            continue
        try:
            verify_checkpoint(p, files)
        except DamagedCheckpoint:
            continue
        return s
    return None
