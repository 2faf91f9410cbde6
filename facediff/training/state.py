"""What a training run holds: the fixed setup, the trainable parts, the loop's progress
and the result."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from facediff.config import ModelConfig, TrainConfig
from facediff.dataset import PreparedData
from facediff.distributed import DistInfo
from facediff.ema import EMA
from facediff.objective import NoiseSchedule
from facediff.training.writer import BackgroundWriter


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
    budget_reached: bool = False  # stopped early because the time budget ran out


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
    tracker: Any = None  # TensorBoard etc. (facediff.tracking), on the main process only
    #: training images per category code, in label order (``config.json`` records them)
    counts: dict[str, int] = field(default_factory=dict)

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
    graphed: Any = None  # a GraphedUpdate (--cuda-graphs), else None: the step runs eagerly


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
    deadline: float | None = None  # perf_counter() value at which the time budget runs out
    budget_reached: bool = False
    first_step_s: float | None = None  # process launch → first step of this session done
    writer: BackgroundWriter = field(default_factory=BackgroundWriter)  # periodic checkpoints
