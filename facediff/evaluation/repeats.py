"""Look-alike samples: how often a sample has a near-twin among its own group.

Memorisation asks whether a sample copies a training photo; this asks whether samples copy
*each other* — the repeated face of a collapsed or over-guided model, which FID and the
colour statistics only see as a vague loss of spread. Each sample's distance to its
nearest other sample of the group (RMS pixel difference on a 0–1 scale, at the data
resolution) is set against the same distance among as many prepared photos of the
group's categories (a mix draws them in its weights), drawn :data:`DRAWS` times: a sample
is *look-alike* when its nearest other sample is closer than all but
:data:`QUANTILE` (1%) of the photos' nearest-other-photo distances. Photos themselves
score about 1%; a set where every face appears twice scores 100%. On UTKFace at 64×64
(``benchmarks/look_alike.py``, 100 draws of 100 unseen photos per category) photos scored
1.0–1.4% on average and at most 6%; the same sets with 5% of their faces repeated (a noisy
copy of another face of the set) 11%, with 10% repeated 21%. The report warns when the
share is surely above :data:`WARNING` (5%): never for those photos, for 29–40% of the sets
with 5% repeated and for all with 10%.

Both sides are compared at one count, because nearest-neighbour distances shrink as a set
grows: ``n`` = the group's samples, at most :data:`MAX_SET` (a fixed random subset of the
samples beyond it) and at most the photos there are.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from facediff.evaluation.maths import pairwise_nearest, wilson_interval

QUANTILE = 0.01  # the photos' own look-alike share, by construction
DRAWS = 8  # photo sets drawn for the reference distances
MAX_SET = 256  # at most this many samples (and photos per draw) are compared
MIN_SET = 8  # fewer samples (or photos) than this: no look-alike share
#: Warn when the 95% interval of a group's look-alike share lies wholly above this:
#: five times the photos' own 1%.
WARNING = 0.05
CLOSEST = 8  # pairs of a group kept to be shown (look_alike.png)


@dataclass
class LookAlike:
    """One group's look-alike share and the pairs that show it."""

    n: int  # samples compared
    share: float  # of them, the share with a near-twin among them
    threshold: float  # the photos' QUANTILE nearest-other-photo distance
    #: the group's closest pairs, closest first: (distance, i, j), i < j, indices into the
    #: group's samples
    closest: list[tuple[float, int, int]] = field(default_factory=list)


def nearest_other(images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Each image's RMS pixel distance (0–1 scale) to its nearest *other* image of the set,
    and that image's index (uint8 N×3×S×S, N ≥ 2)."""
    x = images.double().div(255)
    exclude = torch.arange(len(x), device=x.device)
    nn, index = pairwise_nearest(x, x, exclude=exclude)
    return nn / x[0].numel() ** 0.5, index


def _draw_counts(n: int, weights: dict[int, float], available: dict[int, int]) -> dict[int, int]:
    """How many photos of each category one draw of ``n`` takes: in proportion to the
    mix ``weights`` (largest remainders), never more than a category has."""
    exact = {k: n * w for k, w in weights.items() if w > 0}
    counts = {k: min(int(v), available[k]) for k, v in exact.items()}
    order = sorted(exact, key=lambda k: exact[k] - int(exact[k]), reverse=True)
    while sum(counts.values()) < n:
        room = [k for k in order if counts[k] < available[k]]
        if not room:
            break
        for k in room[: n - sum(counts.values())]:
            counts[k] += 1
    return counts


def look_alike(
    samples: torch.Tensor,
    photos: torch.Tensor,
    photo_labels: torch.Tensor,
    weights: dict[int, float],
    seed: int = 0,
    device: torch.device | str = "cpu",
) -> LookAlike | None:
    """One group's look-alike share, measured on at most :data:`MAX_SET` of its
    ``samples``. None when fewer than :data:`MIN_SET` samples or photos of the mix's
    categories can be compared, or a category of the mix has no photos. ``samples`` and
    ``photos`` are uint8 at one size; the distances are computed on ``device``."""
    available = {k: int((photo_labels == k).sum()) for k, w in weights.items() if w > 0}
    if not available or min(available.values()) == 0:
        return None
    g = torch.Generator().manual_seed(seed)
    n = min(len(samples), MAX_SET, sum(available.values()))
    if n < MIN_SET:
        return None
    compared = torch.arange(len(samples))
    if len(samples) > n:
        compared = torch.randperm(len(samples), generator=g)[:n].sort().values
    counts = _draw_counts(n, weights, available)
    members = {k: torch.nonzero(photo_labels == k).flatten() for k in counts}
    reference = []
    for _ in range(DRAWS):
        picked = [m[torch.randperm(len(m), generator=g)[: counts[k]]] for k, m in members.items()]
        reference.append(nearest_other(photos[torch.cat(picked)].to(device))[0])
    threshold = float(torch.quantile(torch.cat(reference), QUANTILE))
    dist, index = nearest_other(samples[compared].to(device))
    share = float((dist < threshold).double().mean())
    pairs = {}  # a mutual nearest pair once
    for a in dist.argsort().tolist():
        i, j = sorted((int(compared[a]), int(compared[index[a]])))
        pairs.setdefault((i, j), float(dist[a]))
        if len(pairs) == CLOSEST:
            break
    return LookAlike(n, share, threshold, [(d, i, j) for (i, j), d in pairs.items()])


def warns(share: float | None, n: int | None) -> bool:
    """Whether a look-alike share over ``n`` samples is surely (95%) above :data:`WARNING`.

    Near-twins come in pairs (a repeated face makes both of its copies look-alike), so the
    interval counts pairs: ``share·n/2`` of ``n/2``. Counted one by one, two or three chance
    pairs among 30 photos would be called sure."""
    if share is None or not n:
        return False
    return wilson_interval(share * n / 2, n / 2)[0] > WARNING
