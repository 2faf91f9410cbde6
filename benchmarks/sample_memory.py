"""What a CPU sampling batch needs per UNet row: counted (:mod:`facediff.sample_memory`,
which sizes batches that fit) against measured, with and without the deep cache.

For each preset and size, a run with random weights is sampled in fresh processes
(``facediff.sample``, one category, guidance on: 2 UNet rows an image, 3 steps, CPU) at a
small and a large batch; "measured" is the growth of the process's peak resident memory
(``ru_maxrss``) per added row. "counted" is :func:`facediff.sample_memory.row_bytes`, the
peak of live tensors in one forward pass of two rows. The batch sizer assumes at
most :data:`~facediff.sample_memory.MARGIN` times the count: the last column says whether
that held. Exits 1 if it did not.

    python benchmarks/sample_memory.py            # tiny at 32 px, base at 64 px; ~2 min
    python benchmarks/sample_memory.py --smoke    # tiny at 16 px; seconds
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

COLUMNS = ("model", "px", "deep cache", "batches", "counted MiB/row", "measured MiB/row")
COLUMNS += ("measured/counted", "within MARGIN")
ROWS = 2  # a guided image of one category: the category and the null condition
SMALL = 2
LARGE_BYTES = 1.5 * 2**30  # the large batch grows the peak by about this much
MIB = 2**20


def child(run: str, batch: int, deep_cache: int) -> None:
    """Sample one batch; print the peak resident memory in bytes."""
    from facediff import sample
    from facediff.config import SampleConfig

    with tempfile.TemporaryDirectory() as out:
        config = SampleConfig(
            n=batch, batch_size=batch, steps=3, deep_cache=deep_cache, device="cpu"
        )
        sample(run, Path(out) / "s", config, categories=["O"])
    print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)


def peak(run: Path, batch: int, deep_cache: int) -> int:
    cmd = [sys.executable, __file__, "--child", str(run), str(batch), str(deep_cache)]
    done = subprocess.run(cmd, capture_output=True, text=True, check=True)
    return int(done.stdout.split()[-1])


def measure(name: str, size: int, work: Path) -> list[dict]:
    import torch
    from sample_throughput import random_run

    from facediff.config import preset
    from facediff.model import build_unet
    from facediff.sample_memory import MARGIN, row_bytes

    run = random_run(work / f"{name}{size}", name, size)
    model = preset(name, sample_size=size, num_categories=3)
    counted = row_bytes(build_unet(model).eval(), model, torch.float32)
    large = max(SMALL + 8, min(512, int(LARGE_BYTES / (ROWS * counted))))
    rows = []
    for deep_cache in (1, 3):
        grown = peak(run, large, deep_cache) - peak(run, SMALL, deep_cache)
        measured = grown / ((large - SMALL) * ROWS)
        rows.append(
            {
                "model": name,
                "px": size,
                "deep cache": deep_cache,
                "batches": f"{SMALL}, {large}",
                "counted MiB/row": counted / MIB,
                "measured MiB/row": measured / MIB,
                "measured/counted": measured / counted,
                "within MARGIN": "yes" if measured <= MARGIN * counted else f"no (> {MARGIN})",
            }
        )
        print(json.dumps(rows[-1]), flush=True)
    return rows


def fmt(v) -> str:
    return f"{v:.2f}" if isinstance(v, float) else str(v)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--smoke", action="store_true", help="tiny at 16 px only")
    p.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        child(args.child[0], int(args.child[1]), int(args.child[2]))
        return
    cases = [("tiny", 16)] if args.smoke else [("tiny", 32), ("base", 64)]
    with tempfile.TemporaryDirectory() as tmp:
        rows = [r for name, size in cases for r in measure(name, size, Path(tmp))]
    print("CPU, fp32; peak resident memory growth per UNet row against the count")
    print("| " + " | ".join(COLUMNS) + " |")
    print("|" + "---|" * len(COLUMNS))
    for r in rows:
        print("| " + " | ".join(fmt(r[c]) for c in COLUMNS) + " |")
    sys.exit(0 if all(r["within MARGIN"] == "yes" for r in rows) else 1)


if __name__ == "__main__":
    main()
