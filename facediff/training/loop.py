"""The training loop and :func:`train`, which sets a run up and drives it."""

from __future__ import annotations

import contextlib
import math
import threading
import time
from pathlib import Path
from typing import Any

import torch

from facediff import distributed, folder_lock
from facediff.batches import IndexStream
from facediff.checkpoint import RUN_CONFIG_FILE
from facediff.compile_cache import (
    TRAIN_BUDGET_GRAPHED_IMAGES_PER_S,
    TRAIN_BUDGET_IMAGES_PER_S,
    CompiledOrEager,
)
from facediff.config import DEFAULT_EPOCHS, ModelConfig, TrainConfig
from facediff.durations import seconds_since_process_start
from facediff.errors import ConfigError
from facediff.files import write_json_atomic
from facediff.model import count_parameters
from facediff.progress import Progress, ProgressCallback, emit
from facediff.tracking import check_tracker, open_tracker
from facediff.training.memory import check_fits
from facediff.training.periodic import (
    collect_checkpoint,
    maybe_checkpoint,
    maybe_log,
    new_preview_unet,
    preview,
    save,
)
from facediff.training.setup import (
    build_parts,
    check_run_dir,
    cuda_graphs_unsupported,
    data_to_device,
    graphs_apply,
    make_setup,
    restore,
    resume_config,
    run_config,
    started_config,
)
from facediff.training.state import Loop, Parts, Setup, TrainResult
from facediff.training.step import advance
from facediff.training_log import truncate_metrics

#: Models above this many parameters are slow on the CPU (the `tiny` preset has 1.2M,
#: `base` 77.5M: 0.3 images/s on 2 cores): warn, and skip the end-of-run preview there.
CPU_LARGE_PARAMETERS = 10_000_000


def target_step(cfg: TrainConfig, step: int, images_seen: int, n: int, global_batch: int) -> int:
    """The step to stop at: ``max_steps``, or enough steps to reach ``epochs`` epochs."""
    if cfg.max_steps is not None:
        return cfg.max_steps
    remaining = max(0, (cfg.epochs or DEFAULT_EPOCHS) * n - images_seen)
    return step + math.ceil(remaining / global_batch)


def planned_images(
    cfg: TrainConfig,
    state: dict[str, Any] | None,
    n: int,
    global_batch: int,
    time_budget_s: float | None,
    graphed: bool = False,
) -> int:
    """Images this session will train on: up to the target step, and no more than a time
    budget allows at :data:`~facediff.compile_cache.TRAIN_BUDGET_IMAGES_PER_S`
    (:data:`~facediff.compile_cache.TRAIN_BUDGET_GRAPHED_IMAGES_PER_S` when the update is
    ``graphed``): what the ``--compile`` auto policy weighs against the cost of compiling."""
    step = int(state["step"]) if state else 0
    seen = int(state["images_seen"]) if state else 0
    images = max(0, target_step(cfg, step, seen, n, global_batch) - step) * global_batch
    if time_budget_s is not None:
        rate = TRAIN_BUDGET_GRAPHED_IMAGES_PER_S if graphed else TRAIN_BUDGET_IMAGES_PER_S
        images = min(images, int(time_budget_s * rate))
    return images


def _out_of_time(loop: Loop) -> bool:
    return loop.deadline is not None and time.perf_counter() >= loop.deadline


def _stop_requested(stop: threading.Event | None, loop: Loop, setup: Setup) -> bool:
    """Whether to stop before the next step: a stop request, or the time budget spent
    (which sets ``loop.budget_reached``; it ends the run like SIGTERM does)."""
    if stop is None and loop.deadline is None:
        return False
    if setup.dist.enabled:
        # All ranks must stop at the same step: agree at log boundaries only (one collective).
        if loop.step % setup.config.log_every != 0:
            return False
        asked = stop is not None and stop.is_set()
        if distributed.any_across(setup.dist, asked, setup.device):
            return True
        loop.budget_reached = distributed.any_across(setup.dist, _out_of_time(loop), setup.device)
        return loop.budget_reached
    if stop is not None and stop.is_set():
        return True
    loop.budget_reached = _out_of_time(loop)
    return loop.budget_reached


