"""Size and CPU/GPU speed of the model presets: parameters, forward GFLOPs per image
(``torch.utils.flop_counter.FlopCounterMode``; 1 multiply-add = 2 FLOPs) and training
images/s (fp32 on the CPU, facediff's own step via :func:`facediff.training.step.advance`).

    python benchmarks/preset_sizes.py --device cpu --size 64
"""

from __future__ import annotations

import argparse
import time

import torch
from torch.utils.flop_counter import FlopCounterMode
from train_throughput import facediff_arm, fake_data, sync

from facediff.config import PRESETS, preset
from facediff.device import resolve_device
from facediff.model import build_unet, count_parameters


def forward_gflops(cfg) -> float:
    unet = build_unet(cfg).eval()
    x = torch.randn(1, 3, cfg.sample_size, cfg.sample_size)
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        unet(x, torch.tensor([500]), torch.tensor([0]))
    return counter.get_total_flops() / 1e9


def train_images_per_s(cfg, device, batch: int, steps: int) -> float:
    step = facediff_arm(fake_data(cfg.sample_size), cfg, device, batch, False, "auto")
    step()  # warm-up
    sync(device)
    start = time.perf_counter()
    for _ in range(steps):
        step()
    sync(device)
    return batch * steps / (time.perf_counter() - start)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="cpu")
    p.add_argument("--size", type=int, default=64)
    p.add_argument("--presets", default=",".join(PRESETS))
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--steps", type=int, default=3)
    args = p.parse_args()
    device = resolve_device(args.device)
    print(
        f"| preset | parameters | GFLOPs/image (forward, {args.size}px) | "
        f"train images/s ({device.type}, batch {args.batch_size}) |"
    )
    print("|---|---:|---:|---:|")
    for name in args.presets.split(","):
        cfg = preset(name, sample_size=args.size, num_categories=3)
        params = count_parameters(build_unet(cfg)) / 1e6
        gf = forward_gflops(cfg)
        ips = train_images_per_s(cfg, device, args.batch_size, args.steps)
        print(f"| {name} | {params:.1f}M | {gf:.1f} | {ips:.2f} |", flush=True)


if __name__ == "__main__":
    main()
