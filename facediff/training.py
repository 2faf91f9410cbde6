"""``facediff train``: a class-conditional diffusion model from a prepared dataset.

The loop (:func:`run_loop`) is an orchestration of small steps — :func:`train_step`,
``EMA.update``, :func:`maybe_log`, :func:`maybe_checkpoint`, :func:`maybe_preview` —
in the manner of improved-diffusion's ``run_loop``.

Reproducibility and exact resume: every random draw of a step (timesteps, noise, label
dropout, flips) comes from a generator reseeded with ``(seed, rank, step)``, the batch
indices follow from ``images_seen`` (:mod:`facediff.batches`), the learning rate and
EMA decay from ``step``; the optimizer and grad-scaler states and the global torch RNG
(used only by dropout layers) are checkpointed. So "N steps, stop, resume, N more" gives
bit-identical weights to "2N steps" on the CPU.

Class conditioning with classifier-free guidance in mind: labels are replaced by the
null class with probability ``cond_drop`` (Ho & Salimans 2022, arXiv:2207.12598).
"""

from __future__ import annotations

import dataclasses
import math
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from facediff import __version__, distributed
from facediff.batches import IndexStream
from facediff.categories import CategoryMap
from facediff.checkpoint import (
    EMA_FILE,
    MODEL_FILE,
    RUN_CONFIG_FILE,
    latest_checkpoint,
    load_training_state,
    load_weights,
    read_state,
    save_checkpoint,
)
from facediff.config import (
    ARCHITECTURE_FIELDS,
    DEFAULT_EPOCHS,
    ModelConfig,
    TrainConfig,
    preset,
)
from facediff.dataset import PreparedData, load_prepared
from facediff.device import autocast, enable_fast_math, resolve_device, resolve_precision
from facediff.distributed import DistInfo
from facediff.ema import EMA
from facediff.errors import CheckpointError, TrainingDiverged
from facediff.files import write_json_atomic
from facediff.model import build_unet, count_parameters, scheduler_config
from facediff.objective import (
    NoiseSchedule,
    add_noise,
    diffusion_loss,
    loss_weights,
    make_schedule,
    target,
)
from facediff.previews import sample_preview, save_grid
from facediff.progress import Progress, ProgressCallback, emit
from facediff.training_log import append_metrics, plot_loss, truncate_metrics

PREVIEWS_DIR = "previews"
_SEED_STRIDE = 1_000_000_007


@dataclass
class TrainResult:
    run_dir: Path
    step: int
    epoch: int
    images_seen: int
    checkpoint: Path | None  # the newest checkpoint written (or resumed from)
    loss: float | None  # mean loss over the last log interval
    seconds: float  # wall time of this call
    interrupted: bool  # stopped early by the stop event (Ctrl-C / SIGTERM)


@dataclass
class Setup:
    """What is fixed for the whole run."""

    data: PreparedData
    run_dir: Path
    config: TrainConfig
    model_config: ModelConfig
    scheduler_config: dict[str, Any]
    device: torch.device
    dtype: torch.dtype
    dist: DistInfo
    resume_from: Path | None

    @property
    def global_batch(self) -> int:
        return self.config.batch_size * self.dist.world_size

    @property
    def channels_last(self) -> bool:
        return self.device.type == "cuda"


@dataclass
class Parts:
    """The trainable objects and their optimizer machinery."""

    unet: torch.nn.Module  # the plain module (its state_dict is what we save)
    forward: torch.nn.Module  # what the step calls: unet, DDP(unet) and/or compiled
    optimizer: torch.optim.Optimizer
    scaler: torch.amp.GradScaler
    ema: EMA
    schedule: NoiseSchedule
    generator: torch.Generator  # reseeded every step from (seed, rank, step)