def shown_total(loop: Loop, first_step: int, started: float) -> int:
    """The step a progress bar counts to: the target step, or under a time budget the
    step the run will reach when the budget ends at this session's pace, if sooner (so
    the bar fills and its ETA ends with the budget, not at a far-off epoch count)."""
    if loop.deadline is None:
        return loop.target_step
    now = time.perf_counter()
    done = loop.step - first_step
    if done <= 0 or now <= started:
        return loop.target_step
    projected = loop.step + int(max(0.0, loop.deadline - now) * done / (now - started))
    return min(loop.target_step, projected)


def _time_to_first_step(setup: Setup) -> float:
    """Seconds from process launch until the first step of this session has run (one sync)."""
    if setup.device.type == "cuda":
        torch.cuda.synchronize(setup.device)
    return round(seconds_since_process_start(), 2)


def run_loop(
    loop: Loop,
    parts: Parts,
    setup: Setup,
    stream: IndexStream,
    progress: ProgressCallback | None,
    stop: threading.Event | None,
) -> bool:
    """Train until the target step; returns True if stopped early (``stop`` or the budget)."""
    cfg = setup.config
    preview_unet = None
    first, first_step, started = True, loop.step, time.perf_counter()
    while loop.step < loop.target_step:
        if _stop_requested(stop, loop, setup):
            return True
        advance(loop, parts, setup, stream)
        if first:
            loop.first_step_s, first = _time_to_first_step(setup), False
        maybe_log(loop, setup)
        maybe_checkpoint(loop, parts, setup, progress)
        if setup.dist.is_main and cfg.preview_every and loop.step % cfg.preview_every == 0:
            preview_unet = preview_unet or new_preview_unet(setup)
            preview(loop, parts, setup, preview_unet)
        if setup.dist.is_main:
            total = shown_total(loop, first_step, started)
            emit(progress, Progress("train", loop.step, total, dict(loop.info)))
    return False


def _start(setup: Setup, parts: Parts, state: dict[str, Any] | None, progress) -> Loop:
    step = images_seen = 0
    seconds = 0.0
    if state is not None:
        restore(parts, setup, setup.resume_from)
        step, images_seen = int(state["step"]), int(state["images_seen"])
        seconds = float(state.get("seconds", 0.0))
        if setup.dist.is_main:
            truncate_metrics(setup.run_dir, step)
        emit(progress, Progress("train", step, None, message=f"resuming from step {step}"))
    n = len(setup.data)
    loop = Loop(
        step,
        images_seen,
        target_step(setup.config, step, images_seen, n, setup.global_batch),
        seconds,
    )
    if state is not None:
        loop.last_checkpoint, loop.last_checkpoint_step = setup.resume_from, step
        if loop.target_step <= step:
            message = f"the run is already at step {step}: ask for more epochs or steps"
            emit(progress, Progress("train", step, loop.target_step, message=message))
    return loop


def run_warnings(cfg: TrainConfig, device: Any, parameters: int, target: int) -> list[str]:
    """Warnings about a run that will not do what its user probably expects."""
    notes = []
    if cfg.lr_warmup_steps > target:
        notes.append(
            f"warning: the LR warm-up ({cfg.lr_warmup_steps} steps) is longer than the run "
            f"({target} steps), so the learning rate never reaches --lr {cfg.lr:g}; "
            f"set --lr-warmup-steps (e.g. {max(1, target // 10)})"
        )
    if device.type == "cpu" and parameters > CPU_LARGE_PARAMETERS:
        notes.append(
            f"warning: training the {cfg.preset!r} preset ({parameters / 1e6:.1f}M parameters) "
            "on the CPU takes seconds to minutes per step; use a GPU, or --preset tiny "
            "for a CPU run"
        )
    return notes


