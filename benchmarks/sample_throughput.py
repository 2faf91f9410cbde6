"""Sampling speed of the default path (issue 13), each number against eager in the same run.

1. Processes, as a user runs them: ``python -m facediff sample`` subprocesses, each given its
   own ``XDG_CACHE_HOME`` so "cold" means an empty compile cache and "warm" the cache the
   previous row left. ``sample RUN`` with no flags at all (cold, then warm), then a throughput
   job ``-c CODE -n N --batch-size B`` with ``--no-compile --no-cuda-graphs`` (the eager
   baseline), the default (auto) cold, ``--compile`` cold, the default warm and ``--compile``
   warm. Columns: time to
   first image (process launch → first PNG on disk; ``sample`` writes each batch's PNGs when
   the batch is done, so it includes start-up, any compilation and one batch), wall time, images/s
   of the sampling loop (compilation included, as ``sample --json`` reports it), TFLOP/s,
   speed-up over eager, and pixel |Δ| against the eager job (same seeds).
2. One process, steady state (after a warm-up batch): eager, ``torch.compile`` and, on a
   GPU, eager + CUDA graphs (``--cuda-graphs``) and ``torch.compile(mode="reduce-overhead")``
   (compiled CUDA graphs), with the uint8 images
   compared to eager's (max and mean |Δ| over pixels). On a GPU, fp32 eager against bf16
   eager is the yardstick: a compiled path is "same" when its |Δ| to bf16 eager is at most
   that of fp32 (bf16's own rounding), else "DIFFERS".
3. Break-even: the images a cold (and warm) compile must be amortised over, from rows 1
   and 2 — the numbers for ``facediff.compile_cache.COLD_MIN_IMAGES``/``WARM_MIN_IMAGES``.
4. ``--sweep WORK``: DPM-Solver++ and UniPC at 10/15/20/25 steps (``--sweep-samplers``,
   ``--sweep-steps``) from a ``benchmarks/time_to_fid.py run`` work folder's run (or
   ``--sweep-run RUN``), samples proportional to the held-out split written to
   ``WORK/steps-sweep`` for ``python benchmarks/time_to_fid.py score WORK/steps-sweep``
   (FID/KID, colour cast). ``--sweep-interval LO,HI`` adds the default recipe guided only
   for noise levels σ in (LO, HI] (``facediff sample --guidance-interval``);
   ``--sweep-spacings time,logsnr`` sweeps both step spacings and ``--sweep-guidance 2,2.5``
   runs the swept rows at those guidance scales instead of the default's;
   ``--sweep-deep-cache 1,2`` adds the default recipe with those deep-cache intervals
   (``facediff sample --deep-cache``; 1: the exact model). The default
   recipe is always swept, listed or not. Every setting uses the same seeds; one more row
   repeats the default recipe with other seeds, so the table shows how far two sample sets
   of one recipe differ by chance alone.
   ``--sweep-only`` skips sections 1-3.

Compiled rows run on CUDA only unless ``--compile-on-cpu`` (inductor's C++ build takes
minutes on a small CPU). FLOPs per evaluation are counted with ``torch.utils.flop_counter``.

    python benchmarks/sample_throughput.py               # GPU: base preset, random weights
    python benchmarks/sample_throughput.py RUN -n 567 --batch-size 256 --sweep WORK
    python benchmarks/sample_throughput.py --smoke       # CPU, tiny preset, about a minute

On a GPU the default call runs seven ``facediff sample`` processes (one compiles cold, about
1.5 minutes for the ``base`` preset) and four models in one process (the compiled ones reuse
that cache; CUDA graphs may add a compile): budget about 8 minutes; ``--sweep`` in a second call.
``--quick`` keeps only what issue 13's targets need, about half of that: ``sample RUN`` cold
and warm, the eager baseline, ``--compile`` cold (which warms the cache) and the default warm;
steady eager and compiled. ``--steady-only --variants graphs --batch-size 8`` times only
section 2's eager model against eager + CUDA graphs (``--cuda-graphs``, no compiling) at a
small batch, where per-step overhead dominates.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from facediff import compile_cache  # noqa: E402
from facediff.categories import DEFAULT_CATEGORIES  # noqa: E402
from facediff.checkpoint import save_checkpoint  # noqa: E402
from facediff.config import SampleConfig, TrainConfig, preset  # noqa: E402
from facediff.deep_cache import DeepCacheUNet  # noqa: E402
from facediff.device import resolve_device, resolve_precision  # noqa: E402
from facediff.generation import (  # noqa: E402
    compile_choice,
    forward_batches,
    generate,
    mix_conditions,
    prepare_denoiser,
)
from facediff.guidance import runs_whole  # noqa: E402
from facediff.loading import load_for_inference  # noqa: E402
from facediff.mix import Mix, parse_mix, resolve_mixes  # noqa: E402
from facediff.model import build_unet, count_parameters, scheduler_config  # noqa: E402

COLUMNS = (
    "row",
    "flags",
    "cache",
    "compiled",
    "first image s",
    "wall s",
    "images/s",
    "TFLOP/s",
    "vs eager",
    "max |Δ|",
    "mean |Δ|",
    "note",
)
SWEEP_SAMPLERS = "dpmsolver++,unipc"
SWEEP_STEPS = "10,15,20,25"


def random_run(folder: Path, name: str, size: int) -> Path:
    """A run folder holding one checkpoint of preset ``name`` with random weights."""
    cfg = preset(name, sample_size=size, num_categories=len(DEFAULT_CATEGORIES))
    torch.manual_seed(0)
    weights = build_unet(cfg).state_dict()
    sched = scheduler_config(
        num_train_timesteps=1000, beta_schedule="squaredcos_cap_v2", prediction_type="v_prediction"
    )
    state = {
        "step": 1,
        "epoch": 1,
        "images_seen": 1,
        "model": cfg.to_dict(),
        "categories": DEFAULT_CATEGORIES.to_list(),
        "scheduler": sched,
        "train": TrainConfig(preset=name).to_dict(),
        "data": {"path": "random", "fingerprint": "0" * 64},
    }
    save_checkpoint(
        folder, 1, model_state=weights, ema_state=weights, training_state={}, state=state
    )
    return folder


Passes = tuple[float, float]  # FLOPs of one image's whole UNet forward, and shallow pass


def pass_flops(unet: torch.nn.Module, size: int, label: int = 0) -> Passes:
    """Model FLOPs (convolutions, matmuls, attention) of one image's whole UNet forward
    and of the deep cache's shallow pass (:class:`~facediff.deep_cache.DeepCacheUNet`),
    counted on the UNet's device in its dtype for class ``label``."""
    from torch.utils.flop_counter import FlopCounterMode

    param = next(unet.parameters())
    x = torch.randn(1, 3, size, size, device=param.device, dtype=param.dtype)
    t, labels = torch.tensor([500], device=x.device), torch.tensor([label], device=x.device)
    split = DeepCacheUNet(unet)
    with torch.inference_mode():
        with FlopCounterMode(display=False) as whole:
            _, features = split(x, t, labels)
        with FlopCounterMode(display=False) as shallow:
            split(x, t, labels, features)
    return float(whole.get_total_flops()), float(shallow.get_total_flops())


