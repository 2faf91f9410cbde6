"""Training throughput: diffusers' example training step vs facediff's, same UNet.

Both arms train the same class-conditional UNet (preset ``diffusers-example``: the 64×64
UNet of diffusers' ``examples/unconditional_image_generation/train_unconditional.py``,
block_out_channels (128,128,256,256,512,512), attention in the second-lowest level) in
this one process:

(a) the example's step as it does it: fp16 autocast + GradScaler on CUDA (fp32 on the
    CPU), batch 16, no compile, AdamW(lr 1e-4, betas (0.95, 0.999), wd 1e-6), a
    DataLoader-like batch assembled on the host (per-image random flip, uint8→float)
    and copied to the device every step, ε-MSE loss, grad clip 1.0, diffusers
    ``EMAModel`` update every step and ``loss.item()`` every step (its progress bar);
(b) facediff's step (:func:`facediff.training.step.advance`) at its best settings: bf16 where
    supported, channels_last, fused AdamW, torch.compile, a large batch, data resident
    on the device, all per-step randomness on the device, no host syncs.

Warm-up steps (including compilation) are excluded from timing; CUDA is synchronised
before every clock read. FLOPs of one training step (forward + backward) per image are
counted with ``torch.utils.flop_counter.FlopCounterMode``.

    python benchmarks/train_throughput.py                      # GPU: defaults
    python benchmarks/train_throughput.py --device cpu --size 32 --batch-size 32 --seconds 20
"""

from __future__ import annotations

import argparse
import gc
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

from facediff.batches import IndexStream
from facediff.categories import DEFAULT_CATEGORIES
from facediff.config import TrainConfig, preset
from facediff.dataset import PreparedData
from facediff.device import autocast, enable_fast_math, resolve_device, resolve_precision
from facediff.distributed import DistInfo
from facediff.model import build_unet, scheduler_config
from facediff.training import Loop, Setup, advance, build_parts

DATASET_IMAGES = 2048


def fake_data(size: int, seed: int = 0) -> PreparedData:
    g = torch.Generator().manual_seed(seed)
    images = torch.randint(0, 256, (DATASET_IMAGES, 3, size, size), dtype=torch.uint8, generator=g)
    labels = torch.randint(0, len(DEFAULT_CATEGORIES), (DATASET_IMAGES,), generator=g)
    manifest = {"packed": {"sha256": "benchmark"}}
    return PreparedData(images, labels, DEFAULT_CATEGORIES, size, manifest, Path("."))


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(step, device: torch.device, warmup: int, seconds: float, min_steps: int) -> float:
    """Seconds per step, after ``warmup`` untimed steps."""
    for _ in range(warmup):
        step()
    sync(device)
    steps, start = 0, time.perf_counter()
    while steps < min_steps or time.perf_counter() - start < seconds:
        step()
        steps += 1  # no sync here: CUDA runs ahead; the final sync closes the interval
    sync(device)
    return (time.perf_counter() - start) / steps


def train_flops_per_image(model_cfg, size: int) -> float:
    """FLOPs of forward + backward of one image (fp32, counted on the CPU)."""
    unet = build_unet(model_cfg)
    x = torch.randn(1, 3, size, size)
    with FlopCounterMode(display=False) as counter:
        out = unet(x, torch.tensor([500]), torch.tensor([0])).sample
        out.float().pow(2).mean().backward()
    return float(counter.get_total_flops())


def baseline_arm(data: PreparedData, model_cfg, device: torch.device, batch: int):
    """diffusers' train_unconditional.py step (see module docstring)."""
    from diffusers import DDPMScheduler
    from diffusers.training_utils import EMAModel

    torch.manual_seed(0)
    unet = build_unet(model_cfg).to(device).train()
    opt = torch.optim.AdamW(unet.parameters(), lr=1e-4, betas=(0.95, 0.999), weight_decay=1e-6)
    fp16 = device.type == "cuda"
    scaler = torch.amp.GradScaler(device.type, enabled=fp16)
    ema = EMAModel(unet.parameters(), decay=0.9999, use_ema_warmup=True, inv_gamma=1.0, power=0.75)
    ema.to(device)
    sched = DDPMScheduler(num_train_timesteps=1000, beta_schedule="linear")
    dtype = torch.float16 if fp16 else torch.float32

    def step() -> None:
        idx = torch.randint(0, len(data), (batch,))
        imgs = [data.images[i] for i in idx.tolist()]  # DataLoader: per-item transform
        imgs = [im.flip(2) if torch.rand(()) < 0.5 else im for im in imgs]
        clean = torch.stack([im.float() / 127.5 - 1 for im in imgs]).to(device)
        labels = data.labels[idx].to(device)
        noise = torch.randn(clean.shape, device=device)
        t = torch.randint(0, 1000, (batch,), device=device)
        noisy = sched.add_noise(clean, noise, t)
        with autocast(device, dtype):
            pred = unet(noisy, t, labels).sample
        loss = F.mse_loss(pred.float(), noise)
        scaler.scale(loss).backward()
        scaler.unscale_(opt)
        torch.nn.utils.clip_grad_norm_(unet.parameters(), 1.0)
        scaler.step(opt)
        scaler.update()
        opt.zero_grad()
        ema.step(unet.parameters())
        loss.detach().item()  # the example logs the loss every step

    return step


