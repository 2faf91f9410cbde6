"""What ``evaluate``'s colour measures see on real photos: the colour shift (a tint the whole
set shares) and the colour-cast rate (single images far off), for unseen photos and for
copies blended a few percent towards green, blue or magenta; and how far the categories'
own photos lie apart in the shift's units.

Each category's photos in ``DATA`` (a prepared dataset) are split at random: ``--n`` of them
(default 100) stand in for samples, the rest and the other categories fit the references,
as ``evaluate`` fits them to the prepared photos. ``--draws`` random splits per category give
the chance distribution of an unseen set's shift::

    python benchmarks/colour_shift.py ../shared/data/utk64-prepared --n 100 --draws 200
"""

from __future__ import annotations

import argparse
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch

TINTS = {"green": (0, 200, 0), "blue": (0, 0, 255), "magenta": (200, 0, 200)}


def blend(x: torch.Tensor, colour: tuple[int, int, int], amount: float) -> torch.Tensor:
    c = torch.tensor(colour, dtype=torch.float32).view(1, 3, 1, 1)
    return ((1 - amount) * x.float() + amount * c).round().to(torch.uint8)


def unseen_splits(
    labels: torch.Tensor, k: int, n: int, draws: int, g: torch.Generator
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """``draws`` random splits of category ``k``: the indices of ``n`` of its photos, which
    stand in for samples, and the mask of the rest of the data, which the references see."""
    mine = torch.nonzero(labels == k).flatten()
    for _ in range(draws):
        pick = mine[torch.randperm(len(mine), generator=g)[:n]]
        keep = torch.ones(len(labels), dtype=torch.bool)
        keep[pick] = False
        yield pick, keep


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("data", help="a prepared dataset (facediff prepare)")
    p.add_argument("--n", type=int, default=100, help="photos standing in for samples")
    p.add_argument("--draws", type=int, default=200, help="random splits per category")
    p.add_argument("--amounts", default="0.02,0.05,0.1", help="blend amounts towards a tint")
    args = p.parse_args()

    from facediff.dataset import load_prepared
    from facediff.evaluation.colour import (
        SHIFT_WARNING,
        colour_reference_from_statistics,
        colour_statistics,
        shift_reference_from_statistics,
        shifted,
    )

    data = load_prepared(Path(args.data), verify=False)
    k_all = len(data.categories)
    codes = [c.code for c in data.categories]
    stats = colour_statistics(data.images)  # once: the references are refitted per draw
    whole = shift_reference_from_statistics(stats, data.labels, k_all)
    if whole is None:
        raise SystemExit("too few photos to fit the colour-shift reference")
    print(f"{len(data)} photos, per category {data.labels.bincount(minlength=k_all).tolist()}")
    print("\nHow far the categories' photos lie apart (shift units):")
    for a in range(k_all):
        for b in range(a + 1, k_all):
            d = whole.whiten @ (whole.means[a] - whole.means[b])
            print(f"  {codes[a]}–{codes[b]}: {np.linalg.norm(d):.2f}")

    g = torch.Generator().manual_seed(0)
    amounts = [float(a) for a in args.amounts.split(",")]
    print(
        f"\n| category | set | shift (median of {args.draws} draws) | 99.9% of draws "
        "| chance bound | shifted | cast rate |"
    )
    print("|---|---|---:|---:|---:|---:|---:|")
    for k in range(k_all):
        if int((data.labels == k).sum()) < 2 * args.n:
            print(f"| {codes[k]} | fewer than {2 * args.n} photos: skipped | | | | | |")
            continue
        shift_of: dict[str, list[float]] = {}
        flagged: dict[str, list[bool]] = {}
        cast: dict[str, list[float]] = {}
        for pick, keep in unseen_splits(data.labels, k, args.n, args.draws, g):
            shifts = shift_reference_from_statistics(stats[keep.numpy()], data.labels[keep], k_all)
            casts = colour_reference_from_statistics(stats[keep.numpy()])
            chance = shifts.chance(args.n, {k: 1.0})
            variants = {"unseen photos": data.images[pick]}
            for amount in amounts:
                for name, colour in TINTS.items():
                    variants[f"{amount:.0%} {name}"] = blend(data.images[pick], colour, amount)
            for name, images in variants.items():
                s = shifts.shift(images, {k: 1.0})
                shift_of.setdefault(name, []).append(s)
                flagged.setdefault(name, []).append(shifted(s, chance))
                cast.setdefault(name, []).append(casts.cast_rate(images))
        for name, values in shift_of.items():
            print(
                f"| {codes[k]} | {name} | {np.median(values):.2f} "
                f"| {np.quantile(values, 0.999):.2f} | {chance:.2f} "
                f"| {np.mean(flagged[name]):.1%} | {np.mean(cast[name]):.1%} |",
                flush=True,
            )
    print(
        f"\nshifted: the share of draws whose shift exceeds both {SHIFT_WARNING} and the chance "
        "bound (evaluate's warning); cast rate: the mean share of single images outside the "
        "ellipse holding 99% of the photos."
    )


if __name__ == "__main__":
    main()