@dataclass
class Loop:
    """Mutable progress of the loop."""

    step: int
    images_seen: int
    target_step: int
    seconds_before: float  # training time of earlier sessions of this run
    started: float = field(default_factory=time.perf_counter)
    loss_sum: torch.Tensor | None = None
    nonfinite: torch.Tensor | None = None
    first_bad_step: torch.Tensor | None = None
    steps_in_log: int = 0
    log_started: float = field(default_factory=time.perf_counter)
    last_loss: float | None = None
    info: dict[str, float | int | str] = field(default_factory=dict)
    last_checkpoint: Path | None = None
    last_checkpoint_step: int = -1


# ---------------------------------------------------------------- configuration


def saved_train_config(run_dir: Path) -> TrainConfig | None:
    """The training config of the newest checkpoint of ``run_dir`` (None for a new run)."""
    ckpt = latest_checkpoint(Path(run_dir))
    if ckpt is None:
        return None
    try:
        return TrainConfig.from_dict(read_state(ckpt)["train"])
    except (KeyError, TypeError) as e:
        raise CheckpointError(f"checkpoint {ckpt} lacks its training config ({e})") from None


def resume_config(run_dir: Path, config: TrainConfig | None = None, **options: Any) -> TrainConfig:
    """The config a run trains with (the resume policy of the CLI and the API alike).

    The base is ``config`` when given, else the run's saved config when it has a
    checkpoint, else the defaults; ``options`` (:class:`TrainConfig` fields, None = keep
    the base's value) replace its values. Giving ``epochs`` clears ``max_steps`` and the
    other way round; ``min_snr_gamma=0`` turns the weighting off (None).
    """
    given = {k: v for k, v in options.items() if v is not None}
    if given.get("min_snr_gamma") == 0:
        given["min_snr_gamma"] = None
    if "epochs" in given and "max_steps" not in given:
        given["max_steps"] = None
    elif "max_steps" in given and "epochs" not in given:
        given["epochs"] = None
    base = config or saved_train_config(run_dir) or TrainConfig()
    return dataclasses.replace(base, **given)


def _check_resumable(state: dict[str, Any], ckpt: Path, data: PreparedData, cfg: TrainConfig):
    """Refuse to resume on other categories or another architecture/objective."""
    try:
        saved_cats = CategoryMap.from_list(state["categories"])
        saved_train = state["train"]
        model_cfg = ModelConfig.from_dict(state["model"])
    except (KeyError, TypeError) as e:
        raise CheckpointError(f"checkpoint {ckpt} lacks its run config ({e})") from None
    if saved_cats.to_list() != data.categories.to_list():
        raise CheckpointError(
            f"cannot resume {ckpt.parent.parent}: it was trained on categories "
            f"{saved_cats.codes} and {data.path} has {data.categories.codes} "
            "(use a new --out folder)"
        )
    for name in ARCHITECTURE_FIELDS:
        if saved_train.get(name) != getattr(cfg, name):
            raise CheckpointError(
                f"cannot resume {ckpt.parent.parent} with --{name.replace('_', '-')} "
                f"{getattr(cfg, name)!r}: it was trained with {saved_train.get(name)!r} "
                "(leave the option out, or use a new --out folder)"
            )
    if model_cfg.sample_size != data.size:
        raise CheckpointError(
            f"cannot resume: the run is {model_cfg.sample_size}px and {data.path} is {data.size}px"
        )
    return model_cfg


def _setup(
    data_dir: Path, run_dir: Path, config: TrainConfig, model: ModelConfig | None
) -> tuple[Setup, dict[str, Any] | None, list[str]]:
    notes: list[str] = []
    data = load_prepared(Path(data_dir))
    info = distributed.detect()
    device = distributed.device_for(info, resolve_device(config.device))
    dtype = resolve_precision(config.precision, device)
    ckpt = latest_checkpoint(Path(run_dir))
    state = read_state(ckpt) if ckpt else None
    if state is not None:
        model_cfg = _check_resumable(state, ckpt, data, config)
        if model is not None and _arch(model) != _arch(model_cfg):
            raise CheckpointError(f"cannot resume {run_dir} with a different model architecture")
        if state.get("data", {}).get("fingerprint") != data.fingerprint:
            notes.append(
                f"note: {data.path} differs from the data this run was trained on "
                "(same categories): continuing on the new data"
            )
    elif model is not None:
        model_cfg = dataclasses.replace(
            model, sample_size=data.size, num_categories=len(data.categories)
        )
    else:
        model_cfg = preset(
            config.preset, sample_size=data.size, num_categories=len(data.categories)
        )
    sched = scheduler_config(
        num_train_timesteps=config.num_train_timesteps,
        beta_schedule=config.beta_schedule,
        prediction_type=config.prediction_type,
    )
    setup = Setup(data, Path(run_dir), config, model_cfg, sched, device, dtype, info, ckpt)
    return setup, state, notes