def _final_preview(loop: Loop, parts: Parts, setup: Setup, progress) -> None:
    """A preview of the last step unless one was just made, or it would be slow (the CPU)."""
    if loop.step % setup.config.preview_every == 0:
        return
    if setup.device.type != "cpu" or count_parameters(parts.unet) <= CPU_LARGE_PARAMETERS:
        preview(loop, parts, setup, new_preview_unet(setup))
    else:
        message = "end-of-run preview skipped on the CPU (`facediff grid` makes one)"
        emit(progress, Progress("train", loop.step, loop.target_step, message=message))


def _write_run_config(setup: Setup, parts: Parts) -> None:
    if not setup.dist.is_main:
        return
    setup.run_dir.mkdir(parents=True, exist_ok=True)
    cfg = {**run_config(setup), "parameters": count_parameters(parts.unet)}
    write_json_atomic(setup.run_dir / RUN_CONFIG_FILE, cfg)


def _cuda_graphs_note(setup: Setup, parts: Parts) -> str | None:
    """What the run says about CUDA graphs: that it replays them (asked for or auto), or
    why it cannot where ``--cuda-graphs`` asked; nothing when auto found they do not apply."""
    if parts.graphed is not None:
        why = "--cuda-graphs" if setup.config.cuda_graphs else "auto; --no-cuda-graphs: off"
        return (
            f"replaying the training step as a CUDA graph ({why}) after "
            f"{parts.graphed.warmup_steps} eager steps"
        )
    if setup.config.cuda_graphs:
        return f"note: {cuda_graphs_unsupported(setup)}: training without --cuda-graphs"
    return None


def _begin(
    setup: Setup,
    state: dict[str, Any] | None,
    notes: list[str],
    progress,
    log: str,
    time_budget_s: float | None = None,
) -> tuple[Parts, Loop]:
    """Data on the device, the model and optimizer (compiled or not), the loop's starting
    point, the run's warnings and ``config.json``: everything before the first step."""
    if setup.dist.is_main:
        setup.tracker = open_tracker(log, setup.run_dir)
    data_to_device(setup)
    graphed = graphs_apply(setup)
    planned = planned_images(
        setup.config, state, len(setup.data), setup.global_batch, time_budget_s, graphed
    )
    parts = build_parts(setup, planned)
    if isinstance(parts.forward, CompiledOrEager):
        why = "--compile" if setup.config.compile else f"auto: {planned:,} images planned"
        notes = [*notes, f"compiling the training step ({why}); the first step takes longer"]
    graph_note = _cuda_graphs_note(setup, parts)
    notes = [*notes, graph_note] if graph_note else notes
    for note in notes if setup.dist.is_main else ():
        emit(progress, Progress("train", 0, None, message=note))
    loop = _start(setup, parts, state, progress)
    if setup.dist.is_main:
        parameters = count_parameters(parts.unet)
        for note in run_warnings(setup.config, setup.device, parameters, loop.target_step):
            emit(progress, Progress("train", loop.step, loop.target_step, message=note))
    _write_run_config(setup, parts)
    return parts, loop


def _end(loop: Loop, parts: Parts, setup: Setup, progress, stopped: bool, first_step: int):
    """The final checkpoint, and a preview unless the run was stopped early."""
    if loop.budget_reached:
        loop.target_step = loop.step  # where the run ends: the progress bar shows it full
    if loop.budget_reached and setup.dist.is_main:
        message = f"time budget reached at step {loop.step}"
        emit(progress, Progress("train", loop.step, loop.target_step, message=message))
    if loop.step > 0:
        save(loop, parts, setup, progress)  # in the foreground, after any write in flight
    if setup.dist.is_main:
        collect_checkpoint(loop, setup, progress, wait=True)  # the last step's periodic one
    # A run stopped early (budget, signal) exits at once: the checkpoint is what counts.
    ran = loop.step > first_step
    if setup.dist.is_main and setup.config.preview_every and ran and not stopped:
        _final_preview(loop, parts, setup, progress)


