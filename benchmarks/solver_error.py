"""How far each sampler lands from the exact solution of the sampling ODE, by step count
(issue 13: fewer evaluations at equal quality).

Every deterministic sampler facediff offers (DPM-Solver++, UniPC, DDIM, Euler) integrates
the probability-flow ODE from the same seeded noise, with the same guidance. Run with very
many steps, each lands on its own limit; with few steps it lands somewhere else. This
script solves the ODE with ``--reference-steps`` steps of each sampler and reports, for
each sampler and step count, the RMS distance of its images from that sampler's own limit
in 8-bit grey levels (model space [-1, 1] × 127.5), over ``--per-category`` seeds of every
category at the default guidance. The limits themselves differ a little (facediff's
DPM-Solver++ clips λ, so its schedule starts at t = 995, not 999); the distance of each
from the default's limit is reported, as is each limit's own error, estimated by solving
again with half the steps (an order-2 solver's error at N steps is about a quarter of
that at N/2). ``--spacings time,logsnr`` (the default) also runs the samplers that take
custom timesteps with their steps evenly spaced in log-SNR (``facediff sample --spacing
logsnr``): the same ODE from the same first timestep, measured against the same limit.

The distance is a discretisation error, not a quality score: it says which sampler needs
fewer steps to reach the default recipe's accuracy (the last lines), and so which settings
are worth a FID sweep (``benchmarks/sample_throughput.py --sweep``); FID against held-out
photos decides the default.

    python benchmarks/solver_error.py RUN                          # GPU if there is one
    python benchmarks/solver_error.py RUN --samplers unipc --steps 12,15,18 --json rows.json
    python benchmarks/solver_error.py --smoke                      # CPU, tiny random weights
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "benchmarks")]

#: Samplers with an ODE to compare (DDPM draws fresh noise at every step).
ODE_SAMPLERS = ("dpmsolver++", "unipc", "ddim", "euler")
GREY_LEVELS = 127.5  # model space [-1, 1] → 8-bit levels


def parse_list(text: str, option: str, kind=str) -> list:
    items = [s.strip() for s in text.split(",") if s.strip()]
    try:
        values = [kind(s) for s in items]
    except ValueError:
        values = []
    if not values:
        raise ValueError(f"{option}: expected a comma-separated list, got {text!r}")
    return values


def check_samplers(names: list[str], option: str) -> list[str]:
    bad = [s for s in names if s not in ODE_SAMPLERS]
    if bad:
        raise ValueError(
            f"{option}: {', '.join(bad)} is not one of {', '.join(ODE_SAMPLERS)} "
            "(DDPM is stochastic: it has no ODE solution to compare with)"
        )
    return names


def check_spacings(names: list[str]) -> list[str]:
    from facediff.config import SPACINGS

    bad = [s for s in names if s not in SPACINGS]
    if bad:
        raise ValueError(f"--spacings: {', '.join(bad)} is not one of {', '.join(SPACINGS)}")
    return list(dict.fromkeys(names))


class Solver:
    """The model, each category's conditions and noise, solved to images by any sampler."""

    def __init__(self, run: str, device: str, precision: str, per_category: int, guidance: float):
        from facediff.config import SampleConfig
        from facediff.device import resolve_device
        from facediff.generation import mix_conditions, prepare_denoiser, seeded_noise
        from facediff.loading import load_for_inference
        from facediff.mix import parse_mix

        device = resolve_device(device)
        loaded = load_for_inference(run, device=device)
        self.den = prepare_denoiser(
            loaded, device=device, precision=precision, compile=False, cuda_graphs=False
        )
        self.guidance = guidance
        self.categories = list(loaded.categories.codes)
        mode = SampleConfig().mix_mode
        self.jobs = []
        for k, code in enumerate(self.categories):
            cond = mix_conditions(
                parse_mix(code, loaded.categories), mode, guidance, self.den.null_label
            )
            seeds = range(k * 1_000_000, k * 1_000_000 + per_category)
            self.jobs.append((cond, seeded_noise(seeds, self.den.sample_size)[1]))

    def solve(self, sampler: str, steps: int, spacing: str = "time"):
        """Every category's images in model space (float32 on the CPU, clamped to [-1, 1])."""
        import torch

        from facediff.generation import make_scheduler
        from facediff.guidance import denoise

        out = []
        for cond, noise in self.jobs:
            with torch.no_grad():
                x = denoise(
                    self.den.net,
                    make_scheduler(sampler, self.den.scheduler_config),
                    noise.to(self.den.device),
                    cond,
                    steps=steps,
                    guidance=self.guidance,
                    dtype=self.den.dtype,
                    spacing=spacing,
                )
            out.append(x.float().clamp(-1, 1).cpu())
        return torch.cat(out)


def rms_levels(a, b) -> float:
    return float(((a - b) ** 2).mean().sqrt()) * GREY_LEVELS


