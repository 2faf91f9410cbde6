"""One training step: a seeded batch, the optimizer step, EMA and loss bookkeeping."""

from __future__ import annotations

import functools

import torch

from facediff.batches import IndexStream
from facediff.config import TrainConfig, attribute_drop_rates
from facediff.dataset import PreparedData
from facediff.device import autocast
from facediff.objective import add_noise, diffusion_loss, loss_weights, target
from facediff.training.state import Loop, Parts, Setup

_SEED_STRIDE = 1_000_000_007


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
    """uint8 images → [-1, 1] floats with random flips; labels dropped to null w.p. cond_drop.

    Without attributes the labels are N (the category). With attributes they are
    N×(1+A): the category, then each attribute's value index, each column dropped to
    its own null independently (:func:`~facediff.config.attribute_drop_rates`) and
    unknown (-1) values always null. The attribute draws come after all the others,
    so flips and category dropout are those of a run without attributes.
    """
    x0 = data.images[idx].float().div_(127.5).sub_(1.0)
    n, dev = x0.shape[0], x0.device
    flip = torch.rand(n, generator=g, device=dev) < (0.5 if cfg.flip else 0.0)
    x0 = torch.where(flip.view(-1, 1, 1, 1), x0.flip(3), x0)
    drop = torch.rand(n, generator=g, device=dev) < cfg.cond_drop
    labels = torch.where(drop, len(data.categories), data.labels[idx])
    if data.attribute_labels is None or not data.attributes:
        return x0, labels
    rates, nulls = _attribute_tables(
        attribute_drop_rates(cfg, data.attributes.names), data.attributes.nulls(), dev
    )
    values = data.attribute_labels[idx]
    dropped = torch.rand(values.shape, generator=g, device=dev) < rates
    values = torch.where(dropped | (values < 0), nulls, values)
    return x0, torch.cat([labels.unsqueeze(1), values], dim=1)


@functools.lru_cache(maxsize=8)
def _attribute_tables(
    rates: tuple[float, ...], nulls: tuple[int, ...], device: torch.device
) -> tuple[torch.Tensor, torch.Tensor]:
    """The drop rates and null indices on the device, made once (a host-to-device copy
    every step would wait for the GPU)."""
    return torch.tensor(rates, device=device), torch.tensor(nulls, device=device)


StepInputs = tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor | None]


def step_inputs(parts: Parts, x0: torch.Tensor, labels: torch.Tensor, setup: Setup) -> StepInputs:
    """A step's random draws and what follows from them: noisy images, timesteps, labels,
    the regression target and the Min-SNR weights (None: uniform)."""
    cfg, g, s = setup.config, parts.generator, parts.schedule
    t = torch.randint(0, s.num_train_timesteps, (x0.shape[0],), generator=g, device=x0.device)
    noise = torch.randn(x0.shape, generator=g, device=x0.device)
    x_t = add_noise(s, x0, noise, t)
    if setup.channels_last:
        x_t = x_t.contiguous(memory_format=torch.channels_last)
    return x_t, t, labels, target(s, x0, noise, t), loss_weights(s, t, cfg.min_snr_gamma)


def update(parts: Parts, setup: Setup, inputs: StepInputs, *, cache_casts: bool = True):
    """Forward, loss, backward, gradient clipping and the optimizer step on ``inputs``; the
    gradients must be unset. Returns the (detached, on-device) loss. No host sync, so a
    CUDA graph can capture it (:mod:`facediff.cuda_graphs`, with ``cache_casts=False``)."""
    x_t, t, labels, goal, weights = inputs
    with autocast(setup.device, setup.dtype, cache=cache_casts):
        prediction = parts.forward(x_t, t, labels, return_dict=False)[0]
    loss = diffusion_loss(prediction, goal, weights)
    parts.scaler.scale(loss).backward()
    parts.scaler.unscale_(parts.optimizer)
    torch.nn.utils.clip_grad_norm_(parts.unet.parameters(), setup.config.grad_clip)
    parts.scaler.step(parts.optimizer)
    parts.scaler.update()
    return loss.detach()


def train_step(
    parts: Parts, x0: torch.Tensor, labels: torch.Tensor, setup: Setup, step: int
) -> torch.Tensor:
    """One optimizer step on a batch; returns the (detached, on-device) loss."""
    inputs = step_inputs(parts, x0, labels, setup)
    lr = lr_at(step, setup.config)
    if parts.graphed is not None:
        return parts.graphed(inputs, lr)
    for group in parts.optimizer.param_groups:
        group["lr"] = lr
    parts.optimizer.zero_grad(set_to_none=True)
    return update(parts, setup, inputs)


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


def advance(loop: Loop, parts: Parts, setup: Setup, stream: IndexStream) -> None:
    """One training step: batch, optimizer step, EMA update, loss bookkeeping."""
    cfg, rank = setup.config, setup.dist.rank
    idx = stream.batch(loop.images_seen, cfg.batch_size, rank)
    parts.generator.manual_seed(step_seed(cfg.seed, rank, loop.step))
    x0, labels = make_batch(setup.data, idx, parts.generator, cfg)
    loss = train_step(parts, x0, labels, setup, loop.step)
    parts.ema.update(loop.step, cfg.ema_decay)
    track_loss(loop, loss, loop.step)
    loop.step += 1
    loop.images_seen += setup.global_batch