def recipe_flops(passes: Passes, cfg: SampleConfig, mix: Mix, null: int) -> float:
    """FLOPs per image of ``mix`` sampled with ``cfg``: every step evaluates the mix's
    label rows (2 for a guided category, 3 for a pair, 4 for OIE), with the whole UNet at
    the steps that run it (all of them at ``deep_cache=1``) and the shallow pass between."""
    rows = len(mix_conditions(mix, cfg.mix_mode, cfg.guidance, null).labels)
    whole = sum(runs_whole(i, cfg.deep_cache) for i in range(cfg.steps))
    return rows * (whole * passes[0] + (cfg.steps - whole) * passes[1])


def job_flops(passes: Passes, jobs: list[tuple[Mix, int]], cfg: SampleConfig, null: int) -> float:
    """FLOPs per image of a job of ``(mix, images)`` sampled with ``cfg``."""
    total = sum(n * recipe_flops(passes, cfg, mix, null) for mix, n in jobs)
    return total / max(1, sum(n for _, n in jobs))


def child_env(cache_home: Path | None, extra: dict[str, str] | None = None) -> dict[str, str]:
    """This checkout importable, no inductor/Triton overrides, the compile cache under
    ``cache_home`` (None: the user's own) and ``extra`` on top."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TORCHINDUCTOR_", "TRITON_"))}
    path = env.get("PYTHONPATH")
    env.update(PYTHONPATH=str(ROOT) + (os.pathsep + path if path else ""), PYTHONUNBUFFERED="1")
    if cache_home is not None:
        env["XDG_CACHE_HOME"] = str(cache_home)
    env.update(extra or {})
    return env


def run_sample(
    run: Path,
    out: Path,
    flags: list[str],
    cache_home: Path | None,
    device: str,
    extra_env: dict[str, str] | None = None,
) -> dict:
    """Launch ``facediff sample``; time the first PNG and the exit; its --json summary."""
    cmd = [sys.executable, "-m", "facediff", "sample", str(run), "--out", str(out), "--json"]
    cmd += ["--quiet", "--device", device, *flags]
    env = child_env(cache_home, extra_env)
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    first = None
    while proc.poll() is None:
        if first is None and next(out.rglob("*.png"), None) is not None:
            first = time.perf_counter() - start
        time.sleep(0.02)
    wall = time.perf_counter() - start
    stdout, stderr = proc.communicate()
    if proc.returncode != 0:
        raise SystemExit(f"failed ({proc.returncode}): {' '.join(cmd)}\n{stderr[-3000:]}")
    if first is None:
        first = wall
    summary = json.loads(stdout)
    return {"first": first, "wall": wall, "rate": summary["images_per_second"], "out": out}


def pixels(out: Path) -> torch.Tensor:
    import numpy as np
    from PIL import Image

    files = sorted(out.rglob("*.png"))
    return torch.stack([torch.from_numpy(np.array(Image.open(f).convert("RGB"))) for f in files])


def diff(a: torch.Tensor, b: torch.Tensor) -> tuple[float, float]:
    d = (a.int() - b.int()).abs().float()
    return float(d.max()), float(d.mean())


def artifacts(home: Path) -> dict[str, int]:
    """The compile-cache artifacts under a cache home, with their modification times."""
    return {str(f): f.stat().st_mtime_ns for f in home.rglob("*.bin")} if home.exists() else {}


def process_plan(args, work: Path) -> list[tuple[str, list[str], Path, str, bool | None]]:
    """Section 1's processes in order: (row, flags, cache home, cache state, --compile)."""
    cold_a, cold_b = work / "cache-a", work / "cache-b"  # default's cache, --compile's
    job = ["-c", args.category, "-n", str(args.n), "--batch-size", str(args.batch_size)]
    label = "sample RUN (no flags)" if not args.smoke else "sample RUN -n 1 (smoke)"
    plain = [] if not args.smoke else ["-n", "1"]
    plan = [
        (label, plain, cold_a, "cold", None),
        (label, plain, cold_a, "warm", None),
        ("eager baseline", [*job, "--no-compile", "--no-cuda-graphs"], cold_a, "-", False),
        ("default (auto)", job, work / "cache-c", "cold", None),
    ]
    compiled_ok = args.device_obj.type == "cuda" or args.compile_on_cpu
    if compiled_ok:
        plan += [
            ("--compile", [*job, "--compile"], cold_b, "cold", True),
            ("default (auto)", job, cold_b, "warm", None),
            ("--compile", [*job, "--compile"], cold_b, "warm", True),
        ]
    if args.quick:
        # The default's cold row is eager below COLD_MIN_IMAGES (the baseline already says
        # how fast that is) and --compile warm compiles as the default warm does.
        skip = {("default (auto)", "cold"), ("--compile", "warm")}
        plan = [p for p in plan if (p[0], p[3]) not in skip]
    return plan