def measure(args) -> dict:
    from facediff.config import SampleConfig, takes_spacing

    default = SampleConfig()
    solver = Solver(args.run, args.device, args.precision, args.per_category, args.guidance)
    settings = [
        (s, sp, n)
        for s in args.samplers
        for sp in args.spacings
        if takes_spacing(s, sp)
        for n in args.steps
    ]
    if (default.sampler, default.spacing, default.steps) not in settings:
        settings.append((default.sampler, default.spacing, default.steps))
    limits, references = {}, {}
    # Each sampler's own limit, with time spacing: every spacing solves the same ODE from
    # the same first timestep, so all of a sampler's spacings approach it.
    for sampler in dict.fromkeys(s for s, _, _ in settings):
        t0 = time.perf_counter()
        limits[sampler] = solver.solve(sampler, args.reference_steps)
        half = solver.solve(sampler, args.reference_steps // 2)
        references[sampler] = {
            "steps": args.reference_steps,
            "half_steps_rms": rms_levels(half, limits[sampler]),
            "seconds": round(time.perf_counter() - t0, 1),
        }
    for sampler, ref in references.items():
        ref["from_default_limit"] = rms_levels(limits[sampler], limits[default.sampler])
    rows = []
    for sampler, spacing, steps in settings:
        images = solver.solve(sampler, steps, spacing)
        rms = rms_levels(images, limits[sampler])
        rows.append({"sampler": sampler, "spacing": spacing, "steps": steps, "rms": rms})
        print(f"  {method(rows[-1])} {steps} steps: {rms:.2f} grey levels", flush=True)
    return {
        "run": str(args.run),
        "device": str(solver.den.device),
        "dtype": str(solver.den.dtype).removeprefix("torch."),
        "guidance": args.guidance,
        "images": len(limits[default.sampler]),
        "categories": solver.categories,
        "references": references,
        "default": {"sampler": default.sampler, "spacing": default.spacing, "steps": default.steps},
        "rows": rows,
    }


def method(row: dict) -> str:
    """A row's sampler, and its spacing where that is not time."""
    spacing = row.get("spacing", "time")
    return row["sampler"] if spacing == "time" else f"{row['sampler']}, {spacing} spacing"


def table(result: dict) -> list[str]:
    """Samplers (and spacings) × step counts, then each sampler's limit and the fewest
    steps at the default's error."""
    steps = sorted({r["steps"] for r in result["rows"]})
    methods = list(dict.fromkeys(method(r) for r in result["rows"]))
    cell = {(method(r), r["steps"]): r["rms"] for r in result["rows"]}
    sampler_of = {method(r): r["sampler"] for r in result["rows"]}
    lines = [
        "| sampler | " + " | ".join(f"{n} steps" for n in steps) + " |",
        "|---|" + "---:|" * len(steps),
    ]
    for m in methods:
        values = [f"{cell[m, n]:.2f}" if (m, n) in cell else "" for n in steps]
        lines.append(f"| {m} | " + " | ".join(values) + " |")
    d, refs = result["default"], result["references"]
    target = cell[method(d), d["steps"]]
    n_ref = refs[d["sampler"]]["steps"]
    lines += [
        "",
        f"RMS distance in 8-bit grey levels of each sampler's images from its own solution with "
        f"{n_ref} steps ({result['images']} images, guidance {result['guidance']:g}, "
        f"{result['dtype']} on {result['device']}).",
    ]
    for m in methods:
        s = sampler_of[m]
        own = [n for n in steps if (m, n) in cell]
        enough = [n for n in own if cell[m, n] <= target]
        reach = f"at {enough[0]} steps" if enough else f"at none of {', '.join(map(str, own))}"
        where = (
            ""
            if s == d["sampler"]
            else f"; its limit lies {refs[s]['from_default_limit']:.2f} from {d['sampler']}'s"
        )
        lines.append(
            f"{m}: its {n_ref}-step solution (time spacing) moves "
            f"{refs[s]['half_steps_rms']:.2f} at half the steps{where}; it reaches the "
            f"default's error ({method(d)} {d['steps']} steps: {target:.2f}) {reach}"
        )
    return lines


def main(argv: list[str] | None = None) -> int:
    from facediff.config import SampleConfig
    from facediff.errors import FacediffError, first_line

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("run", nargs="?", help="a run, checkpoint or export")
    p.add_argument("--samplers", default="dpmsolver++,unipc", help="comma-separated samplers")
    p.add_argument("--steps", default="10,15,20,25", help="comma-separated step counts")
    p.add_argument(
        "--spacings",
        default="time,logsnr",
        help="comma-separated step spacings (logsnr only for samplers that take it)",
    )
    p.add_argument("--reference-steps", type=int, default=500)
    p.add_argument("--per-category", type=int, default=32, help="seeds per category")
    p.add_argument("--guidance", type=float, default=SampleConfig().guidance)
    p.add_argument("--device", default="auto")
    p.add_argument("--precision", default="fp32", help="fp32 (default), bf16, fp16 or auto")
    p.add_argument("--json", help="write the result here")
    p.add_argument("--smoke", action="store_true", help="CPU check on a tiny random model")
    args = p.parse_args(argv)
    try:
        args.samplers = check_samplers(parse_list(args.samplers, "--samplers"), "--samplers")
        args.steps = sorted(set(parse_list(args.steps, "--steps", int)))
        args.spacings = check_spacings(parse_list(args.spacings, "--spacings"))
    except ValueError as e:
        p.error(str(e))
    if min(args.steps) < 1 or args.reference_steps < 2 or args.per_category < 1:
        p.error("--steps, --reference-steps (at least 2) and --per-category must be positive")
    with tempfile.TemporaryDirectory() as tmp:
        if args.smoke:
            from sample_throughput import random_run  # the tiny preset, random weights

            args.run, args.device = str(random_run(Path(tmp) / "run", "tiny", 16)), "cpu"
            args.per_category = min(args.per_category, 2)
        elif not args.run:
            p.error("give a RUN, or --smoke")
        try:
            result = measure(args)
        except FacediffError as e:  # e.g. no run at RUN: one line, as the CLI says it
            p.exit(1, f"solver_error.py: error: {first_line(e)}\n")
    print("\n".join(table(result)))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
