"""Sampling throughput: the original project's loop vs a DDPMPipeline-style loop vs facediff.

One process, one model (a preset with random weights, or a run/export via --weights):

(a) the original project's loop: DDPM, 1000 steps, one image at a time, fp32, no
    guidance; a few steps are timed and extrapolated to 1000;
(b) diffusers' DDPMPipeline style: DDPM, 1000 steps, a batch of images, fp32 (the
    pipeline default), no guidance; a subset of steps is timed and extrapolated;
(c) facediff's default sampling: ``facediff.generation.generate`` with its defaults
    (DPM-Solver++, 25 steps, classifier-free guidance 3, the deep cache every 3 steps),
    bf16 weights on a GPU, channels-last, large batches, torch.compile on CUDA; whole
    batches are timed.

FLOPs are counted with ``torch.utils.flop_counter`` for one image: a whole forward, and the
deep cache's shallow pass (``sample_throughput.recipe_flops``); achieved TFLOP/s =
images/s × FLOPs per image.

    python benchmarks/sample_vs_original.py                      # GPU: the 114M preset
    python benchmarks/sample_vs_original.py --device cpu --preset tiny --size 32  # ~2 min
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import time

import torch
from sample_throughput import pass_flops, recipe_flops

from facediff.categories import DEFAULT_CATEGORIES
from facediff.config import SampleConfig, preset
from facediff.device import resolve_device
from facediff.generation import generate, make_scheduler, prepare_denoiser
from facediff.loading import LoadedModel, load_for_inference
from facediff.mix import parse_mix
from facediff.model import build_unet, count_parameters, scheduler_config


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def load_model(args: argparse.Namespace) -> LoadedModel:
    if args.weights:
        return load_for_inference(args.weights)
    torch.manual_seed(0)
    cfg = preset(args.preset, sample_size=args.size, num_categories=len(DEFAULT_CATEGORIES))
    sched = scheduler_config(
        num_train_timesteps=1000, beta_schedule="squaredcos_cap_v2", prediction_type="epsilon"
    )
    unet = build_unet(cfg).eval().requires_grad_(False)
    return LoadedModel(unet, DEFAULT_CATEGORIES, cfg, sched, 0, None, "random")  # type: ignore[arg-type]


def ddpm_loop(
    unet: torch.nn.Module,
    loaded: LoadedModel,
    batch: int,
    timed_steps: int,
    device: torch.device,
) -> float:
    """Seconds per image for a 1000-step fp32 DDPM loop, extrapolated from ``timed_steps``.

    Mirrors DDPMPipeline: a scheduler step per timestep with a torch.Generator, no guidance
    (the null label, as the original's unconditional model).
    """
    size = loaded.model_config.sample_size
    sched = make_scheduler("ddpm", loaded.scheduler_config)
    sched.set_timesteps(1000)
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(batch, 3, size, size, generator=gen).to(device)
    labels = torch.full((batch,), loaded.categories.null_label, device=device)
    ts = sched.timesteps[: timed_steps + 2]
    with torch.inference_mode():
        for i, t in enumerate(ts):
            if i == 2:  # two warm-up steps
                sync(device)
                start = time.perf_counter()
            eps = unet(x, t.to(device), class_labels=labels).sample
            x = sched.step(eps, t, x, generator=gen).prev_sample
        sync(device)
    per_step = (time.perf_counter() - start) / timed_steps
    return per_step * len(sched.timesteps) / batch


def facediff_default(loaded: LoadedModel, args, batch: int, device: torch.device) -> float:
    """Seconds per image for facediff's default guided sampling (timed after a warm-up)."""
    cfg = SampleConfig()
    den = prepare_denoiser(loaded, device=device, precision=cfg.precision, compile=args.compile)
    mix = parse_mix(loaded.categories[0].code, loaded.categories)
    cfg = dataclasses.replace(cfg, batch_size=batch)
    # Warm-up: compilation and cuDNN autotuning see the same shapes with fewer steps.
    generate(den, mix, list(range(batch)), cfg, steps=2)
    sync(device)
    n = batch * args.batches
    start = time.perf_counter()
    generate(den, mix, list(range(n)), cfg)
    sync(device)
    return (time.perf_counter() - start) / n


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--device", default="auto")
    p.add_argument("--preset", default="diffusers-example")
    p.add_argument("--size", type=int, default=64)
    p.add_argument("--weights", help="a run or export folder instead of random weights")
    p.add_argument("--batch-size", type=int, nargs="+", help="(c) batch sizes to try")
    p.add_argument("--pipeline-batch-size", type=int, help="(b) batch size")
    p.add_argument("--timed-steps", type=int, help="DDPM steps timed for (a) and (b)")
    p.add_argument("--batches", type=int, help="(c) timed batches (GPU 3, CPU 1)")
    p.add_argument("--compile", action=argparse.BooleanOptionalAction, default=None)
    args = p.parse_args()
    device = resolve_device(args.device)
    gpu = device.type == "cuda"
    args.compile = gpu if args.compile is None else args.compile
    batches = args.batch_size or ([256] if gpu else [8])
    pipe_batch = args.pipeline_batch_size or (64 if gpu else 8)
    timed = args.timed_steps or (20 if gpu else 2)
    args.batches = args.batches or (3 if gpu else 1)

    loaded = load_model(args)
    size = loaded.model_config.sample_size
    # (a) and (b) run the model as the pipeline would: fp32, default memory format.
    fp32 = copy.deepcopy(loaded.unet).to(device).eval()
    passes = pass_flops(fp32, size)
    flops = passes[0]
    name = torch.cuda.get_device_name(device) if gpu else f"CPU ({torch.get_num_threads()} threads)"
    print(
        f"device: {name}; model: {args.weights or args.preset} at {size}x{size}, "
        f"{count_parameters(fp32) / 1e6:.1f}M parameters, {flops / 1e9:.2f} GFLOP per image "
        f"per evaluation"
    )
    cfg = SampleConfig()
    rows = []
    sec = ddpm_loop(fp32, loaded, 1, timed, device)
    rows.append(
        (
            "(a) original loop: DDPM, batch 1",
            "ddpm",
            1000,
            1.0,
            1,
            "fp32",
            sec,
            1000 * flops,  # one evaluation per step
            f"extrapolated from {timed} of 1000 steps",
        )
    )
    print(f"(a) {1 / sec:.4f} images/s")
    sec = ddpm_loop(fp32, loaded, pipe_batch, timed, device)
    rows.append(
        (
            f"(b) DDPMPipeline-style, batch {pipe_batch}",
            "ddpm",
            1000,
            1.0,
            pipe_batch,
            "fp32",
            sec,
            1000 * flops,  # one evaluation per step
            f"extrapolated from {timed} of 1000 steps",
        )
    )
    print(f"(b) {1 / sec:.4f} images/s")
    del fp32
    prec = "bf16" if gpu else "fp32"
    mix = parse_mix(loaded.categories[0].code, loaded.categories)  # what (c) samples
    image_flops = recipe_flops(passes, cfg, mix, loaded.categories.null_label)
    for b in batches:
        sec = facediff_default(loaded, args, b, device)
        note = f"{args.batches} batches timed after warm-up" + (
            ", compiled" if args.compile else ""
        )
        rows.append(
            (
                f"(c) facediff default, batch {b}",
                cfg.sampler,
                cfg.steps,
                cfg.guidance,
                b,
                prec,
                sec,
                image_flops,
                note,
            )
        )
        print(f"(c) batch {b}: {1 / sec:.3f} images/s")

    base = rows[0][6]
    pipe = rows[1][6]
    print()
    print(
        "| method | sampler | steps | guidance | batch | precision | images/s | vs (a) "
        "| vs (b) | TFLOP/s | note |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for label, sampler, steps, g, b, prec_, sec, image_flops, note in rows:
        tflops = image_flops / sec / 1e12
        print(
            f"| {label} | {sampler} | {steps} | {g:g} | {b} | {prec_} | {1 / sec:.3f} "
            f"| {base / sec:.1f}x | {pipe / sec:.2f}x | {tflops:.3g} | {note} |"
        )


if __name__ == "__main__":
    main()
