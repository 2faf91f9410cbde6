"""Carry a steps-sweep folder back from a GPU machine in few, small files, losslessly.

``sample_throughput.py --sweep`` writes one ``samples-TAG.safetensors`` per setting (1,000
uint8 64×64 images are 12.3 MB each) plus ``rows.json`` and ``split.json``; the device
machine returns at most 8 files of 16 MiB, 64 MiB in all. ``pack`` writes each sample set as
one lossless WebP grid (about 5.4 MB for 1,000 UTKFace-like faces) and everything else into
``pack.json``; with more sets than ``--files`` (default 8, pack.json included) leaves room
for, sets share a grid file, stacked. ``unpack`` rebuilds the folder bit for bit, for
``time_to_fid.py score``::

    python benchmarks/sample_pack.py pack WORK/steps-sweep $OUT/sweep      # on the GPU machine
    python benchmarks/sample_pack.py unpack OUT/sweep WORK/steps-sweep     # here, then score
"""

from __future__ import annotations

import argparse
import json
import math
import re
import sys
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from safetensors.torch import load_file, save_file

MAX_FILES = 8  # what the device machine returns
WEBP_MAX_SIDE = 16383  # pixels
#: Characters the device machine returns a file name with; others (``+`` in
#: ``dpmsolver++``) are written as safe spellings (:func:`safe_name`) and the real name kept in
#: pack.json.
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")


def safe_name(name: str) -> str:
    """``name`` with ``+`` spelt ``p`` and any other character outside letters, digits,
    ``.``, ``_`` and ``-`` as ``_`` (the device machine leaves such files behind)."""
    return _UNSAFE.sub("_", name.replace("+", "p"))


def grid(images: torch.Tensor, cols: int) -> Image.Image:
    """N×3×S×S uint8 as one RGB image of ``cols`` tiles per row (black after the last)."""
    n, _, s, _ = images.shape
    rows = max(1, math.ceil(n / cols))
    canvas = torch.zeros(rows * cols, 3, s, s, dtype=torch.uint8)
    canvas[:n] = images
    canvas = canvas.view(rows, cols, 3, s, s).permute(0, 3, 1, 4, 2).reshape(rows * s, cols * s, 3)
    return Image.fromarray(canvas.numpy())


def tiles(image: Image.Image, n: int, size: int, cols: int) -> torch.Tensor:
    """The first ``n`` tiles of a :func:`grid` as N×3×S×S uint8."""
    arr = torch.from_numpy(np.array(image.convert("RGB")))
    rows = arr.shape[0] // size
    t = arr.view(rows, size, cols, size, 3).permute(0, 2, 4, 1, 3).reshape(-1, 3, size, size)
    return t[:n].contiguous()


def pack(src: Path, dst: Path, files: int = MAX_FILES) -> list[Path]:
    """Each sample set of ``src`` as a WebP grid in ``dst``, plus ``pack.json``: at most
    ``files`` files, so sets share a grid file (stacked one below the other) where there
    are more than ``files - 1``."""
    sets = sorted(src.glob("samples-*.safetensors"))
    if files < 2:
        raise SystemExit(f"--files {files}: at least 2 (a grid and pack.json)")
    per_file = max(1, math.ceil(len(sets) / (files - 1)))
    dst.mkdir(parents=True, exist_ok=True)
    meta = {"files": {}, "sets": []}
    for name in ("rows.json", "split.json"):
        if (src / name).exists():
            meta["files"][name] = json.loads((src / name).read_text())
    written = []
    for first in range(0, len(sets), per_file):
        group = sets[first : first + per_file]
        grids, row = [], 0
        for path in group:
            t = load_file(str(path))
            images, labels = t["images"], t["labels"]
            cols = max(1, math.ceil(math.sqrt(len(images))))
            grids.append(grid(images, cols))
            meta["sets"].append(
                {
                    "name": path.name,
                    "n": len(images),
                    "size": images.shape[-1],
                    "cols": cols,
                    "row": row,  # its first pixel row in the grid file
                    "labels": labels.tolist(),
                }
            )
            row += grids[-1].height
        name = group[0].name if per_file == 1 else f"samples-part-{first // per_file + 1}"
        out = dst / safe_name(name.removesuffix(".safetensors") + ".webp")
        width = max(g.width for g in grids)
        if row > WEBP_MAX_SIDE or width > WEBP_MAX_SIDE:
            raise SystemExit(
                f"{len(sets)} sample sets in {files} files: {out.name} would be "
                f"{row} px tall, over WebP's {WEBP_MAX_SIDE}; pass more --files"
            )
        canvas = Image.new("RGB", (width, row))
        y = 0
        for g in grids:
            canvas.paste(g, (0, y))
            y += g.height
        canvas.save(out, "WEBP", lossless=True, quality=100, method=4)
        for entry in meta["sets"][first:]:
            entry["grid"] = out.name
        written.append(out)
    (dst / "pack.json").write_text(json.dumps(meta))
    return [*written, dst / "pack.json"]


def unpack(src: Path, dst: Path) -> list[Path]:
    meta = json.loads((src / "pack.json").read_text())
    dst.mkdir(parents=True, exist_ok=True)
    written = []
    for name, content in meta["files"].items():
        (dst / name).write_text(json.dumps(content, indent=2))
        written.append(dst / name)
    for s in meta["sets"]:
        size, cols, row = s["size"], s["cols"], s.get("row", 0)  # no "row": one set a file
        height = max(1, math.ceil(s["n"] / cols)) * size
        with Image.open(src / s["grid"]) as im:
            part = im.crop((0, row, cols * size, row + height))
            images = tiles(part, s["n"], size, cols)
        labels = torch.tensor(s["labels"], dtype=torch.int64)
        save_file({"images": images, "labels": labels}, str(dst / s["name"]))
        written.append(dst / s["name"])
    return written


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("action", choices=("pack", "unpack"))
    p.add_argument("src")
    p.add_argument("dst")
    p.add_argument(
        "--files",
        type=int,
        default=MAX_FILES,
        help=f"pack: at most this many files, pack.json included (default {MAX_FILES})",
    )
    args = p.parse_args()
    src = Path(args.src)
    if not src.is_dir():
        p.error(f"{src}: no such folder")
    if args.action == "pack":
        files = pack(src, Path(args.dst), args.files)
    else:
        files = unpack(src, Path(args.dst))
    size = sum(f.stat().st_size for f in files)
    print(
        f"{args.action}: {len(files)} files, {size / 2**20:.1f} MiB in {args.dst}", file=sys.stderr
    )


if __name__ == "__main__":
    main()