def _arch(cfg: ModelConfig) -> dict[str, Any]:
    return {k: v for k, v in cfg.to_dict().items() if k not in ("sample_size", "num_categories")}


def run_config(setup: Setup) -> dict[str, Any]:
    """The resolved configuration, as written to ``config.json`` and each ``state.json``."""
    return {
        "facediff_version": __version__,
        "train": setup.config.to_dict(),
        "model": setup.model_config.to_dict(),
        "categories": setup.data.categories.to_list(),
        "scheduler": setup.scheduler_config,
        "data": {"path": str(setup.data.path.resolve()), "fingerprint": setup.data.fingerprint},
        "world_size": setup.dist.world_size,
        "global_batch_size": setup.global_batch,
        "precision": str(setup.dtype).removeprefix("torch."),
    }


# ---------------------------------------------------------------- building


def build_parts(setup: Setup) -> Parts:
    """Model, EMA, optimizer (fused AdamW on CUDA), grad scaler (fp16 only), schedule."""
    cfg = setup.config
    torch.manual_seed(cfg.seed)  # same initial weights on every rank
    unet = build_unet(setup.model_config).to(setup.device)
    if setup.channels_last:
        unet = unet.to(memory_format=torch.channels_last)
    unet.train()
    optimizer = torch.optim.AdamW(
        unet.parameters(),
        lr=cfg.lr,
        betas=tuple(cfg.adam_betas),
        weight_decay=cfg.weight_decay,
        fused=setup.device.type == "cuda" or None,
    )
    scaler = torch.amp.GradScaler(setup.device.type, enabled=setup.dtype == torch.float16)
    forward: torch.nn.Module = unet
    if setup.dist.enabled:
        ids = [setup.device.index] if setup.device.type == "cuda" else None
        forward = torch.nn.parallel.DistributedDataParallel(unet, device_ids=ids)
    if cfg.compile:
        forward = torch.compile(forward)
    return Parts(
        unet=unet,
        forward=forward,
        optimizer=optimizer,
        scaler=scaler,
        ema=EMA(unet),
        schedule=make_schedule(setup.scheduler_config, setup.device),
        generator=torch.Generator(device=setup.device),
    )


def training_state(parts: Parts, setup: Setup) -> dict[str, Any]:
    """Optimizer, grad scaler and RNG states (tensors, numbers, strings: weights_only-safe)."""
    rng: dict[str, Any] = {"torch_cpu": torch.get_rng_state()}
    if setup.device.type == "cuda":
        rng["torch_cuda"] = torch.cuda.get_rng_state(setup.device)
    return {
        "optimizer": parts.optimizer.state_dict(),
        "grad_scaler": parts.scaler.state_dict() if parts.scaler.is_enabled() else {},
        "rng": rng,
    }


