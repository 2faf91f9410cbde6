"""Where the device time of the default sampling and training goes (issue 13).

Runs the product's own sampling (:func:`facediff.generation.generate` on a denoiser from
:func:`~facediff.generation.prepare_denoiser`) or training steps
(:func:`facediff.training.step.advance` on :func:`~facediff.training.setup.build_parts`)
under ``torch.profiler`` after a warm-up (compilation, CUDA-graph capture), and sorts the
kernels' device time into kinds: convolution, matmul, attention, fused (inductor's Triton
kernels: norms, activations, adds), other elementwise, optimizer, copies. With the model's
FLOPs by kind (``FlopCounterMode``) it prints each kind's share of the time and, for
convolutions, matmuls and attention, the TFLOP/s their kernels reach, beside the wall time of
the profiled region: what a faster path could still win, and where. ``sample`` also prints
the memory an eager forward moves outside those kernels (:func:`eager_traffic`), the work
that fusion can shrink and that bandwidth bounds.

    python benchmarks/profile_kernels.py sample [RUN] --batch-size 256      # GPU
    python benchmarks/profile_kernels.py train DATA --batch-size 32         # GPU
    python benchmarks/profile_kernels.py --smoke                            # CPU, both, tiny

``RUN`` defaults to random weights of ``--preset`` (as ``sample_throughput.py``); the
compile/CUDA-graph choice is the product's auto policy unless ``--compile``/``--no-compile``
or ``--no-cuda-graphs``. Inductor knobs go in through its environment variables, e.g.
``TORCHINDUCTOR_MAX_AUTOTUNE=1``. On the CPU the kinds come from operator self times.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from sample_throughput import random_run, recipe_flops, sync  # noqa: E402

from facediff.compile_cache import CompiledOrEager  # noqa: E402
from facediff.config import SampleConfig, TrainConfig  # noqa: E402
from facediff.deep_cache import DeepCacheUNet  # noqa: E402
from facediff.device import resolve_device  # noqa: E402
from facediff.generation import generate, prepare_denoiser  # noqa: E402
from facediff.loading import load_for_inference  # noqa: E402
from facediff.mix import parse_mix  # noqa: E402
from facediff.model import build_unet  # noqa: E402

KINDS = ("convolution", "matmul", "attention", "fused", "elementwise", "optimizer", "copy")


def kind_of(name: str) -> str:
    """The kind of a kernel (GPU) or operator (CPU) by its name."""
    n = name.lower()
    if n.startswith("triton"):
        if n.startswith("triton_tem"):  # max-autotune's templates: conv or mm
            return "convolution" if "conv" in n else "matmul"
        return "fused"
    if any(k in n for k in ("flash", "fmha", "attention", "sdpa")):
        return "attention"
    if any(k in n for k in ("conv", "fprop", "dgrad", "wgrad", "cudnn", "winograd")):
        return "convolution"
    if any(k in n for k in ("gemm", "nvjet", "cutlass", "matmul", "aten::mm", "aten::addmm")):
        return "matmul"
    if any(k in n for k in ("aten::bmm", "aten::linear", "aten::baddbmm")):
        return "matmul"
    if any(k in n for k in ("adam", "multi_tensor", "foreach")):
        return "optimizer"
    if any(k in n for k in ("memcpy", "memset", "aten::copy_", "aten::to", "aten::clone")):
        return "copy"
    return "elementwise"


def flops_by_kind(fn) -> dict[str, float]:
    """FLOPs of ``fn()`` by kind (convolution, matmul, attention). Attention is counted
    with PyTorch's math kernel, whose batched matmuls are the UNet's only ones (its
    linear layers are ``mm``/``addmm``)."""
    from torch.nn.attention import SDPBackend, sdpa_kernel
    from torch.utils.flop_counter import FlopCounterMode

    with sdpa_kernel(SDPBackend.MATH), FlopCounterMode(display=False) as counter:
        fn()
    out = dict.fromkeys(("convolution", "matmul", "attention"), 0.0)
    for op, flops in counter.get_flop_counts().get("Global", {}).items():
        name = str(op)
        if "convolution" in name:
            out["convolution"] += float(flops)
        elif "bmm" in name or "attention" in name:
            out["attention"] += float(flops)
        else:
            out["matmul"] += float(flops)
    return out


#: Operators that move no memory (views) or run as convolution, matmul or attention kernels.
_NOT_TRAFFIC = ("convolution", "mm", "addmm", "bmm", "baddbmm", "view", "_unsafe_view", "t",
                "transpose", "permute", "expand", "unsqueeze", "squeeze", "split", "slice",
                "alias", "detach", "as_strided", "split_with_sizes")  # fmt: skip


def eager_traffic(fn) -> float:
    """Bytes the operators of ``fn()`` outside convolutions, matmuls, attention and views
    read and write (inputs + outputs of each: norms, activations, adds, concatenations,
    copies), as an eager run moves them; a compiled one fuses some of them away."""
    from torch.utils._python_dispatch import TorchDispatchMode

    def size(t) -> int:
        return t.numel() * t.element_size() if isinstance(t, torch.Tensor) else 0

    total = 0

    class Count(TorchDispatchMode):
        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            nonlocal total
            out = func(*args, **(kwargs or {}))
            name = func.overloadpacket.__name__
            if name not in _NOT_TRAFFIC and "attention" not in name:
                flat = [a for x in args for a in (x if isinstance(x, (list, tuple)) else [x])]
                outs = out if isinstance(out, (list, tuple)) else [out]
                total += sum(size(a) for a in flat) + sum(size(o) for o in outs)
            return out

    with torch.no_grad(), Count():
        fn()
    return float(total)


def device_times(prof, cuda: bool) -> dict[str, tuple[int, float, dict[str, float]]]:
    """Kind → (calls, seconds, {name: seconds}) from a finished profile: on a GPU the
    kernels' own events (the operators that launched them also carry their time, and
    inductor names its launch events after its kernels, so names alone would count some
    twice), on the CPU each operator's self time."""
    from torch.autograd import DeviceType

    want = DeviceType.CUDA if cuda else DeviceType.CPU
    out: dict[str, tuple[int, float, dict[str, float]]] = {}
    for e in prof.events():
        if e.device_type != want:
            continue
        t = (e.device_time_total if cuda else e.self_cpu_time_total) / 1e6
        if t <= 0:
            continue
        kind = kind_of(e.name)
        calls, total, names = out.get(kind, (0, 0.0, {}))
        names[e.name] = names.get(e.name, 0.0) + t
        out[kind] = (calls + 1, total + t, names)
    return out