def job_shapes(args, job_row: bool) -> tuple[list[tuple[Mix, int]], SampleConfig, tuple[int, ...]]:
    """The ``(mix, images)`` of the throughput job (``job_row``) or of ``sample RUN`` with
    no flags (every category and mix at the default n and batch), its sampling settings
    and the UNet batch sizes it calls."""
    cats = args.categories
    if job_row:
        mixes, n, cfg = (
            [parse_mix(args.category, cats)],
            args.n,
            SampleConfig(batch_size=args.batch_size),
        )
    else:
        mixes, n, cfg = resolve_mixes(cats), args.default_n, SampleConfig()
    shapes = forward_batches([(m, None, n) for m in mixes], cfg, cats.null_label)
    return [(m, n) for m in mixes], cfg, shapes


def process_rows(args, run: Path, work: Path, passes: Passes) -> list[dict]:
    """Section 1: subprocesses with cold and warm compile caches."""
    plan = process_plan(args, work)
    rows, eager = [], None
    for k, (label, flags, home, state, setting) in enumerate(plan):
        # What the policy decides for this job (the function ``sample`` asks).
        job_row = "--batch-size" in flags
        jobs, cfg, shapes = job_shapes(args, job_row)
        images = sum(n for _, n in jobs)
        compiled, _, _ = compile_choice(
            args.model_config,
            args.device_obj,
            args.dtype,
            setting,
            images=images,
            shapes=shapes,
            deep_cache=cfg.deep_cache,
            cache_root=compile_cache.cache_root(home),  # the child process's cache
        )
        flops = job_flops(passes, jobs, cfg, args.categories.null_label)
        before = artifacts(home)
        r = run_sample(run, work / f"out-{k}", flags, home, args.device)
        n = len(list(r["out"].rglob("*.png")))
        written = artifacts(home) != before
        row = {
            "row": label,
            "flags": " ".join(flags) if job_row else "(none)",
            "cache": state,
            "compiled": "yes" if compiled else "no",
            "first image s": r["first"],
            "wall s": r["wall"],
            "images/s": r["rate"],
            "TFLOP/s": r["rate"] * flops / 1e12,
            "images": n,
            "note": f"{n} images" + ("; compile cache written" if compiled and written else ""),
        }
        if setting is False:
            eager = row
        rows.append(row)
        print(json.dumps(row, default=str), flush=True)
    base = pixels(work / f"out-{rows.index(eager)}") if eager is not None else None
    for k, row in enumerate(rows):
        if base is not None and row["flags"] != "(none)":
            row["vs eager"] = row["images/s"] / eager["images/s"]
            row["max |Δ|"], row["mean |Δ|"] = diff(pixels(work / f"out-{k}"), base)
    return rows