def restore(parts: Parts, setup: Setup, ckpt: Path) -> None:
    """Load weights, EMA, optimizer, scaler and RNG states from ``ckpt``."""
    ts = load_training_state(ckpt)
    try:
        parts.unet.load_state_dict(load_weights(ckpt / MODEL_FILE))
        parts.ema.load_state_dict(load_weights(ckpt / EMA_FILE))
        parts.optimizer.load_state_dict(ts["optimizer"])
        if parts.scaler.is_enabled() and ts.get("grad_scaler"):
            parts.scaler.load_state_dict(ts["grad_scaler"])
        torch.set_rng_state(ts["rng"]["torch_cpu"])
        if setup.device.type == "cuda" and "torch_cuda" in ts["rng"]:
            torch.cuda.set_rng_state(ts["rng"]["torch_cuda"], setup.device)
    except (KeyError, RuntimeError, ValueError, TypeError) as e:
        first_line = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise CheckpointError(f"checkpoint {ckpt} cannot be loaded: {first_line}") from None


# ---------------------------------------------------------------- one step


def lr_at(step: int, cfg: TrainConfig) -> float:
    """Linear warm-up to ``lr`` over ``lr_warmup_steps``, then constant."""
    if cfg.lr_warmup_steps <= 0:
        return cfg.lr
    return cfg.lr * min(1.0, (step + 1) / cfg.lr_warmup_steps)


def step_seed(seed: int, rank: int, step: int) -> int:
    return ((seed * _SEED_STRIDE + rank) * _SEED_STRIDE + step) % (2**63)


def make_batch(
    data: PreparedData, idx: torch.Tensor, g: torch.Generator, cfg: TrainConfig
) -> tuple[torch.Tensor, torch.Tensor]:
    """uint8 images → [-1, 1] floats with random flips; labels dropped to null w.p. cond_drop."""
    x0 = data.images[idx].float().div_(127.5).sub_(1.0)
    n, dev = x0.shape[0], x0.device
    flip = torch.rand(n, generator=g, device=dev) < (0.5 if cfg.flip else 0.0)
    x0 = torch.where(flip.view(-1, 1, 1, 1), x0.flip(3), x0)
    drop = torch.rand(n, generator=g, device=dev) < cfg.cond_drop
    labels = torch.where(drop, len(data.categories), data.labels[idx])
    return x0, labels


def train_step(
    parts: Parts, x0: torch.Tensor, labels: torch.Tensor, setup: Setup, step: int
) -> torch.Tensor:
    """One optimizer step on a batch; returns the (detached, on-device) loss."""
    cfg, g, s = setup.config, parts.generator, parts.schedule
    t = torch.randint(0, s.num_train_timesteps, (x0.shape[0],), generator=g, device=x0.device)
    noise = torch.randn(x0.shape, generator=g, device=x0.device)
    x_t = add_noise(s, x0, noise, t)
    if setup.channels_last:
        x_t = x_t.contiguous(memory_format=torch.channels_last)
    for group in parts.optimizer.param_groups:
        group["lr"] = lr_at(step, cfg)
    with autocast(setup.device, setup.dtype):
        prediction = parts.forward(x_t, t, labels, return_dict=False)[0]
    loss = diffusion_loss(
        prediction, target(s, x0, noise, t), loss_weights(s, t, cfg.min_snr_gamma)
    )
    parts.optimizer.zero_grad(set_to_none=True)
    parts.scaler.scale(loss).backward()
    parts.scaler.unscale_(parts.optimizer)
    torch.nn.utils.clip_grad_norm_(parts.unet.parameters(), cfg.grad_clip)
    parts.scaler.step(parts.optimizer)
    parts.scaler.update()
    return loss.detach()


def track_loss(loop: Loop, loss: torch.Tensor, step: int) -> None:
    """Accumulate the loss on the device (no host sync); remember the first bad step."""
    bad = ~torch.isfinite(loss)
    if loop.loss_sum is None:
        loop.loss_sum = torch.zeros((), device=loss.device)
        loop.nonfinite = torch.zeros((), device=loss.device)
        loop.first_bad_step = torch.full((), -1.0, device=loss.device)
    loop.loss_sum += loss.float()
    loop.nonfinite += bad.float()
    loop.first_bad_step = torch.where(
        bad & (loop.first_bad_step < 0), float(step), loop.first_bad_step
    )
    loop.steps_in_log += 1


# ---------------------------------------------------------------- periodic work


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


