"""Images/s of ``facediff.preparation`` versus a naive sequential PIL loop, in one run.

    python benchmarks/prepare_speed.py [--raw ../shared/data/utkface] [--limit N] [--size 64]

The naive loop is what a notebook does: for each file, ``Image.open`` → ``convert("RGB")``
→ ``resize((S, S))`` (squashing non-square photos) → ``save`` PNG, one file after the
other. ``prepare`` does more per file (content hash and de-duplication, full-decode
validation, EXIF orientation, centre crop, Lanczos, the packed file and manifest) and
spreads the decoding over a process pool. Outputs go to temporary folders.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

from PIL import Image

from facediff.imaging import IMAGE_EXTENSIONS
from facediff.preparation import prepare

DEFAULT_RAW = Path(__file__).resolve().parents[1].parent / "shared/data/utkface"


def image_files(raw: Path, limit: int | None) -> list[Path]:
    files = sorted(
        p for p in raw.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS
    )
    return files[:limit] if limit else files


def linked_raw(files: list[Path], folder: Path) -> Path:
    """A raw folder of symbolic links to ``files`` (no copies)."""
    folder.mkdir()
    for f in files:
        (folder / f.name).symlink_to(f.resolve())
    return folder


def naive(files: list[Path], out: Path, size: int) -> float:
    out.mkdir()
    started = time.perf_counter()
    for i, f in enumerate(files):
        with Image.open(f) as im:
            im.convert("RGB").resize((size, size)).save(out / f"{i:06d}.png")
    return time.perf_counter() - started


def timed_prepare(raw: Path, out: Path, size: int, workers: int) -> tuple[float, int]:
    started = time.perf_counter()
    report = prepare(raw, out, size=size, workers=workers)
    return time.perf_counter() - started, report.kept


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--raw", type=Path, default=DEFAULT_RAW)
    parser.add_argument("--limit", type=int, default=None, help="first N files only")
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--workers", type=int, default=0, help="prepare's pool (0 = all cores)")
    args = parser.parse_args()
    if not args.raw.is_dir():
        sys.exit(f"raw folder not found: {args.raw}")
    files = image_files(args.raw, args.limit)
    workers = args.workers or len(os.sched_getaffinity(0))
    print(f"{len(files)} files from {args.raw}, size {args.size}, {workers} workers")
    print(f"load average before: {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores")
    with tempfile.TemporaryDirectory(prefix="facediff-bench-") as tmp:
        tmp = Path(tmp)
        raw = linked_raw(files, tmp / "raw") if args.limit else args.raw
        naive_s = naive(files, tmp / "naive", args.size)
        one_s, kept = timed_prepare(raw, tmp / "one", args.size, 1)
        pool_s, _ = timed_prepare(raw, tmp / "pool", args.size, workers)
    n = len(files)
    rows = [
        ("naive PIL loop (sequential)", naive_s),
        ("prepare(workers=1)", one_s),
        (f"prepare(workers={workers})", pool_s),
    ]
    print(f"\n{'method':32} {'seconds':>8} {'images/s':>9} {'vs naive':>9}")
    for name, seconds in rows:
        print(f"{name:32} {seconds:8.2f} {n / seconds:9.0f} {naive_s / seconds:8.2f}x")
    print(f"\nprepare kept {kept} of {n} files (the rest: duplicates or unreadable)")
    print(f"load average after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