#: Section 2's models by ``--variants`` name: (row, compiled, CUDA graphs, precision).
VARIANTS = {
    "eager": ("eager", False, False, "auto"),
    "fp32": ("eager fp32 (yardstick)", False, False, "fp32"),
    "graphs": ("eager + CUDA graphs", False, True, "auto"),
    "compile": ("torch.compile", True, False, "auto"),
    "compile+graphs": ("torch.compile + CUDA graphs", True, True, "auto"),
}


def steady_variants(args, dev: torch.device) -> list[tuple[str, bool, bool, str]]:
    """Section 2's models in order, eager first (the reference): ``--variants``, else
    all of them on a GPU (``--quick``: eager and compiled), eager alone on the CPU (and
    compiled with ``--compile-on-cpu``)."""
    if args.variants:
        names = ["eager", *[v for v in args.variants if v != "eager"]]
    elif dev.type == "cuda":
        names = ["eager", "compile"] if args.quick else list(VARIANTS)
    else:
        names = ["eager", "compile"] if args.compile_on_cpu else ["eager"]
    return [VARIANTS[name] for name in names]


def steady_rows(args, run: Path, passes: Passes) -> list[dict]:
    """Section 2: steady-state images/s in one process; images compared to eager."""
    dev = args.device_obj
    cfg = dataclasses.replace(SampleConfig(), batch_size=args.batch_size, device=args.device)
    seeds = list(range(args.batch_size * args.batches))
    rows, ref, fp32_gap = [], None, None
    for label, comp, graphs, precision in steady_variants(args, dev):
        loaded = load_for_inference(run, device=dev, dtype=resolve_precision(precision, dev))
        mix = parse_mix(loaded.categories[0].code, loaded.categories)
        null = loaded.categories.null_label
        den = prepare_denoiser(
            loaded,
            device=dev,
            precision=precision,
            compile=comp,
            batch_size=args.batch_size,
            images=len(seeds),
            cuda_graphs=graphs,
            deep_cache=cfg.deep_cache,
        )
        # warm-up (compile, capture), then the timed images
        warmup, images, rate = warm_then_time(den, mix, seeds, cfg, args.batch_size, steps=3)
        row = {
            "row": f"steady: {label}",
            "flags": f"batch {args.batch_size}",
            "cache": "-",
            "compiled": "yes" if den.compiled else "no",
            "first image s": None,
            "wall s": warmup,
            "images/s": rate,
            "TFLOP/s": rate * recipe_flops(passes, cfg, mix, null) / 1e12,
            "note": f"wall s = warm-up batch (compilation); {len(seeds)} images timed",
        }
        if ref is None:
            ref = images
        else:
            row["max |Δ|"], row["mean |Δ|"] = diff(images, ref)
            row["vs eager"] = rate / rows[0]["images/s"]
            if precision == "fp32":
                fp32_gap = row["mean |Δ|"]
            elif fp32_gap is not None:
                same = row["mean |Δ|"] <= fp32_gap
                row["note"] += "; same as eager within bf16" if same else "; DIFFERS from eager"
        rows.append(row)
        print(json.dumps(row, default=str), flush=True)
        for steps in args.steady_steps:  # fewer evaluations, same model and shapes
            fewer = dataclasses.replace(cfg, steps=steps)
            start = time.perf_counter()
            generate(den, mix, seeds, fewer)
            sync(dev)
            took = time.perf_counter() - start
            rate = len(seeds) / took
            extra = {
                **row,
                "row": f"steady: {label}, {steps} steps",
                "wall s": took,
                "images/s": rate,
                "TFLOP/s": rate * recipe_flops(passes, fewer, mix, null) / 1e12,
                "max |Δ|": None,
                "mean |Δ|": None,
                "vs eager": None,
                "note": f"wall s = {len(seeds)} images at {steps} steps (not {cfg.steps})",
            }
            rows.append(extra)
            print(json.dumps(extra, default=str), flush=True)
        for every in args.steady_deep_cache:  # the default recipe, another interval
            if every == cfg.deep_cache:
                continue
            cached = dataclasses.replace(cfg, deep_cache=every)
            # the warm-up compiles (or captures) the split UNet's two passes
            warmup, images, rate = warm_then_time(
                den, mix, seeds, cached, args.batch_size, steps=max(2, every + 1)
            )
            extra = {
                **row,
                "row": f"steady: {label}, deep cache {every}" + (" (exact)" if every == 1 else ""),
                "wall s": warmup,
                "images/s": rate,
                "TFLOP/s": rate * recipe_flops(passes, cached, mix, null) / 1e12,
                "vs eager": rate / rows[0]["images/s"],
                "note": f"wall s = warm-up batch; {len(seeds)} images timed; "
                "|Δ| against the first row",
            }
            extra["max |Δ|"], extra["mean |Δ|"] = diff(images, ref)
            rows.append(extra)
            print(json.dumps(extra, default=str), flush=True)
        del den, loaded
    rows[0]["vs eager"] = 1.0
    return rows


