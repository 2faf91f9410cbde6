"""``report.md``: the evaluation report as Markdown tables."""

from __future__ import annotations

import json
from typing import Any

from facediff.evaluation.report import AttributeCell, Report


def _f(v: Any, digits: int = 3) -> str:
    if v is None:
        return "n/a"
    if isinstance(v, float):
        return f"{v:.{digits}f}"
    return str(v)


def _g(v: Any) -> str:
    return "n/a" if v is None else f"{v:.4g}"


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return [*lines, ""]


def judge_lines(report: Report) -> list[str]:
    j = report.judge
    acc = j.heldout_accuracy
    split = j.split
    cfg = j.config
    lines = [
        "## 1. The judge (read this first)",
        "",
        f"A ResNet classifier (width {cfg['width']}, blocks {cfg['blocks']}, "
        f"{cfg['epochs']} epochs) trained from scratch on "
        f"{split['train_count']} prepared images; {split['heldout_count']} images "
        f"({split['heldout_fraction']:.0%} per category, seed {split['seed']}) are held out. "
        f"{'Trained now' if j.trained_now else 'Reused from the cache'}"
        f" ({_f(j.train_seconds, 1)} s to train).",
        "",
        f"Held-out accuracy: **{_f(acc.overall)}** overall, "
        f"{_f(acc.balanced)} balanced (mean over categories).",
        "",
    ]
    rows = [[code, v.name, str(v.n), _f(v.accuracy)] for code, v in acc.per_category.items()]
    lines += _table(["category", "name", "held-out images", "accuracy"], rows)
    return lines + judge_attribute_lines(report)


def judge_attribute_lines(report: Report) -> list[str]:
    """The judge's attribute heads: held-out accuracy per value (known labels only)."""
    if not report.judge.attribute_accuracy:
        return []
    lines = [
        "Attribute heads (trained and scored on known labels only; held-out images "
        "spread over each category's attribute cells):",
        "",
    ]
    rows = []
    for name, a in report.judge.attribute_accuracy.items():
        rows.append([name, "all", str(a.n), _f(a.overall), _f(a.balanced)])
        rows += [[name, v, str(r.n), _f(r.accuracy), ""] for v, r in a.per_value.items()]
    return lines + _table(["attribute", "value", "held-out images", "accuracy", "balanced"], rows)


def hit_lines(report: Report) -> list[str]:
    counts = report.data.get("counts") or {}  # absent from reports before they were recorded
    trained = ["training images"] if counts else []
    rows = [
        [
            r.category,
            r.name,
            *([f"{counts.get(r.category, 0):,}"] if counts else []),
            str(r.n),
            _f(r.hit_rate),
            f"{r.ci95[0]:.3f}–{r.ci95[1]:.3f}",
            _f(r.mean_probability),
        ]
        for r in report.hit_rate
    ]
    header = ["category", "name", *trained, "samples", "hit rate", "95% CI", "mean P(category)"]
    return [
        "## 2. Category hit rate",
        "",
        "Share of samples asked for a category that the judge assigns to it (Wilson 95% "
        "interval), beside the images of it the model trained on.",
        "",
        *_table(header, rows),
    ]


def balance_lines(report: Report) -> list[str]:
    codes = report.codes
    rows = []
    for r in report.mix_balance:
        pairs = [f"{r.mean_probability[c]:.2f} / {r.requested[c]:.2f}" for c in codes]
        rows.append([r.mix, str(r.n), *pairs, _f(r.balance)])
    return [
        "## 3. Mix balance",
        "",
        "Judge's mean probability / requested weight per category; balance = 1 − total "
        "variation distance between the two vectors (1 = exactly as requested).",
        "",
        *_table(["mix", "samples", *codes, "balance"], rows),
    ]


def realism_lines(report: Report) -> list[str]:
    lines = [
        "## 4. Realism and coverage",
        "",
        "Against held-out real images. FD = Fréchet distance (FID in Inception space), "
        "KID = kernel inception distance (unbiased MMD², cubic polynomial kernel), "
        "precision/recall = k-NN manifolds (k=3, Kynkäänniemi et al. 2019). Lower FD/KID "
        "is better; precision = realism, recall = coverage. FD from few samples is biased upward.",
        "",
    ]
    for space, sec in report.realism.items():
        lines += [f"### Feature space: {space}", "", sec.description, ""]
        rows = []
        items = list(sec.per_category.items())
        if sec.pooled:
            items.append((sec.pooled_name(), sec.pooled))
        for name, r in items:
            rows.append([
                name, str(r.n_samples), str(r.n_real), _g(r.fd),
                f"{_g(r.kid)} ± {_g(r.kid_std)}", _f(r.precision), _f(r.recall),
            ])  # fmt: skip
        lines += _table(
            ["category", "samples", "real", "FD", "KID ± std", "precision", "recall"], rows
        )
        if sec.mixes:
            mix_rows = [[m, _f(v.precision)] for m, v in sec.mixes.items()]
            lines += ["Hybrid mixes, precision against all held-out real images:", ""]
            lines += _table(["mix", "precision"], mix_rows)
    return lines


