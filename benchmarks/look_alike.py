"""What ``evaluate``'s look-alike share sees on real photos: unseen photos (whose share is the
floor, about 1%) against the same sets with a few faces repeated (a copy of another face of
the set with a little pixel noise, as a collapsing model repeats a face).

Each category's photos in ``DATA`` (a prepared dataset) are split at random as
``colour_shift.py`` splits them: ``--n`` of them (default 100) stand in for samples, the rest
are the photos ``evaluate`` compares them with (in ``evaluate``: all prepared photos).
``--draws`` random splits per category::

    python benchmarks/look_alike.py /tmp/utk64 --n 100 --draws 20
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch


def repeated(x: torch.Tensor, share: float, g: torch.Generator) -> torch.Tensor:
    """``x`` with its first ``share`` of faces replaced by noisy copies of the next ones."""
    m = round(len(x) * share)
    out = x.clone()
    noise = 3 * torch.randn(out[:m].shape, generator=g)
    out[:m] = (x[m : 2 * m].float() + noise).round().clamp(0, 255).to(torch.uint8)
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("data", help="a prepared dataset (facediff prepare)")
    p.add_argument("--n", type=int, default=100, help="photos standing in for samples")
    p.add_argument("--draws", type=int, default=20, help="random splits per category")
    p.add_argument("--repeats", default="0.02,0.05,0.1,0.2", help="shares of faces repeated")
    args = p.parse_args()

    from colour_shift import unseen_splits  # this folder: the same splits

    from facediff.dataset import load_prepared
    from facediff.evaluation.repeats import QUANTILE, WARNING, look_alike, warns

    data = load_prepared(Path(args.data), verify=False)
    codes = [c.code for c in data.categories]
    g = torch.Generator().manual_seed(0)
    shares = [float(s) for s in args.repeats.split(",")]
    print(f"{len(data)} photos; sets of {args.n}; {args.draws} draws per category")
    print("\n| category | set | look-alike share (mean) | largest | warned |")
    print("|---|---|---:|---:|---:|")
    for k, code in enumerate(codes):
        if int((data.labels == k).sum()) < 2 * args.n:
            print(f"| {code} | fewer than {2 * args.n} photos: skipped | | | |")
            continue
        seen: dict[str, list[float]] = {}
        warned: dict[str, list[bool]] = {}
        for draw, (pick, keep) in enumerate(unseen_splits(data.labels, k, args.n, args.draws, g)):
            variants = {"unseen photos": data.images[pick]}
            for share in shares:
                variants[f"{share:.0%} repeated"] = repeated(data.images[pick], share, g)
            for name, images in variants.items():
                got = look_alike(images, data.images[keep], data.labels[keep], {k: 1.0}, draw)
                seen.setdefault(name, []).append(got.share)
                warned.setdefault(name, []).append(warns(got.share, got.n))
        for name, values in seen.items():
            print(
                f"| {code} | {name} | {np.mean(values):.3f} | {max(values):.3f} "
                f"| {np.mean(warned[name]):.0%} |",
                flush=True,
            )
    print(
        f"\nlook-alike: a face whose nearest other face of the set is closer than all but "
        f"{QUANTILE:.0%} of the photos' nearest-other-photo distances; warned: the share of "
        f"draws where evaluate warns (the 95% interval of the share wholly above {WARNING:.0%})."
    )


if __name__ == "__main__":
    main()
