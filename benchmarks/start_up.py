"""Where the time to the first image goes (issue 13): a fresh Python process per row, timing
interpreter start, ``import torch``, device initialisation, facediff's sampling imports (which
bring in diffusers), loading the run onto the device, and the first and second batch of the
default job (one category, ``SampleConfig().n`` images, the default recipe, eager).

In-process rows: cuDNN autotuning on and every import (how ``sample`` ran every job before),
every import (``FACEDIFF_LEAN_IMPORTS=0``: what ``import facediff`` does in a notebook), and
the command's default: what ``prepare_denoiser`` decides for this job
(``generation.autotunes``: off for short eager jobs) and the command's lean start
(``facediff.imports.lean_start``: the packages diffusers would import but facediff never uses
kept out, diffusers' model families and the compiler on first use). Each row's JSON says
what was kept out and whether the compiler (``torch._dynamo``) was imported by the end.

Command rows: ``facediff sample RUN --out TMP`` exactly as a user types it (seven mixes of
eight images, batch by batch), with and without the lean imports. "first batch" is the
first PNG on disk; "exit" is when the process ended.

Times are seconds since the launch of the process (cumulative), best of ``--repeat``.

    python benchmarks/start_up.py RUN            # a run or export; GPU if there is one
    python benchmarks/start_up.py --smoke        # CPU, tiny preset at 16 px, random weights
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from facediff.imports import ENV, UNUSED, compiler_imported, lean_start  # noqa: E402 (no torch)

STAGES = ("interpreter", "import torch", "device", "facediff imports", "load", "first batch")
COLUMNS = ("row", "autotune", *STAGES, "second batch", "exit")


def child(run: str, device: str, autotune: str, imports: str, launched: float) -> None:
    """One row, in its own process: cumulative seconds since ``launched`` after each stage."""
    marks = {"interpreter": time.time() - launched}
    start = time.perf_counter() - marks["interpreter"]

    def mark(name: str) -> None:
        marks[name] = time.perf_counter() - start

    if imports == "lean":  # as the command's entry point does first
        lean_start({})
    import torch

    mark("import torch")
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    dev = torch.device(device)
    torch.zeros(1, device=dev)
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)
    mark("device")
    from facediff.config import SampleConfig
    from facediff.generation import generate, prepare_denoiser
    from facediff.loading import load_for_inference
    from facediff.mix import parse_mix

    mark("facediff imports")
    loaded = load_for_inference(run, device=dev)
    mark("load")
    cfg = SampleConfig(device=str(dev))
    den = prepare_denoiser(loaded, device=dev, compile=False, images=cfg.n, batch_size=cfg.n)
    if autotune == "on":
        torch.backends.cudnn.benchmark = dev.type == "cuda"
    mix = parse_mix(loaded.categories[0].code, loaded.categories)
    for name, first in (("first batch", 0), ("second batch", cfg.n)):
        generate(den, mix, list(range(first, first + cfg.n)), cfg)
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)
        mark(name)
    on = torch.backends.cudnn.benchmark if dev.type == "cuda" else None  # no cuDNN on the CPU
    hidden = [n for n in UNUSED if sys.modules.get(n, 0) is None]
    got = {"marks": marks, "autotune": on, "device": str(dev), "kept out": hidden}
    print(json.dumps({**got, "compiler imported": compiler_imported()}), flush=True)


def measure(run: Path, device: str, autotune: str, imports: str, repeat: int) -> dict:
    best = None
    for _ in range(repeat):
        cmd = [sys.executable, __file__, "--child", str(run), "--device", device]
        cmd += ["--autotune", autotune, "--imports", imports, "--launched", repr(time.time())]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            raise SystemExit(f"failed ({proc.returncode}): {' '.join(cmd)}\n{proc.stderr[-3000:]}")
        got = json.loads(proc.stdout.strip().splitlines()[-1])
        if best is None or got["marks"]["first batch"] < best["marks"]["first batch"]:
            best = got
    return best


def command(run: Path, device: str, imports: str, repeat: int, tmp: Path) -> dict:
    """``facediff sample RUN --out OUT`` in a fresh process (the user's compile cache):
    seconds from launch to the first PNG on disk and to the process's exit, best of
    ``repeat``."""
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from sample_throughput import run_sample

    best = None
    lean = {ENV: "1" if imports == "lean" else "0"}
    for i in range(repeat):
        got = run_sample(run, tmp / f"cli-{imports}-{i}", [], None, device, lean)
        if best is None or got["first"] < best["first batch"]:
            best = {"first batch": got["first"], "exit": got["wall"]}
    return best


# key: (label, autotune, imports) of the in-process rows, (label, None, imports) of the
# command rows
ROWS = {
    "before": ("autotune on, all imports (before)", "on", "all"),
    "all": ("all imports", "default", "all"),
    "default": ("default", "default", "lean"),
    "cli-all": ("facediff sample, all imports", None, "all"),
    "cli": ("facediff sample", None, "lean"),
}


def fmt(v) -> str:
    if v is None:
        return "n/a"
    if isinstance(v, bool):
        return "on" if v else "off"
    return f"{v:.2f}" if isinstance(v, float) else str(v)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("run", nargs="?", help="a run or export")
    p.add_argument("--device", default="auto")
    p.add_argument("--repeat", type=int, default=2, help="processes per row (best kept)")
    p.add_argument("--json", help="also write the rows here")
    p.add_argument(
        "--rows", default=",".join(ROWS), help=f"which rows, in order (default: {','.join(ROWS)})"
    )
    p.add_argument("--smoke", action="store_true", help="CPU, tiny preset, random weights")
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--autotune", default="default", help=argparse.SUPPRESS)
    p.add_argument("--imports", default="lean", help=argparse.SUPPRESS)
    p.add_argument("--launched", type=float, help=argparse.SUPPRESS)
    args = p.parse_args()
    keys = [k.strip() for k in args.rows.split(",") if k.strip()]
    if not keys or any(k not in ROWS for k in keys):
        p.error(f"--rows: choose from {', '.join(ROWS)}")
    if args.child:
        child(args.run, args.device, args.autotune, args.imports, args.launched)
        return
    with tempfile.TemporaryDirectory() as tmp:
        run = args.run
        if args.smoke:
            sys.path.insert(0, str(ROOT / "benchmarks"))
            from sample_throughput import random_run

            args.device, args.repeat = "cpu", 1
            run = random_run(Path(tmp) / "run", "tiny", 16)
        elif not run:
            p.error("RUN is required (or --smoke)")
        rows, device = [], args.device
        for key in keys:
            label, autotune, imports = ROWS[key]
            if autotune is None:
                got = command(Path(run), args.device, imports, args.repeat, Path(tmp))
                rows.append({"row": label, **got})
            else:
                got = measure(Path(run), args.device, autotune, imports, args.repeat)
                rows.append({"row": label, "autotune": got["autotune"], **got["marks"]})
                rows[-1].update({k: got[k] for k in ("kept out", "compiler imported")})
                device = got["device"]
            print(json.dumps(rows[-1]), flush=True)
    print(f"device: {device}; seconds since launch, cumulative (best of {args.repeat})")
    print("| " + " | ".join(COLUMNS) + " |")
    print("|" + "---|" * len(COLUMNS))
    for r in rows:
        print("| " + " | ".join(fmt(r.get(c)) for c in COLUMNS) + " |")
    if args.json:
        Path(args.json).write_text(json.dumps({"rows": rows}, indent=2))


if __name__ == "__main__":
    main()
