"""Training speed of the default path (issue 13): ``facediff train`` as a user runs it,
against the eager path in the same run.

Three ``python -m facediff train DATA --max-steps S`` processes, each with its own run
folder and a chosen ``XDG_CACHE_HOME`` (so "cold" means an empty compile cache, "warm" the
cache the previous process left):

1. ``--no-compile --no-cuda-graphs``: the eager baseline;
2. no flags (``--compile`` and ``--cuda-graphs`` auto), cold cache;
3. no flags again, warm cache.

``--extra "FLAGS"`` adds rows with more flags (e.g. ``--extra "--batch-size 64"``), each
cold then warm; ``--common "FLAGS"`` goes to every row. Columns: whether the process
compiled (its "compiling the training step" note), whether it replayed CUDA graphs
(its "replaying the training step as a CUDA graph" note and no failed capture; the JSON
rows also keep warning lines),
seconds from launch to the end of the first step (``metrics.jsonl``'s ``first_step_s``:
start-up and compilation), wall time,
steady images/s (the median of the logged windows after the first), images per wall second
(everything included), the speed-up of the steady rate over eager, and the last logged loss.

The default's auto policy compiles a cold cache only for runs of at least
``TRAIN_COLD_MIN_IMAGES`` images (``TRAIN_WARM_MIN_IMAGES`` warm): ``--steps`` should plan
that many (3,000 steps of the default batch 32 is 96,000 images) for the default rows to
show the compiled path.

    python benchmarks/train_default.py DATA --steps 3000 --json rows.json    # GPU, ~6 min
    python benchmarks/train_default.py --smoke        # CPU: tiny preset, batch 8, 6 steps

``--no-default`` leaves the no-flags rows out, e.g. to time
``--extra "--no-compile"`` (graphed, uncompiled) against eager alone. ``--rows eager,cold`` runs
only those rows; a later call with ``--rows warm`` and the same
``--work`` goes on from the cache they left (``--warm-steps``: a warm row needs only enough
steps to compile warm and log a few windows).
"""

from __future__ import annotations

import argparse
import json
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from sample_throughput import child_env  # noqa: E402

from facediff import compile_cache  # noqa: E402

COLUMNS = (
    "row",
    "flags",
    "cache",
    "steps",
    "compiled",
    "graphed",
    "first step s",
    "wall s",
    "steady images/s",
    "images/wall s",
    "vs eager",
    "loss",
)
COMPILING_NOTE = "compiling the training step"
GRAPHED_NOTE = "replaying the training step as a CUDA graph"
GRAPH_FAILED = "capturing the training step failed"


def metrics(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def steady_rate(records: list[dict]) -> float | None:
    """The median images/s of the logged windows after the first (which holds start-up)."""
    windows = [r["images_per_s"] for r in records if "images_per_s" in r]
    steady = windows[1:] or windows
    return statistics.median(steady) if steady else None


def run_train(data: Path, out: Path, flags: list[str], cache_home: Path, args, steps: int) -> dict:
    """One ``facediff train`` process of ``steps`` steps; its timings from ``metrics.jsonl``."""
    cmd = [sys.executable, "-m", "facediff", "train", str(data), "--out", str(out)]
    cmd += ["--max-steps", str(steps), "--log-every", str(args.log_every)]
    cmd += ["--preview-every", "0", "--checkpoint-every", str(steps)]
    cmd += ["--device", args.device, *shlex.split(args.common), *flags]
    start = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=child_env(cache_home))
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"failed ({proc.returncode}): {shlex.join(cmd)}\n{proc.stderr[-3000:]}")
    records = metrics(out)
    first = next((r["first_step_s"] for r in records if "first_step_s" in r), None)
    images = max((r.get("images_seen", 0) for r in records), default=0)
    said = proc.stdout + proc.stderr
    return {
        "compiled": COMPILING_NOTE in said,
        "graphed": GRAPHED_NOTE in said and GRAPH_FAILED not in said,
        "warnings": [line.strip() for line in said.splitlines() if "warning" in line.lower()][:5],
        "first step s": first,
        "wall s": wall,
        "steady images/s": steady_rate(records),
        "images/wall s": images / wall,
        "loss": next((r["loss"] for r in reversed(records) if "loss" in r), None),
    }