def maybe_log(
    loop: Loop,
    parts: Parts,
    setup: Setup,
    progress: ProgressCallback | None,
    *,
    force: bool = False,
) -> None:
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
    loop.loss_sum = loop.nonfinite = loop.first_bad_step = None
    loop.steps_in_log = 0
    loop.log_started = time.perf_counter()


def _weights_finite(parts: Parts) -> bool:
    flags = [torch.isfinite(p).all() for p in parts.unet.parameters()]
    return bool(torch.stack(flags).all().item())


def save(loop: Loop, parts: Parts, setup: Setup, progress: ProgressCallback | None) -> None:
    """Write a checkpoint of the current step (rank 0), after checking nothing diverged."""
    if loop.last_checkpoint_step == loop.step:
        return
    maybe_log(loop, parts, setup, progress, force=True)  # raises on a non-finite loss
    if not _weights_finite(parts):
        raise TrainingDiverged(f"training diverged: non-finite weights at step {loop.step}")
    if setup.dist.is_main:
        state = {
            **run_config(setup),
            "step": loop.step,
            "epoch": loop.images_seen // len(setup.data),
            "images_seen": loop.images_seen,
            "seconds": loop.seconds_before + (time.perf_counter() - loop.started),
            "loss": loop.last_loss,
        }
        loop.last_checkpoint = save_checkpoint(
            setup.run_dir,
            loop.step,
            model_state=parts.unet.state_dict(),
            ema_state=parts.ema.state_dict(),
            training_state=training_state(parts, setup),
            state=state,
            keep=setup.config.keep,
        )
        plot_loss(setup.run_dir)
        emit(
            progress,
            Progress(
                "train",
                loop.step,
                loop.target_step,
                dict(loop.info),
                message=f"checkpoint saved: {loop.last_checkpoint}",
            ),
        )
    loop.last_checkpoint_step = loop.step
    distributed.barrier(setup.dist)


def maybe_checkpoint(loop: Loop, parts: Parts, setup: Setup, progress) -> None:
    if loop.step % setup.config.checkpoint_every == 0:
        save(loop, parts, setup, progress)


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
    )
    path = setup.run_dir / PREVIEWS_DIR / f"step-{loop.step:08d}.png"
    return save_grid(images, len(setup.data.categories), path)


# ---------------------------------------------------------------- the loop


def target_step(cfg: TrainConfig, step: int, images_seen: int, n: int, global_batch: int) -> int:
    """The step to stop at: ``max_steps``, or enough steps to reach ``epochs`` epochs."""
    if cfg.max_steps is not None:
        return cfg.max_steps
    remaining = max(0, (cfg.epochs or DEFAULT_EPOCHS) * n - images_seen)
    return step + math.ceil(remaining / global_batch)


def _stop_requested(stop: threading.Event | None, loop: Loop, setup: Setup) -> bool:
    if stop is None:
        return False
    if not setup.dist.enabled:
        return stop.is_set()
    # All ranks must stop at the same step: agree at log boundaries only (one collective).
    if loop.step % setup.config.log_every != 0:
        return False
    return distributed.any_across(setup.dist, stop.is_set(), setup.device)


def advance(loop: Loop, parts: Parts, setup: Setup, stream: IndexStream) -> None:
    """One training step: batch, optimizer step, EMA update, loss bookkeeping."""
    cfg, rank = setup.config, setup.dist.rank
    idx = stream.batch(loop.images_seen, cfg.batch_size, rank, setup.dist.world_size)
    parts.generator.manual_seed(step_seed(cfg.seed, rank, loop.step))
    x0, labels = make_batch(setup.data, idx, parts.generator, cfg)
    loss = train_step(parts, x0, labels, setup, loop.step)
    parts.ema.update(loop.step, cfg.ema_decay)
    track_loss(loop, loss, loop.step)
    loop.step += 1
    loop.images_seen += setup.global_batch