def warm_then_time(den, mix, seeds, cfg, batch_size: int, *, steps: int):
    """One warm-up batch of ``steps`` steps, then all ``seeds`` with ``cfg``: (warm-up
    seconds, images, images/s)."""
    start = time.perf_counter()
    generate(den, mix, seeds[:batch_size], cfg, steps=steps)
    sync(den.device)
    warmup = time.perf_counter() - start
    start = time.perf_counter()
    images = generate(den, mix, seeds, cfg)
    sync(den.device)
    return warmup, images, len(seeds) / (time.perf_counter() - start)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def break_even(process: list[dict], steady: list[dict]) -> list[str]:
    """Images from which compiling pays: compile seconds / (1/eager − 1/compiled)."""
    rate = {r["row"]: r["images/s"] for r in steady}
    eager, comp = rate.get("steady: eager"), rate.get("steady: torch.compile")
    if not eager or not comp or comp <= eager:
        return ["break-even: no compiled row faster than eager (nothing to amortise)"]
    saved = 1 / eager - 1 / comp
    base = next(r for r in process if r["row"] == "eager baseline")
    out = []
    for state in ("cold", "warm"):
        # --quick has no "--compile, warm" row; the default's warm row compiled the same.
        row = next((r for r in process if r["row"] == "--compile" and r["cache"] == state), None)
        row = row or next(
            (
                r
                for r in process
                if r["row"] == "default (auto)" and r["cache"] == state and r["compiled"] == "yes"
            ),
            None,
        )
        if row is None:
            continue
        extra = max(0.0, row["wall s"] - base["wall s"] + base["images"] * saved)
        out.append(
            f"break-even, {state} cache: ~{extra:.0f} s of compilation → compiling pays from "
            f"{extra / saved:.0f} images (COLD_MIN_IMAGES/WARM_MIN_IMAGES are "
            f"{compile_cache.COLD_MIN_IMAGES}/{compile_cache.WARM_MIN_IMAGES})"
        )
    return out


@dataclasses.dataclass(frozen=True)
class SweepRow:
    """One setting of the sweep: a sampler and step count, the seed offset, a guidance
    interval (None: every step guided), the step spacing, the guidance scale and the
    deep-cache interval (1: the whole UNet at every step)."""

    sampler: str
    steps: int
    first_seed: int = 0
    interval: tuple[float, float] | None = None
    spacing: str = "time"
    guidance: float = SampleConfig.guidance
    deep_cache: int = SampleConfig.deep_cache

    @property
    def tag(self) -> str:
        tag = f"{self.sampler}-{self.steps}"
        if self.spacing != "time":
            tag += f"-{self.spacing}"
        if self.guidance != SampleConfig.guidance:
            tag += f"-g{self.guidance:g}"
        if self.interval:
            tag += "-interval-{:g}-{:g}".format(*self.interval)
        if self.deep_cache != 1:
            tag += f"-deep-cache-{self.deep_cache}"
        return tag + ("-other-seeds" if self.first_seed else "")

    @property
    def recipe(self) -> str:
        recipe = f"{self.sampler} {self.steps} steps"
        if self.spacing != "time":
            recipe += f", {self.spacing} spacing"
        if self.guidance != SampleConfig.guidance:
            recipe += f", guidance {self.guidance:g}"
        if self.interval:
            recipe += ", guided σ in ({:g}, {:g}]".format(*self.interval)
        if self.deep_cache != 1:
            recipe += f", deep cache {self.deep_cache}"
        return recipe + (f", seeds from {self.first_seed}" if self.first_seed else "")