def profiled(fn, device: torch.device, repeat: int):
    """Run ``fn`` ``repeat`` times under the profiler; (profile, wall seconds)."""
    from torch.profiler import ProfilerActivity, profile

    acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    sync(device)
    with profile(activities=acts) as prof:
        start = time.perf_counter()
        for _ in range(repeat):
            fn()
        sync(device)
        wall = time.perf_counter() - start
    return prof, wall


def report(title: str, prof, wall: float, flops: dict[str, float], device: torch.device) -> dict:
    """Print the table of kinds and the top kernels; the same as a dict."""
    cuda = device.type == "cuda"
    times = device_times(prof, cuda)
    busy = sum(t for _, t, _ in times.values())
    rows = []
    for k in KINDS:
        calls, t, _ = times.get(k, (0, 0.0, {}))
        tflops = flops.get(k, 0.0) / t / 1e12 if t and flops.get(k) else None
        rows.append(
            {
                "kind": k,
                "calls": calls,
                "ms": t * 1e3,
                "share": t / busy if busy else 0.0,
                "TFLOP/s": tflops,
            }
        )
    unit = "device" if cuda else "CPU self"
    print(
        f"\n{title}: wall {wall * 1e3:,.1f} ms, {unit} time {busy * 1e3:,.1f} ms "
        f"({busy / wall:.0%} of wall), {sum(flops.values()) / 1e12:.2f} TFLOP "
        f"({sum(flops.values()) / wall / 1e12:.1f} TFLOP/s over the wall time)"
    )
    if cuda and busy < 0.2 * wall:
        print("few kernels recorded: kernels a CUDA graph replays may be missing from the")
        print("profile (the images/s stand); --no-cuda-graphs records them all")
    print(f"| kind | calls | {unit} ms | share | TFLOP/s of its kernels |")
    print("|---|---:|---:|---:|---:|")
    for r in rows:
        tf = "" if r["TFLOP/s"] is None else f"{r['TFLOP/s']:.3g}"
        print(f"| {r['kind']} | {r['calls']:,} | {r['ms']:,.1f} | {r['share']:.1%} | {tf} |")
    top = sorted(
        ((t, name, k) for k, (_, _, names) in times.items() for name, t in names.items()),
        reverse=True,
    )[:15]
    print("top kernels:" if cuda else "top operators:")
    for t, name, k in top:
        print(f"  {t * 1e3:9.2f} ms  {k:11s}  {name[:110]}")
    return {
        "title": title,
        "wall s": wall,
        "busy s": busy,
        "flops": flops,
        "kinds": rows,
        "top": [{"ms": t * 1e3, "kind": k, "name": name} for t, name, k in top],
    }