def facediff_arm(data, model_cfg, device, batch: int, compile_: bool, precision: str):
    cfg = TrainConfig(
        preset="diffusers-example", batch_size=batch, compile=compile_, precision=precision
    )
    dtype = resolve_precision(precision, device)
    sched = scheduler_config(
        num_train_timesteps=cfg.num_train_timesteps,
        beta_schedule=cfg.beta_schedule,
        prediction_type=cfg.prediction_type,
    )
    data.images, data.labels = data.images.to(device), data.labels.to(device)
    setup = Setup(data, Path("."), cfg, model_cfg, sched, device, dtype, DistInfo(), None)
    parts = build_parts(setup)
    stream = IndexStream(data.labels, seed=0, balance=False, device=device)
    loop = Loop(step=0, images_seen=0, target_step=0, seconds_before=0.0)

    def step() -> None:
        advance(loop, parts, setup, stream)
        if loop.steps_in_log >= 50:  # what maybe_log does, minus the file write
            loop.loss_sum.item()
            loop.loss_sum = loop.nonfinite = loop.first_bad_step = None
            loop.steps_in_log = 0

    return step


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="auto")
    p.add_argument("--preset", default="diffusers-example")
    p.add_argument("--size", type=int, default=64)
    p.add_argument("--seconds", type=float, default=30.0, help="timed seconds per arm")
    p.add_argument("--batch-size", type=int, default=256, help="facediff arm's batch")
    p.add_argument("--baseline-batch-size", type=int, default=16)
    p.add_argument("--precision", default="auto", help="facediff arm's precision")
    p.add_argument("--compile", dest="compile", action="store_true", default=None)
    p.add_argument("--no-compile", dest="compile", action="store_false")
    p.add_argument("--warmup-steps", type=int, default=None)
    p.add_argument("--min-steps", type=int, default=None)
    args = p.parse_args()

    device = resolve_device(args.device)
    cuda = device.type == "cuda"
    compile_ = cuda if args.compile is None else args.compile
    warmup = args.warmup_steps if args.warmup_steps is not None else (20 if cuda else 1)
    min_steps = args.min_steps if args.min_steps is not None else (20 if cuda else 2)
    enable_fast_math(device)
    model_cfg = preset(args.preset, sample_size=args.size, num_categories=len(DEFAULT_CATEGORIES))
    flops = train_flops_per_image(model_cfg, args.size)
    name = (
        torch.cuda.get_device_name(device) if cuda else f"CPU ({torch.get_num_threads()} threads)"
    )
    print(
        f"device: {name}; preset {args.preset} at {args.size}px; "
        f"{flops / 1e9:.1f} GFLOP per image per training step"
    )

    rows = []
    step = baseline_arm(fake_data(args.size), model_cfg, device, args.baseline_batch_size)
    s = timed(step, device, warmup, args.seconds, min_steps)
    a_ips = args.baseline_batch_size / s
    rows.append(
        (
            "(a) diffusers example",
            "fp16+GradScaler" if cuda else "fp32",
            args.baseline_batch_size,
            "no",
            a_ips,
        )
    )
    del step
    gc.collect()
    if cuda:
        torch.cuda.empty_cache()
    step = facediff_arm(
        fake_data(args.size), model_cfg, device, args.batch_size, compile_, args.precision
    )
    s = timed(step, device, warmup, args.seconds, min_steps)
    b_ips = args.batch_size / s
    dtype = str(resolve_precision(args.precision, device)).removeprefix("torch.")
    rows.append(
        (
            "(b) facediff",
            dtype + (", channels_last, fused AdamW" if cuda else ""),
            args.batch_size,
            "yes" if compile_ else "no",
            b_ips,
        )
    )

    print("\n| arm | precision / layout | batch | compile | images/s | TFLOP/s |")
    print("|---|---|---:|---|---:|---:|")
    for arm, prec, batch, comp, ips in rows:
        print(f"| {arm} | {prec} | {batch} | {comp} | {ips:,.1f} | {ips * flops / 1e12:.2f} |")
    print(f"\nspeed-up (b)/(a): {b_ips / a_ips:.2f}x")


if __name__ == "__main__":
    main()