def sweep_settings(
    samplers: str,
    steps: str,
    intervals: list[str] | None = None,
    spacings: str = "time",
    guidances: str = "",
    deep_caches: str = "",
) -> list[tuple]:
    """(sampler, steps, other seeds?, interval, spacing, guidance, deep cache) for each
    sweep row: every sampler at every step count on seeds 0… with each spacing it takes and
    each guidance scale (default: the default's) and the default's deep cache, the default
    recipe (added when those rows lack it), the default recipe with each guidance interval,
    then with each deep-cache interval, each set once; then the default recipe again on
    other seeds (the chance yardstick)."""
    from facediff.config import SAMPLERS, SPACINGS, noise_interval, takes_spacing

    names = [s.strip() for s in samplers.split(",") if s.strip()]
    bad = [s for s in names if s not in SAMPLERS]
    if bad or not names:
        raise ValueError(
            f"--sweep-samplers: expected some of {', '.join(SAMPLERS)}, got {samplers!r}"
        )
    try:
        counts = [int(n) for n in steps.split(",") if n.strip()]
    except ValueError:
        counts = []
    if not counts or min(counts) < 1:
        raise ValueError(f"--sweep-steps: expected step counts like 10,15,20,25, got {steps!r}")
    spaced = list(dict.fromkeys(s.strip() for s in spacings.split(",") if s.strip()))
    if not spaced or not set(spaced) <= set(SPACINGS):
        raise ValueError(
            f"--sweep-spacings: expected some of {', '.join(SPACINGS)}, got {spacings!r}"
        )
    d = SampleConfig()
    try:
        scales = [float(g) for g in guidances.split(",") if g.strip()] or [d.guidance]
    except ValueError:
        scales = []
    if not scales or not all(math.isfinite(g) and g >= 0 for g in scales):
        raise ValueError(f"--sweep-guidance: expected scales like 2,2.5, got {guidances!r}")
    try:
        caches = [int(n) for n in deep_caches.split(",") if n.strip()]
    except ValueError:
        caches = [0]
    if min(caches, default=1) < 1:
        raise ValueError(f"--sweep-deep-cache: expected intervals like 2,3, got {deep_caches!r}")
    checked = []
    for text in intervals or []:
        interval = noise_interval(text)
        if interval is None:
            raise ValueError(f"--sweep-interval: expected LO,HI with 0 <= LO < HI, got {text!r}")
        checked.append(interval)

    def default(other_seeds=False, interval=None, cache=d.deep_cache) -> tuple:
        return (d.sampler, d.steps, other_seeds, interval, d.spacing, d.guidance, cache)

    rows = [
        *(
            (s, n, False, None, sp, g, d.deep_cache)
            for s in names
            for sp in spaced
            if takes_spacing(s, sp)
            for g in scales
            for n in counts
        ),
        default(),  # the yardstick is always swept
        *(default(interval=i) for i in checked),
        *(default(cache=c) for c in caches),
    ]
    return [*dict.fromkeys(rows), default(other_seeds=True)]  # each set once, in order


def steps_sweep(args, run: Path, ttf_work: Path, out: Path) -> list[dict]:
    """Section 4: samples at each step count in a folder ``time_to_fid.py score`` reads."""
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from safetensors.torch import save_file
    from time_to_fid import proportional

    info = json.loads((ttf_work / "split.json").read_text())
    per_category = proportional(info["heldout_per_category"], args.sweep_samples)
    offset = max(per_category)  # "other seeds" start past every category's seeds
    settings = [
        SweepRow(sampler, steps, offset if other else 0, interval, spacing, guidance, cache)
        for sampler, steps, other, interval, spacing, guidance, cache in args.sweep_settings
    ]
    out.mkdir(parents=True, exist_ok=True)
    for name in ("data", "heldout.safetensors"):
        link = out / name
        if not link.exists():
            link.symlink_to((ttf_work / name).resolve())
    shutil.copy(ttf_work / "split.json", out / "split.json")
    dev = args.device_obj
    loaded = load_for_inference(run, device=dev, dtype=args.dtype)
    total = sum(per_category) * len(settings)
    cfg = dataclasses.replace(SampleConfig(), batch_size=args.batch_size, device=args.device)
    den = prepare_denoiser(loaded, device=dev, images=total, batch_size=args.batch_size)
    rows = []
    for setting in settings:
        images, labels = [], []
        start = time.perf_counter()
        for k, n in enumerate(per_category):
            if n == 0:
                continue
            mix = parse_mix(loaded.categories[k].code, loaded.categories)
            seeds = list(range(setting.first_seed, setting.first_seed + n))
            kw = dict(
                sampler=setting.sampler,
                steps=setting.steps,
                spacing=setting.spacing,
                guidance=setting.guidance,
                deep_cache=setting.deep_cache,
            )
            images.append(generate(den, mix, seeds, cfg, guidance_interval=setting.interval, **kw))
            labels.append(torch.full((n,), k, dtype=torch.int64))
        sync(dev)
        rate = sum(per_category) / (time.perf_counter() - start)
        row = {
            "recipe": setting.recipe,
            "step": loaded.step,
            "samples": f"samples-{setting.tag}.safetensors",
            "per_category": per_category,
            "sample_images_per_s": rate,
        }
        save_file(
            {"images": torch.cat(images), "labels": torch.cat(labels)}, str(out / row["samples"])
        )
        rows.append(row)
        print(json.dumps(row), flush=True)
    (out / "rows.json").write_text(json.dumps(rows, indent=2))
    return rows