def train(
    data_dir: Path,
    run_dir: Path,
    config: TrainConfig | None = None,
    *,
    model: ModelConfig | None = None,
    progress: ProgressCallback | None = None,
    stop: threading.Event | None = None,
    log: str = "none",
    time_budget_s: float | None = None,
    force: bool = False,
    **options: Any,
) -> TrainResult:
    """Train (or resume) a class-conditional diffusion model on a prepared dataset.

    The config is :func:`resume_config`'s: ``config``, else the run's saved config when
    resuming (or its ``config.json`` when it was stopped before its first checkpoint),
    else the defaults, with ``options`` (``max_steps=5000``, ``lr=1e-4``…)
    replacing its values, so ``train(data, run, max_steps=N)`` resumes a run as
    ``facediff train DATA --out RUN --max-steps N`` does. ``model`` overrides the preset
    architecture (Python API); a resumed run always takes its architecture from the
    checkpoint. ``stop`` (a :class:`threading.Event`, set e.g. by a signal handler) ends
    training after the current step with a checkpoint. ``time_budget_s`` does the same
    once that many seconds of wall time have passed since this call began (start-up
    included); a resumed run gets a new budget. Under ``torchrun`` this runs
    data-parallel (see :mod:`facediff.distributed`). ``log="tensorboard"`` also writes
    TensorBoard scalars and previews to ``<run>/tensorboard``. A ``run_dir`` that holds
    other files but is not a facediff run is refused unless ``force``.
    """
    began = time.perf_counter()
    check_tracker(log)
    if time_budget_s is not None and not time_budget_s > 0:
        raise ConfigError(f"the time budget must be a positive duration; got {time_budget_s}")
    # one trainer per run folder: the main process holds it (torchrun's others share it)
    held = folder_lock.writing(Path(run_dir)) if distributed.detect().is_main else None
    with held or contextlib.nullcontext():
        return _train(
            data_dir, run_dir, config, model, progress, stop, log, time_budget_s, force, began,
            options,
        )  # fmt: skip


def _train(
    data_dir: Path,
    run_dir: Path,
    config: TrainConfig | None,
    model: ModelConfig | None,
    progress: ProgressCallback | None,
    stop: threading.Event | None,
    log: str,
    time_budget_s: float | None,
    force: bool,
    began: float,
    options: dict[str, Any],
) -> TrainResult:
    check_run_dir(Path(run_dir), force)
    restarted = config is None and started_config(Path(run_dir)) is not None
    config = resume_config(Path(run_dir), config, **options)
    setup, state, notes = make_setup(Path(data_dir), Path(run_dir), config, model)
    if setup.device.type == "cpu":  # a batch too big is killed by the kernel, not an error
        check_fits(
            setup.model_config,
            setup.config.batch_size,
            setup.dtype,
            processes=setup.dist.local_world_size,
        )
    if restarted:
        notes.insert(
            0,
            f"note: {run_dir} was stopped before its first checkpoint: starting again at "
            f"step 0 with the settings of {Path(run_dir) / RUN_CONFIG_FILE} and the options "
            "given",
        )
    created = distributed.init(setup.dist, setup.device)
    loop: Loop | None = None
    try:
        parts, loop = _begin(setup, state, notes, progress, log, time_budget_s)
        if time_budget_s is not None:
            loop.deadline = began + float(time_budget_s)
        cfg, first_step = setup.config, loop.step
        stream = IndexStream(
            setup.data.labels, seed=cfg.seed, balance=cfg.balance, device=setup.device
        )
        stopped = run_loop(loop, parts, setup, stream, progress, stop)
        _end(loop, parts, setup, progress, stopped, first_step)
    finally:
        if loop is not None and loop.writer.busy:  # an error stopped the run mid-write
            with contextlib.suppress(BaseException):
                loop.writer.wait()  # the checkpoint it writes is complete, or not there
        if setup.tracker is not None:
            setup.tracker.close()
        distributed.shutdown(created)
    return TrainResult(
        run_dir=setup.run_dir,
        step=loop.step,
        epoch=loop.images_seen // len(setup.data),
        images_seen=loop.images_seen,
        checkpoint=loop.last_checkpoint,
        loss=loop.last_loss,
        seconds=time.perf_counter() - began,
        interrupted=stopped and not loop.budget_reached,
        budget_reached=loop.budget_reached,
    )