def memorisation_lines(report: Report) -> list[str]:
    m = report.memorisation
    q = m.look_alike_quantile or 0.0
    rows = [
        [
            label,
            str(v.n),
            _f(v.median_nn_distance, 4),
            _f(v.memorised_share),
            _look_alike_text(v.look_alike_share, v.look_alike_n),
        ]
        for label, v in m.per_mix.items()
    ]
    return [
        "## 5. Memorisation and look-alike samples",
        "",
        f"Distance: {m.space}. Reference: {m.reference}. A sample is "
        f"*memorised-like* when its nearest training image is closer than the threshold "
        f"{m.threshold:.4f} = the {m.quantile:.0%} quantile of distances from "
        f"{m.baseline}. Real images' median distance: {m.real_median_nn_distance:.4f}; "
        f"samples': {m.sample_median_nn_distance:.4f}. "
        f"Overall memorised-like share: **{m.memorised_share:.3f}** "
        f"(≈{m.quantile:.2f} expected for samples as novel as held-out photos). "
        "Closest pairs: memorisation.png.",
        "",
        "A sample is *look-alike* when its nearest other sample of the same group is closer "
        f"than all but {q:.0%} of the distances from photos of the group's categories to "
        "their nearest other photo, in as many photos (at most 256; a mix draws its "
        f"categories' photos in its weights): photos score about {q:.2f}, a set whose faces "
        "repeat up to 1. The closest pairs of samples within a group: look_alike.png.",
        "",
        *_table(
            ["mix", "samples", "median NN distance", "memorised-like share", "look-alike share"],
            rows,
        ),
    ]


def _look_alike_text(share: float | None, n: int | None) -> str:
    """``"0.062 (of 100)"``, or n/a when the group was too small to compare."""
    return "n/a" if share is None else f"{share:.3f} (of {n})"


def colour_lines(report: Report) -> list[str]:
    c = report.colour
    rows = [
        [
            label,
            str(v.n),
            _f(v.cast_rate),
            v.shift_text(),
            v.tint_text(),
            _f(v.variety, 2),
            "/".join(f"{x:.0f}" for x in v.mean_rgb),
        ]
        for label, v in c.per_group.items()
    ]
    real_rgb = "/".join(f"{x:.0f}" for x in c.real_mean_rgb)
    real = [c.real_shift_text(), "", c.real_variety_text(), real_rgb]
    rows.append(["held-out photos", "", _f(c.real_cast_rate), *real])
    shift = (
        f" A set is *shifted* when the shift exceeds both {c.shift_warning} and chance (the "
        "shift that as many photos exceed 0.1% of the time)."
        if c.shift_warning is not None
        else ""
    )
    return [
        "## 6. Colour casts and noise",
        "",
        f"A sample has a *colour cast* when its per-channel mean and standard deviation lie "
        f"outside the ellipse (Mahalanobis distance) that holds {c.coverage:.0%} of the "
        "prepared photos: green, blue or magenta faces, or washed-out ones. Real photos "
        "score about 1%. The cast rate judges each image alone; the *shift* judges the set: "
        "the distance of the samples' average colour statistics from the average of the "
        "prepared photos of the same categories (a mix: its weighted average), in units of "
        "how much one category's photos vary. It catches a tint every image shares but none "
        "overdoes (all backgrounds a little green); *tint* is the average colour's "
        "difference, 0–255. *Variety* is how much the colour statistics vary from image to "
        "image, in the same units: about 1 for photos, well under for samples whose "
        f"backgrounds and skins all look alike.{shift}",
        "",
        *_table(["group", "samples", "cast rate", "shift", "tint", "variety", "mean RGB"], rows),
        "",
        *noise_lines(report),
    ]


def noise_lines(report: Report) -> list[str]:
    n = report.noise
    if n is None:
        return []
    rows = [
        [label, str(v.n), _f(v.noise_rate), _f(v.median_grain, 4)]
        for label, v in n.per_group.items()
    ]
    rows.append(["held-out photos", "", _f(n.real_noise_rate), _f(n.real_median_grain, 4)])
    return [
        f"A sample is *noisy* when its grain (the median absolute Laplacian of its luminance, "
        f"0–1 scale) exceeds {n.threshold:.4f}, which {n.coverage:.0%} of the prepared photos "
        "stay under: speckle that judge features and colour statistics miss. Real photos "
        "score about 1%.",
        "",
        *_table(["group", "samples", "noise rate", "median grain"], rows),
        "",
    ]


def _requested(cell: AttributeCell) -> str:
    return ", ".join(f"{k} {v}" for k, v in cell.requested.items())


