"""Periodic work of the loop: metrics records, checkpoints and preview grids."""

from __future__ import annotations

import functools
import math
import time
from pathlib import Path

import torch

from facediff import distributed
from facediff.checkpoint import save_checkpoint
from facediff.errors import TrainingDiverged
from facediff.model import build_unet
from facediff.previews import sample_preview, save_grid
from facediff.progress import Progress, ProgressCallback, emit
from facediff.training.setup import run_config, training_state
from facediff.training.state import Loop, Parts, Setup
from facediff.training.step import lr_at
from facediff.training.writer import snapshot
from facediff.training_log import append_metrics, plot_loss

PREVIEWS_DIR = "previews"


def _read_log_window(loop: Loop, setup: Setup) -> tuple[float, float, int]:
    """(mean loss, nonfinite count, first bad step) over the window, summed over ranks."""
    if loop.loss_sum is None:
        return math.nan, 0.0, -1
    steps = torch.full((), float(loop.steps_in_log), device=loop.loss_sum.device)
    stats = torch.stack([loop.loss_sum, loop.nonfinite, steps])
    stats = distributed.sum_across(setup.dist, stats).tolist()
    mean = stats[0] / max(stats[2], 1.0)
    return mean, stats[1], int(loop.first_bad_step.item())


def check_finite(loop: Loop, setup: Setup) -> float:
    """Raise :class:`TrainingDiverged` if any loss since the last log was NaN/inf."""
    mean, nonfinite, first_bad = _read_log_window(loop, setup)
    if nonfinite > 0:
        where = f"step {first_bad + 1}" if first_bad >= 0 else f"before step {loop.step}"
        kept = (
            f"; the last good checkpoint {loop.last_checkpoint} is kept"
            if loop.last_checkpoint
            else ""
        )
        raise TrainingDiverged(
            f"training diverged: the loss became NaN/inf at {where}{kept} "
            "(try a lower --lr or --precision fp32)"
        )
    return mean


def maybe_log(loop: Loop, setup: Setup, *, force: bool = False) -> None:
    """Every ``log_every`` steps (or when ``force``): append a metrics record."""
    cfg = setup.config
    if not force and loop.step % cfg.log_every != 0:
        return
    if loop.steps_in_log == 0:
        return
    mean = check_finite(loop, setup)
    now = time.perf_counter()
    images_per_s = loop.steps_in_log * setup.global_batch / max(now - loop.log_started, 1e-9)
    loop.last_loss = mean
    record = {
        **({"first_step_s": loop.first_step_s} if loop.first_step_s is not None else {}),
        "step": loop.step,
        "epoch": loop.images_seen // len(setup.data),
        "images_seen": loop.images_seen,
        "loss": mean,
        "lr": lr_at(loop.step - 1, cfg),
        "images_per_s": images_per_s,
        "seconds": loop.seconds_before + (now - loop.started),
    }
    loop.info = {
        "epoch": record["epoch"],
        "loss": mean,
        "img/s": round(images_per_s, 1),
        "lr": record["lr"],
    }
    if setup.dist.is_main:
        append_metrics(setup.run_dir, record)
        if setup.tracker is not None:
            keys = ("loss", "lr", "images_per_s", "epoch")
            setup.tracker.scalars(loop.step, {k: record[k] for k in keys})
    loop.loss_sum = loop.nonfinite = loop.first_bad_step = None
    loop.first_step_s = None  # reported once, in the session's first record
    loop.steps_in_log = 0
    loop.log_started = time.perf_counter()


def _weights_finite(parts: Parts) -> bool:
    flags = [torch.isfinite(p).all() for p in parts.unet.parameters()]
    return bool(torch.stack(flags).all().item())


def save(
    loop: Loop,
    parts: Parts,
    setup: Setup,
    progress: ProgressCallback | None,
    *,
    background: bool = False,
) -> None:
    """Write a checkpoint of the current step (rank 0), after checking nothing diverged:
    at once, or with ``background`` from a copy of the state on the writer thread
    (:mod:`facediff.training.writer`; :func:`collect_checkpoint` takes its outcome). A
    write still in flight is waited for first."""
    if loop.last_checkpoint_step == loop.step:
        return
    maybe_log(loop, setup, force=True)  # raises on a non-finite loss
    if not _weights_finite(parts):
        raise TrainingDiverged(f"training diverged: non-finite weights at step {loop.step}")
    if setup.dist.is_main:
        collect_checkpoint(loop, setup, progress, wait=True)  # one write at a time
        state = {
            **run_config(setup),
            "step": loop.step,
            "epoch": loop.images_seen // len(setup.data),
            "images_seen": loop.images_seen,
            "seconds": loop.seconds_before + (time.perf_counter() - loop.started),
            "loss": loop.last_loss,
        }
        tensors = (parts.unet.state_dict(), parts.ema.state_dict(), training_state(parts, setup))
        if background:
            tensors = snapshot(tensors)
        write = functools.partial(
            save_checkpoint,
            setup.run_dir,
            loop.step,
            model_state=tensors[0],
            ema_state=tensors[1],
            training_state=tensors[2],
            state=state,
            keep=setup.config.keep,
        )
        if background:
            loop.writer.submit(write)
        else:
            _saved(loop, setup, progress, write())
    loop.last_checkpoint_step = loop.step
    distributed.barrier(setup.dist)


def collect_checkpoint(
    loop: Loop, setup: Setup, progress: ProgressCallback | None, *, wait: bool = False
) -> None:
    """Take the outcome of a background checkpoint write once it has ended (or, with
    ``wait``, when it ends): note the checkpoint, or raise the write's error (a
    :class:`~facediff.errors.CheckpointError` that names the intact previous one)."""
    if loop.writer.busy and (wait or loop.writer.done()):
        _saved(loop, setup, progress, loop.writer.wait())


def _saved(loop: Loop, setup: Setup, progress: ProgressCallback | None, path: Path) -> None:
    loop.last_checkpoint = path
    plot_loss(setup.run_dir)
    message = f"checkpoint saved: {path}"
    emit(progress, Progress("train", loop.step, loop.target_step, dict(loop.info), message=message))


def maybe_checkpoint(loop: Loop, parts: Parts, setup: Setup, progress) -> None:
    """Every ``checkpoint_every`` steps a checkpoint, written in the background; and the
    outcome of one written earlier, once its write has ended."""
    if loop.step % setup.config.checkpoint_every == 0:
        save(loop, parts, setup, progress, background=True)
    elif setup.dist.is_main:
        collect_checkpoint(loop, setup, progress)


def preview(loop: Loop, parts: Parts, setup: Setup, preview_unet: torch.nn.Module) -> Path:
    """Sample the EMA weights on fixed seeds; one row per category."""
    cfg = setup.config
    parts.ema.copy_to(preview_unet)
    images = sample_preview(
        preview_unet,
        setup.scheduler_config,
        num_categories=len(setup.data.categories),
        columns=cfg.preview_columns,
        size=setup.data.size,
        steps=cfg.preview_steps,
        guidance=cfg.preview_guidance,
        device=setup.device,
        attributes=setup.data.attributes,
    )
    path = setup.run_dir / PREVIEWS_DIR / f"step-{loop.step:08d}.png"
    save_grid(images, len(setup.data.categories), path)
    if setup.tracker is not None:
        setup.tracker.image("preview", path, loop.step)
    return path


def new_preview_unet(setup: Setup) -> torch.nn.Module:
    return build_unet(setup.model_config).to(setup.device).eval().requires_grad_(False)