def profile_sample(args, work: Path) -> dict:
    dev = resolve_device(args.device)
    run = Path(args.run) if args.run else random_run(work / "run", args.preset, args.size)
    loaded = load_for_inference(run)  # on the CPU, for counting; prepare_denoiser moves a copy
    mix = parse_mix(loaded.categories[0].code, loaded.categories)
    cfg = dataclasses.replace(SampleConfig(), batch_size=args.batch_size, device=str(dev))
    den = prepare_denoiser(
        loaded,
        device=dev,
        precision=args.precision,
        compile=args.compile,
        batch_size=args.batch_size,
        images=args.images,
        cuda_graphs=args.cuda_graphs,
    )
    seeds = list(range(args.batch_size))
    start = time.perf_counter()
    for _ in range(2):  # compilation, capture, cuDNN autotuning
        generate(den, mix, seeds, cfg, steps=3)
    sync(dev)
    warm = time.perf_counter() - start
    prof, wall = profiled(lambda: generate(den, mix, seeds, cfg), dev, args.repeat)
    cpu_unet = loaded.unet.float()
    x = torch.randn(1, 3, loaded.model_config.sample_size, loaded.model_config.sample_size)
    t, labels, split = torch.tensor([500]), torch.tensor([0]), DeepCacheUNet(cpu_unet)
    with torch.inference_mode():
        one = flops_by_kind(lambda: split(x, t, labels))  # the whole UNet
        features = split(x, t, labels)[1]
        shallow = flops_by_kind(lambda: split(x, t, labels, features))
    images = args.repeat * args.batch_size
    flops = {
        k: images * recipe_flops((v, shallow[k]), cfg, mix, den.null_label) for k, v in one.items()
    }
    half = cpu_unet.to(den.dtype)
    traffic = eager_traffic(
        lambda: half(x.to(den.dtype), torch.tensor([500]), class_labels=torch.tensor([0]))
    )
    print(
        f"per image and evaluation: {sum(one.values()) / 1e9:.1f} GFLOP "
        f"({one['convolution'] / 1e9:.1f} of convolution), {sum(shallow.values()) / 1e9:.1f} "
        f"in the deep cache's shallow pass; an eager forward in {den.dtype} moves "
        f"{traffic / 1e6:.0f} MB outside convolutions, matmuls and attention"
    )
    title = (
        f"sample: {cfg.sampler} {cfg.steps} steps, guidance {cfg.guidance:g}, deep cache "
        f"{cfg.deep_cache}, batch "
        f"{args.batch_size} x{args.repeat}, compiled {den.compiled}, CUDA graphs "
        f"{den.cuda_graphs}, {den.dtype}; warm-up {warm:.1f} s; "
        f"{args.repeat * args.batch_size / wall:,.1f} images/s profiled"
    )
    return report(title, prof, wall, flops, dev) | {"eager traffic per eval": traffic}