def attribute_lines(report: Report) -> list[str]:
    a = report.attributes
    if a is None:
        return []
    mode = "each value alone" if a.cells_requested == "each" else "every combination"
    lines = [
        "## 7. Attributes",
        "",
        f"{a.per_cell} samples per category × requested attribute value ({mode}; the "
        "others left free). Hit rate = share judged as every requested value (Wilson 95% "
        "interval); free rate = share of the category's samples with the attribute left free "
        "that the judge gives the same value (what a model ignoring the request would "
        "score); judge accuracy = the judge's held-out accuracy on photos of that category "
        "and value. Where several values are requested, free rate and judge accuracy are "
        "given for each, in the order requested.",
        "",
    ]
    rows = []
    for c in a.cells:
        free = [_f(h.free_rate) for h in c.per_attribute.values()]
        judged = [_f(h.judge_accuracy) for h in c.per_attribute.values()]
        rows.append([
            c.category, _requested(c), str(c.n), _f(c.hit_rate),
            f"{c.ci95[0]:.3f}–{c.ci95[1]:.3f}", " / ".join(free), " / ".join(judged),
            _f(c.category_hit_rate),
        ])  # fmt: skip
    if rows:
        header = ["category", "requested", "samples", "hit rate", "95% CI", "free rate"]
        lines += _table([*header, "judge accuracy", "category hit rate"], rows)
    if a.worst_cell is not None:
        w = a.worst_cell
        lines += [
            f"Worst cell: **{w.category} {_requested(w)}**, hit rate {w.hit_rate:.3f} "
            f"({w.hits}/{w.n}).",
            "",
        ]
    if a.free:
        lines += [
            "Attributes left free: share of each value among the samples / in the data's "
            "known labels of the category / among its held-out photos as the judge sees "
            "them; TVD = total variation distance samples vs data (0 = the data's mix). "
            "Guidance above 1 sharpens each category toward its mode and can narrow this "
            "mix; `--guidance 1` measures the model's own conditional mix.",
            "",
        ]
        for attr in dict.fromkeys(f.attribute for f in a.free):
            mixes = [f for f in a.free if f.attribute == attr]
            values = list(mixes[0].data)
            rows = [
                [f.category, str(f.n)]
                + [f"{f.samples[v]:.2f} / {f.data[v]:.2f} / {f.judged_real[v]:.2f}" for v in values]
                + [_f(f.tvd)]
                for f in mixes
            ]
            lines += _table(["category", "samples", *values, "TVD"], rows)
    return lines


def provenance_lines(report: Report) -> list[str]:
    """Samples read from a folder: what drew them, by its ``samples.json``."""
    drawn: dict[str, tuple[dict, list[str]]] = {}
    for label, group in report.samples.groups.items():
        for origin in group.sampled_by:
            settings = {k: v for k, v in origin.items() if k not in ("images", "mix")}
            key = json.dumps(settings, sort_keys=True)
            drawn.setdefault(key, (settings, []))[1].append(f"{label} ({origin['images']})")
    if not any("model" in settings for settings, _ in drawn.values()):
        return []  # a folder without a record (or an old one) says nothing of its images
    lines = ["Drawn by (from the folder's samples.json):", ""]
    for settings, groups in drawn.values():
        if "model" not in settings:
            lines.append(f"- not listed in samples.json: {', '.join(groups)}")
            continue
        rest = dict(settings)
        model, step, weights = rest.pop("model"), rest.pop("step", "?"), rest.pop("weights", "?")
        details = ", ".join(f"{k} {v}" for k, v in rest.items())
        lines.append(
            f"- `{model}` (step {step}, {weights} weights; {details}): {', '.join(groups)}"
        )
    return [*lines, ""]


def _reals_line(heldout: dict[str, Any] | None) -> str:
    if heldout is None:
        return (
            "Real photos: the judge's held-out split of the data, which the model trained on "
            "(`prepare --holdout` or `evaluate --heldout` give photos it never saw)."
        )
    dropped = heldout["dropped"]
    also = f"; {dropped} also in the training data were dropped" if dropped else ""
    return (
        f"Real photos: `{heldout['path']}`, {heldout['images']} photos the model never "
        f"trained on{also}."
    )


def render_markdown(report: Report) -> str:
    s = report.samples
    src = "generated" if s.source == "generated" else f"read from {s.source}"
    counts = sorted({g.n for g in s.groups.values()} or {s.per_group})
    n = f"{counts[0]}" if len(counts) == 1 else f"{counts[0]}–{counts[-1]}"
    lines = [
        "# facediff evaluation",
        "",
        f"Run `{report.run}`, data `{report.data['path']}`; {n} samples per group ({src}).",
        "",
        _reals_line(report.data.get("heldout")),
        "",
    ]
    for warning in report.warnings:
        lines += [f"> **Warning:** {warning}.", ""]
    lines += provenance_lines(report)
    if s.sample_config is not None:
        lines += [", ".join(f"{k} {v}" for k, v in s.sample_config.items()), ""]
    lines += judge_lines(report) + hit_lines(report) + balance_lines(report)
    lines += realism_lines(report) + memorisation_lines(report) + colour_lines(report)
    lines += attribute_lines(report)
    lines += ["## Notes", "", *[f"- {n}" for n in report.notes], ""]
    if report.files:
        lines += ["## Charts", "", *[f"![{k}]({v})" for k, v in report.files.items()], ""]
    return "\n".join(lines)