def run_loop(
    loop: Loop,
    parts: Parts,
    setup: Setup,
    stream: IndexStream,
    progress: ProgressCallback | None,
    stop: threading.Event | None,
) -> bool:
    """Train until the target step; returns True if stopped early by ``stop``."""
    cfg = setup.config
    preview_unet = None
    while loop.step < loop.target_step:
        if _stop_requested(stop, loop, setup):
            return True
        advance(loop, parts, setup, stream)
        maybe_log(loop, parts, setup, progress)
        maybe_checkpoint(loop, parts, setup, progress)
        if setup.dist.is_main and cfg.preview_every and loop.step % cfg.preview_every == 0:
            preview_unet = preview_unet or _new_preview_unet(setup)
            preview(loop, parts, setup, preview_unet)
        if setup.dist.is_main:
            emit(progress, Progress("train", loop.step, loop.target_step, dict(loop.info)))
    return False


def _new_preview_unet(setup: Setup) -> torch.nn.Module:
    return build_unet(setup.model_config).to(setup.device).eval().requires_grad_(False)


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
            message = f"the run is already at step {step}: raise --epochs or --max-steps"
            emit(progress, Progress("train", step, loop.target_step, message=message))
    return loop


def _write_run_config(setup: Setup, parts: Parts) -> None:
    if not setup.dist.is_main:
        return
    setup.run_dir.mkdir(parents=True, exist_ok=True)
    cfg = {**run_config(setup), "parameters": count_parameters(parts.unet)}
    write_json_atomic(setup.run_dir / RUN_CONFIG_FILE, cfg)


def train(
    data_dir: Path,
    run_dir: Path,
    config: TrainConfig | None = None,
    *,
    model: ModelConfig | None = None,
    progress: ProgressCallback | None = None,
    stop: threading.Event | None = None,
    **options: Any,
) -> TrainResult:
    """Train (or resume) a class-conditional diffusion model on a prepared dataset.

    The config is :func:`resume_config`'s: ``config``, else the run's saved config when
    resuming, else the defaults, with ``options`` (``max_steps=5000``, ``lr=1e-4``…)
    replacing its values, so ``train(data, run, max_steps=N)`` resumes a run as
    ``facediff train DATA --out RUN --max-steps N`` does. ``model`` overrides the preset
    architecture (Python API); a resumed run always takes its architecture from the
    checkpoint. ``stop`` (a :class:`threading.Event`, set e.g. by a signal handler) ends
    training after the current step with a checkpoint. Under ``torchrun`` this runs
    data-parallel (see :mod:`facediff.distributed`).
    """
    began = time.perf_counter()
    config = resume_config(Path(run_dir), config, **options)
    setup, state, notes = _setup(Path(data_dir), Path(run_dir), config, model)
    created = distributed.init(setup.dist, setup.device)
    try:
        enable_fast_math(setup.device)
        data = setup.data
        data.images, data.labels = data.images.to(setup.device), data.labels.to(setup.device)
        parts = build_parts(setup)
        for note in notes if setup.dist.is_main else ():
            emit(progress, Progress("train", 0, None, message=note))
        loop = _start(setup, parts, state, progress)
        _write_run_config(setup, parts)
        stream = IndexStream(
            data.labels, seed=setup.config.seed, balance=setup.config.balance, device=setup.device
        )
        first_step = loop.step
        interrupted = run_loop(loop, parts, setup, stream, progress, stop)
        if loop.step > 0:
            save(loop, parts, setup, progress)
        every = setup.config.preview_every
        if setup.dist.is_main and every and loop.step > first_step and loop.step % every:
            preview(loop, parts, setup, _new_preview_unet(setup))
    finally:
        distributed.shutdown(created)
    return TrainResult(
        run_dir=setup.run_dir,
        step=loop.step,
        epoch=loop.images_seen // len(data),
        images_seen=loop.images_seen,
        checkpoint=loop.last_checkpoint,
        loss=loop.last_loss,
        seconds=time.perf_counter() - began,
        interrupted=interrupted,
    )