def profile_train(args, work: Path) -> dict:
    from facediff.batches import IndexStream
    from facediff.training.setup import build_parts, data_to_device, make_setup
    from facediff.training.state import Loop
    from facediff.training.step import advance

    cfg = TrainConfig(
        batch_size=args.batch_size,
        device=args.device,
        compile=args.compile,
        cuda_graphs=args.cuda_graphs,
        preset=args.preset,
    )
    setup, _, _ = make_setup(Path(args.data), work / "train-run", cfg, None)
    dev = setup.device
    data_to_device(setup)
    parts = build_parts(setup, planned_images=10**9 if args.compile is None else 0)
    loop = Loop(0, 0, 10**9, 0.0)
    stream = IndexStream(setup.data.labels, seed=cfg.seed, balance=cfg.balance, device=dev)
    start = time.perf_counter()
    for _ in range(args.warmup):
        advance(loop, parts, setup, stream)
    sync(dev)
    warm = time.perf_counter() - start

    def steps():
        for _ in range(args.steps):
            advance(loop, parts, setup, stream)

    prof, wall = profiled(steps, dev, args.repeat)
    images = args.repeat * args.steps * setup.global_batch
    with torch.device("meta"):  # FLOPs need shapes only: no weights, no initialisation
        shapes = build_unet(setup.model_config)
        size = setup.model_config.sample_size
        x, t, label = torch.randn(1, 3, size, size), torch.tensor([500]), torch.tensor([0])

    def fwd_bwd():
        shapes(x, t, class_labels=label)[0].square().mean().backward()

    one = flops_by_kind(fwd_bwd)
    flops = {k: v * images for k, v in one.items()}
    compiled = isinstance(parts.forward, CompiledOrEager)
    title = (
        f"train: batch {setup.global_batch}, {args.steps} steps x{args.repeat}, compiled "
        f"{compiled}, CUDA graphs {parts.graphed is not None}, {setup.dtype}; warm-up "
        f"{args.warmup} steps {warm:.1f} s; {images / wall:,.1f} images/s profiled"
    )
    return report(title, prof, wall, flops, dev)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("what", nargs="?", choices=("sample", "train"))
    p.add_argument("path", nargs="?", help="sample: a run (default random weights); train: DATA")
    p.add_argument("--preset", default="base")
    p.add_argument("--size", type=int, default=64, help="image size of the random run")
    p.add_argument("--device", default="auto")
    p.add_argument("--precision", default="auto", help="sample: auto (bf16 on a GPU), fp32…")
    p.add_argument("--batch-size", type=int, help="images per batch (sample 256, train 32)")
    p.add_argument("--images", type=int, default=100_000, help="sample: job size auto weighs")
    p.add_argument("--steps", type=int, default=20, help="train: profiled steps per repeat")
    p.add_argument("--warmup", type=int, default=30, help="train: steps before profiling")
    p.add_argument("--repeat", type=int, default=1)
    c = p.add_mutually_exclusive_group()
    c.add_argument("--compile", dest="compile", action="store_true", default=None)
    c.add_argument("--no-compile", dest="compile", action="store_false")
    p.add_argument("--no-cuda-graphs", dest="cuda_graphs", action="store_false", default=None)
    p.add_argument("--json", help="also write the report here")
    p.add_argument("--smoke", action="store_true", help="CPU, tiny preset at 16 px, both")
    args = p.parse_args()
    reports = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        if args.smoke:
            from facediff.synthetic import write_synthetic_prepared

            args.device, args.preset, args.size, args.steps, args.warmup = "cpu", "tiny", 16, 2, 1
            args.run, args.batch_size = None, 4
            reports.append(profile_sample(args, work))
            args.data = write_synthetic_prepared(work / "data", per_category=4, size=16)
            reports.append(profile_train(args, work))
        elif args.what == "sample":
            args.run, args.batch_size = args.path, args.batch_size or 256
            reports.append(profile_sample(args, work))
        elif args.what == "train":
            if not args.path:
                p.error("train needs DATA, a prepared dataset")
            args.data, args.batch_size = args.path, args.batch_size or TrainConfig().batch_size
            reports.append(profile_train(args, work))
        else:
            p.error("say sample or train (or --smoke)")
    if args.json:
        Path(args.json).write_text(json.dumps(reports, indent=2, default=str))


if __name__ == "__main__":
    main()