def smoke_work(work: Path) -> Path:
    """A tiny time_to_fid work folder (synthetic faces, 30% held out) for ``--smoke``."""
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from time_to_fid import prepare_work

    from facediff.synthetic import write_synthetic_prepared

    data = write_synthetic_prepared(work / "prepared", per_category=6, size=16)
    ttf = work / "ttf"
    prepare_work(data, ttf, 0.3)
    return ttf


def fmt(v) -> str:
    if v is None:
        return "—"
    if isinstance(v, float):
        return f"{v:.3g}" if abs(v) < 100 else f"{v:,.0f}"
    return str(v)


def table(rows: list[dict]) -> str:
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    for r in rows:
        lines.append("| " + " | ".join(fmt(r.get(c)) for c in COLUMNS) + " |")
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("run", nargs="?", help="a run or export (default: random weights of --preset)")
    p.add_argument("--preset", default="base")
    p.add_argument("--size", type=int, default=64)
    p.add_argument("--device", default="auto")
    p.add_argument("-c", "--category", default="O", help="category of the throughput job")
    p.add_argument("-n", type=int, help="images of the throughput job (GPU 512, CPU 8)")
    p.add_argument("--batch-size", type=int, help="(GPU 256, CPU 8)")
    p.add_argument("--batches", type=int, default=2, help="timed batches in section 2")
    p.add_argument(
        "--steady-steps",
        default="",
        metavar="N,N",
        help="section 2 also times each model at these step counts (e.g. 15,20)",
    )
    p.add_argument(
        "--steady-deep-cache",
        default="",
        metavar="N,N",
        help="section 2 also times each model with these deep-cache intervals (e.g. 1,2; "
        "1: the whole UNet at every step, the exact model; the default's is skipped)",
    )
    p.add_argument("--sweep", metavar="WORK", help="a time_to_fid.py work folder to sweep steps")
    p.add_argument("--sweep-run", help="the run to sweep (default WORK/runs/default)")
    p.add_argument("--sweep-samples", type=int, default=1000)
    p.add_argument("--sweep-samplers", default=SWEEP_SAMPLERS, help="comma-separated samplers")
    p.add_argument("--sweep-steps", default=SWEEP_STEPS, help="comma-separated step counts")
    p.add_argument(
        "--sweep-spacings",
        default="time",
        help="comma-separated step spacings, time and/or logsnr (for samplers that take it)",
    )
    p.add_argument(
        "--sweep-interval",
        action="append",
        metavar="LO,HI",
        help="also the default recipe guided only for σ in (LO, HI] (repeatable)",
    )
    p.add_argument(
        "--sweep-guidance",
        default="",
        metavar="G,G",
        help="comma-separated guidance scales of the swept rows (default: the default's)",
    )
    p.add_argument(
        "--sweep-deep-cache",
        default="",
        metavar="N,N",
        help="also the default recipe with each deep-cache interval (facediff sample --deep-cache)",
    )
    p.add_argument("--sweep-only", action="store_true", help="only the steps sweep (section 4)")
    p.add_argument("--compile-on-cpu", action="store_true", help="compiled rows on the CPU too")
    p.add_argument(
        "--steady-only",
        action="store_true",
        help="only section 2, the steady-state models (with --variants: which ones)",
    )
    p.add_argument(
        "--variants",
        default="",
        help=f"section 2's models, comma-separated from {', '.join(VARIANTS)} "
        "(eager always runs first, as the reference)",
    )
    p.add_argument("--work", help="keep outputs and caches here (default: a temporary folder)")
    p.add_argument("--json", help="write all rows here")
    p.add_argument("--smoke", action="store_true", help="CPU, tiny preset at 16 px, 4 images")
    p.add_argument(
        "--quick",
        action="store_true",
        help="only the rows issue 13's targets need (about 4 minutes on a GPU)",
    )
    args = p.parse_args()
    if args.sweep_only and not (args.sweep or args.smoke):
        p.error("--sweep-only needs --sweep WORK")
    args.variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    unknown = sorted(set(args.variants) - set(VARIANTS))
    if unknown:
        p.error(f"--variants: unknown {', '.join(unknown)}; choose from {', '.join(VARIANTS)}")
    try:
        args.sweep_settings = sweep_settings(
            args.sweep_samplers,
            args.sweep_steps,
            args.sweep_interval,
            args.sweep_spacings,
            args.sweep_guidance,
            args.sweep_deep_cache,
        )
    except ValueError as e:
        p.error(str(e))
    try:
        args.steady_steps = [int(n) for n in args.steady_steps.split(",") if n.strip()]
    except ValueError:
        p.error(f"--steady-steps: expected step counts like 15,20, got {args.steady_steps!r}")
    if any(n < 1 for n in args.steady_steps):
        p.error(f"--steady-steps: expected step counts like 15,20, got {args.steady_steps!r}")
    try:
        args.steady_deep_cache = [int(n) for n in args.steady_deep_cache.split(",") if n.strip()]
    except ValueError:
        args.steady_deep_cache = [0]
    if any(n < 1 for n in args.steady_deep_cache):
        p.error("--steady-deep-cache: expected intervals like 1,2 (1: the exact model)")
    if args.smoke:
        args.device, args.preset, args.size = "cpu", "tiny", 16
        args.n, args.batch_size, args.batches, args.sweep_samples = 4, 4, 1, 8
    args.device_obj = resolve_device(args.device)
    args.device = str(args.device_obj)
    gpu = args.device_obj.type == "cuda"
    args.n = args.n or (512 if gpu else 8)
    args.batch_size = args.batch_size or (256 if gpu else 8)
    args.dtype = resolve_precision("auto", args.device_obj)

    work = Path(args.work or tempfile.mkdtemp(prefix="facediff-throughput-"))
    work.mkdir(parents=True, exist_ok=True)
    if args.sweep_only and args.sweep:  # the header describes the model swept
        run = Path(args.sweep_run) if args.sweep_run else Path(args.sweep) / "runs" / "default"
    else:
        run = Path(args.run) if args.run else random_run(work / "run", args.preset, args.size)
    label = str(run) if args.run or (args.sweep_only and args.sweep) else args.preset
    loaded = load_for_inference(run)
    args.model_config = loaded.model_config.to_dict()
    args.categories = loaded.categories
    args.default_n = 1 if args.smoke else SampleConfig().n
    size, null = loaded.model_config.sample_size, loaded.categories.null_label
    passes = pass_flops(loaded.unet.float(), size, null)
    cfg = SampleConfig()
    per_image = recipe_flops(
        passes, cfg, parse_mix(loaded.categories[0].code, loaded.categories), null
    )
    name = torch.cuda.get_device_name(args.device_obj) if gpu else "CPU"
    print(
        f"device: {name}, {torch.get_num_threads()} threads; model: {label} at "
        f"{loaded.model_config.sample_size} px, {count_parameters(loaded.unet) / 1e6:.1f}M "
        f"parameters, {passes[0] / 1e9:.3g} GFLOP per image for the whole UNet, "
        f"{passes[1] / 1e9:.3g} for its shallow pass; default sampling: {cfg.sampler}, "
        f"{cfg.steps} steps, guidance {cfg.guidance:g}, deep cache {cfg.deep_cache}: "
        f"{per_image / 1e9:.4g} GFLOP per image of a category",
        flush=True,
    )
    del loaded
    rows, notes, sweep = [], [], []
    if args.steady_only:
        rows = steady_rows(args, run, passes)
        print()
        print(table(rows))
    elif not args.sweep_only:
        process = process_rows(args, run, work, passes)
        # This process compiles with the cache the --compile rows left (warm on a GPU).
        os.environ["XDG_CACHE_HOME"] = str(work / "cache-b")
        steady = steady_rows(args, run, passes)
        rows = process + steady
        print()
        print(table(rows))
        notes = break_even(process, steady)
        for line in notes:
            print(line)
    if args.sweep or args.smoke:
        ttf = Path(args.sweep) if args.sweep else smoke_work(work)
        sweep_run = Path(args.sweep_run) if args.sweep_run else None
        if sweep_run is None:
            sweep_run = run if args.smoke else ttf / "runs" / "default"
        out = ttf / "steps-sweep"
        sweep = steps_sweep(args, sweep_run, ttf, out)
        print(f"steps sweep: {len(sweep)} sample sets in {out}; score them with")
        print(f"  python benchmarks/time_to_fid.py score {out}")
    if args.json:
        Path(args.json).write_text(
            json.dumps({"rows": rows, "notes": notes, "sweep": sweep}, indent=2, default=str)
        )
    if not args.work:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