def rows(data: Path, work: Path, args) -> list[dict]:
    """Every row's process in turn. Each finished row is printed as a JSON line and, with
    ``--json``, written at once, so a run cut short by a time limit keeps what it measured."""
    plan = [("eager baseline", ["--no-compile", "--no-cuda-graphs"], "eager", "-")]
    plan += [("default (auto)", [], "default", "cold"), ("default (auto)", [], "default", "warm")]
    skip = {"default"} if args.no_default else set()
    for k, extra in enumerate(args.extra):
        flags = shlex.split(extra)
        plan += [(extra, flags, f"extra{k}", "cold"), (extra, flags, f"extra{k}", "warm")]
    out, eager = [], earlier_eager(work) if "eager" not in args.rows else None
    for i, (row, flags, home, cache) in enumerate(plan):
        if ("eager" if home == "eager" else cache) not in args.rows or home in skip:
            continue  # run folders keep their numbers: a later call with --rows goes on
        print(f"[{i + 1}/{len(plan)}] {row} ({cache} cache) …", file=sys.stderr, flush=True)
        steps = args.steps
        if home == "eager" and args.baseline_steps:
            steps = args.baseline_steps
        elif cache == "warm" and args.warm_steps:
            steps = args.warm_steps
        r = run_train(data, work / f"run-{i}", flags, work / f"cache-{home}", args, steps)
        eager = eager or r["steady images/s"]
        vs = r["steady images/s"] / eager if r["steady images/s"] and eager else None
        out.append(
            {"row": row, "flags": shlex.join(flags), "cache": cache, "steps": steps, **r}
            | {"vs eager": vs}
        )
        print(json.dumps(out[-1]), flush=True)
        if args.json:
            Path(args.json).write_text(json.dumps({"rows": out, "policy": "partial"}, indent=2))
    return out


def earlier_eager(work: Path) -> float | None:
    """The eager row's steady images/s from an earlier call's ``run-0`` in the same
    ``--work`` (for ``--rows`` without eager), else None."""
    run = work / "run-0"
    return steady_rate(metrics(run)) if (run / "metrics.jsonl").is_file() else None


def fmt(v) -> str:
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, float):
        return f"{v:,.2f}" if abs(v) < 10 else f"{v:,.0f}"
    return "n/a" if v is None else str(v)


def table(result: list[dict]) -> str:
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    lines += ["| " + " | ".join(fmt(r[c]) for c in COLUMNS) + " |" for r in result]
    return "\n".join(lines)


def smoke_data(work: Path) -> Path:
    from facediff.synthetic import write_synthetic_prepared

    out = work / "prepared"
    if out.is_dir() and any(out.iterdir()):  # an earlier call's (--rows)
        return out
    return write_synthetic_prepared(out, per_category=6, size=16)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("data", nargs="?", help="a prepared dataset (facediff prepare)")
    p.add_argument("--steps", type=int, default=3000, help="optimizer steps per process")
    p.add_argument(
        "--baseline-steps",
        type=int,
        help="steps of the eager row (default --steps): its steady rate needs only a few logs",
    )
    p.add_argument(
        "--warm-steps",
        type=int,
        help="steps of the warm rows (default --steps): enough to compile warm is enough",
    )
    p.add_argument(
        "--rows",
        default="eager,cold,warm",
        help="which rows to run (e.g. eager,cold now and warm in a later call, same --work)",
    )
    p.add_argument("--log-every", type=int, default=100)
    p.add_argument("--device", default="auto")
    p.add_argument("--extra", action="append", default=[], help="another row's flags")
    p.add_argument(
        "--no-default",
        action="store_true",
        help="leave out the no-flags rows (compare --extra rows with the eager baseline only)",
    )
    p.add_argument("--common", default="", help="flags for every row (e.g. --preset tiny)")
    p.add_argument("--work", help="folder for runs and caches (default: a temporary one)")
    p.add_argument("--json", help="also write the rows here")
    p.add_argument("--smoke", action="store_true", help="CPU, tiny preset, synthetic data")
    args = p.parse_args()
    args.rows = {r.strip() for r in args.rows.split(",") if r.strip()}
    if not args.rows or not args.rows <= {"eager", "cold", "warm"}:
        p.error(f"--rows: expected some of eager,cold,warm, got {','.join(sorted(args.rows))}")
    if args.smoke:
        args.device, args.steps, args.log_every = "cpu", 6, 2
        args.common = f"--preset tiny --batch-size 8 {args.common}"
    elif not args.data:
        p.error("DATA is required (or --smoke)")
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(args.work or tmp)
        work.mkdir(parents=True, exist_ok=True)
        data = smoke_data(work) if args.smoke else Path(args.data)
        result = rows(data, work, args)
    policy = (
        f"auto compiles a training run of >= {compile_cache.TRAIN_COLD_MIN_IMAGES:,} images "
        f"(cold cache) or >= {compile_cache.TRAIN_WARM_MIN_IMAGES:,} (warm); "
        f"{args.steps} steps per process"
        + (f" ({args.baseline_steps} for the eager baseline)" if args.baseline_steps else "")
        + (f" ({args.warm_steps} for warm rows)" if args.warm_steps else "")
    )
    print(table(result) + "\n\n" + policy)
    if args.json:
        Path(args.json).write_text(json.dumps({"rows": result, "policy": policy}, indent=2))


if __name__ == "__main__":
    main()
