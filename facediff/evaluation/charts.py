"""PNG charts for the evaluation report, drawn with PIL (matplotlib is not a dependency).

Each function takes the :class:`~facediff.evaluation.report.Report` (or the image pairs)
and writes one PNG: horizontal bars with labelled values, so the charts stay legible
without axes libraries.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

import torch
from PIL import Image, ImageDraw, ImageFont

from facediff.evaluation.report import Report
from facediff.files import save_image_atomic
from facediff.imaging import tensor_to_image

# Distinct, colour-blind-friendly category colours (Okabe & Ito 2008), cycled.
PALETTE = (
    (230, 159, 0),
    (86, 180, 233),
    (0, 158, 115),
    (240, 228, 66),
    (0, 114, 178),
    (213, 94, 0),
    (204, 121, 167),
    (120, 120, 120),
)
BG, FG, GRID, MUTED = (255, 255, 255), (20, 20, 20), (225, 225, 225), (110, 110, 110)
BAR_W, LABEL_W, ROW_H, PAD = 420, 170, 34, 14


@cache
def _font(size: int = 13) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1 has only the fixed bitmap font
        return ImageFont.load_default()


def _canvas(rows: int, title: str, extra_h: int = 0) -> tuple[Image.Image, ImageDraw.ImageDraw]:
    h = PAD * 3 + 24 + rows * ROW_H + extra_h + 30
    im = Image.new("RGB", (LABEL_W + BAR_W + 130, h), BG)
    d = ImageDraw.Draw(im)
    d.text((PAD, PAD), title, fill=FG, font=_font(15))
    return im, d


def _axis(d: ImageDraw.ImageDraw, x0: int, y0: int, y1: int, ticks=(0, 0.25, 0.5, 0.75, 1)):
    for t in ticks:
        x = x0 + round(t * BAR_W)
        d.line([(x, y0), (x, y1)], fill=GRID)
        d.text((x - 8, y1 + 3), f"{t:g}", fill=MUTED, font=_font(11))


def _whisker(d: ImageDraw.ImageDraw, ci95: list[float], y: int) -> None:
    """A 95% interval on a bar drawn at row top ``y``: a line with end caps."""
    lo, hi = (LABEL_W + round(v * BAR_W) for v in ci95)
    d.line([(lo, y + 9), (hi, y + 9)], fill=FG, width=2)
    d.line([(lo, y + 4), (lo, y + 14)], fill=FG, width=2)
    d.line([(hi, y + 4), (hi, y + 14)], fill=FG, width=2)


def _diamond(d: ImageDraw.ImageDraw, value: float, y: int) -> None:
    """The judge's accuracy marker at ``value`` (0..1) on the row drawn at ``y``."""
    x = LABEL_W + round(value * BAR_W)
    d.polygon([(x, y + 2), (x + 6, y + 9), (x, y + 16), (x - 6, y + 9)], fill=FG)


def _colour(i: int) -> tuple[int, int, int]:
    return PALETTE[i % len(PALETTE)]


def _legend(d: ImageDraw.ImageDraw, codes: list[str], x: int, y: int) -> None:
    for i, code in enumerate(codes):
        d.rectangle([x, y, x + 12, y + 12], fill=_colour(i))
        d.text((x + 16, y - 1), code, fill=FG, font=_font(12))
        x += 26 + 8 * len(code)


def mix_probabilities(report: Report, path: Path) -> None:
    """Stacked bars of the judge's mean probabilities per mix; below each, a thin bar of
    the requested weights, and black ticks on the main bar where the requested
    boundaries fall."""
    rows = report.mix_balance
    codes = report.codes
    im, d = _canvas(len(rows), "Judge's mean probabilities per mix (thin bar: requested)")
    _legend(d, codes, LABEL_W, PAD + 24)
    top = PAD * 2 + 34
    _axis(d, LABEL_W, top, top + len(rows) * ROW_H)
    for r, row in enumerate(rows):
        y = top + r * ROW_H + 4
        d.text((PAD, y + 4), f"{row.mix}  balance {row.balance:.2f}", fill=FG, font=_font())
        x, xr = float(LABEL_W), float(LABEL_W)
        for i, code in enumerate(codes):
            w = row.mean_probability[code] * BAR_W
            if w > 0:
                d.rectangle([round(x), y, round(x + w), y + 18], fill=_colour(i))
            x += w
            wr = row.requested[code] * BAR_W
            if wr > 0:
                d.rectangle([round(xr), y + 21, round(xr + wr), y + 25], fill=_colour(i))
            xr += wr
            if 0 < xr - LABEL_W < BAR_W - 0.5:
                d.line([(round(xr), y - 5), (round(xr), y + 25)], fill=FG, width=3)
    save_image_atomic(im, path)


def _rate_frame(rows: int, title: str) -> tuple[Image.Image, ImageDraw.ImageDraw, int]:
    """The canvas of a hit-rate chart with its 0-1 axis; returns the first row's top."""
    im, d = _canvas(rows, title)
    top = PAD * 2 + 34
    _axis(d, LABEL_W, top, top + max(rows, 1) * ROW_H)
    return im, d, top


def hit_rates(report: Report, path: Path) -> None:
    """Per-category hit rate with its Wilson 95% interval; the diamond marks the judge's
    held-out accuracy on real images of that category (the best a model could hope for)."""
    rows = report.hit_rate
    acc = report.judge.heldout_accuracy.per_category
    title = "Category hit rate (whisker: 95% CI; diamond: judge accuracy on real images)"
    im, d, top = _rate_frame(len(rows), title)
    codes = report.codes
    for r, row in enumerate(rows):
        y = top + r * ROW_H + 6
        d.text((PAD, y + 2), f"{row.category} {row.name}", fill=FG, font=_font())
        colour = _colour(codes.index(row.category))
        d.rectangle([LABEL_W, y, LABEL_W + round(row.hit_rate * BAR_W), y + 18], fill=colour)
        _whisker(d, row.ci95, y)
        real = acc[row.category].accuracy if row.category in acc else None
        if real is not None:
            _diamond(d, real, y)
        d.text((LABEL_W + BAR_W + 10, y + 2), f"{row.hit_rate:.2f}", fill=FG, font=_font())
    save_image_atomic(im, path)


def attribute_hit_rates(report: Report, path: Path) -> None:
    """Per category × requested attribute value: the hit rate with its Wilson 95%
    interval; the grey bar marks the free rate (what a model ignoring the request would
    score), the diamond the judge's held-out accuracy on photos of that category and value
    (one requested value only)."""
    section = report.attributes
    rows = section.cells if section is not None else []
    title = "Attribute hit rate (whisker: 95% CI; grey: free rate; diamond: judge accuracy)"
    im, d, top = _rate_frame(len(rows), title)
    codes = report.codes
    for r, cell in enumerate(rows):
        y = top + r * ROW_H + 6
        label = f"{cell.category} " + " ".join(cell.requested.values())
        d.text((PAD, y + 2), label, fill=FG, font=_font())
        colour = _colour(codes.index(cell.category)) if cell.category in codes else MUTED
        d.rectangle([LABEL_W, y, LABEL_W + round(cell.hit_rate * BAR_W), y + 18], fill=colour)
        _whisker(d, cell.ci95, y)
        hits = list(cell.per_attribute.values())
        if len(hits) == 1 and hits[0].free_rate is not None:
            xf = LABEL_W + round(hits[0].free_rate * BAR_W)
            d.rectangle([xf - 2, y - 2, xf + 2, y + 20], fill=MUTED)
        if len(hits) == 1 and hits[0].judge_accuracy is not None:
            _diamond(d, hits[0].judge_accuracy, y)
        d.text((LABEL_W + BAR_W + 10, y + 2), f"{cell.hit_rate:.2f}", fill=FG, font=_font())
    save_image_atomic(im, path)


def _value_bars(
    d: ImageDraw.ImageDraw, top: int, items: list[tuple[str, float | None]], colour
) -> int:
    values = [v for _, v in items if v is not None]
    vmax = max([*values, 1e-12])
    for r, (label, v) in enumerate(items):
        y = top + r * ROW_H + 6
        d.text((PAD, y + 2), label, fill=FG, font=_font())
        if v is None:
            d.text((LABEL_W, y + 2), "n/a", fill=MUTED, font=_font())
            continue
        w = max(0, round(max(v, 0) / vmax * BAR_W))
        d.rectangle([LABEL_W, y, LABEL_W + w, y + 18], fill=colour)
        d.text((LABEL_W + w + 6, y + 2), f"{v:.4g}", fill=FG, font=_font())
    return top + len(items) * ROW_H


def realism(report: Report, path: Path) -> None:
    """FD and KID per category (and pooled), one panel per feature space and metric."""
    panels = []
    for space, sec in report.realism.items():
        for metric in ("fd", "kid"):
            items = [(code, getattr(row, metric)) for code, row in sec.per_category.items()]
            if sec.pooled:
                items.append((sec.pooled_name(), getattr(sec.pooled, metric)))
            name = {"fd": "Frechet distance", "kid": "KID"}[metric]
            if space == "inception":
                name = {"fd": "FID", "kid": "KID"}[metric]
            panels.append((f"{name} - {space} features (lower is better)", items))
    rows = sum(len(items) + 1 for _, items in panels)
    im, d = _canvas(rows, "Realism against held-out real images")
    y = PAD * 2 + 30
    for k, (title, items) in enumerate(panels):
        d.text((PAD, y), title, fill=FG, font=_font(13))
        y = _value_bars(d, y + 20, items, _colour(4 if k % 2 == 0 else 5)) + ROW_H - 20
    save_image_atomic(im, path)


def _tile(image: torch.Tensor, size: int) -> Image.Image:
    return tensor_to_image(image).resize((size, size), Image.NEAREST)


def _pair_sheet(
    pairs: list[tuple[torch.Tensor, torch.Tensor, str]], title: str, path: Path
) -> None:
    """Image pairs side by side, two pairs a row, each captioned."""
    tile, cols = 96, 2
    per_row = 2
    rows = (len(pairs) + per_row - 1) // per_row
    width = per_row * (cols * tile + 3 * PAD)
    im = Image.new("RGB", (max(width, 360), 44 + rows * (tile + 26)), BG)
    d = ImageDraw.Draw(im)
    d.text((PAD, 8), title, fill=FG, font=_font(12))
    for k, (left, right, caption) in enumerate(pairs):
        x = PAD + (k % per_row) * (cols * tile + 3 * PAD)
        y = 30 + (k // per_row) * (tile + 26)
        im.paste(_tile(left, tile), (x, y))
        im.paste(_tile(right, tile), (x + tile + 2, y))
        d.text((x, y + tile + 3), caption, fill=FG, font=_font(11))
    save_image_atomic(im, path)


def memorisation_pairs(
    pairs: list[tuple[float, str, torch.Tensor, torch.Tensor]], threshold: float, path: Path
) -> None:
    """The closest sample / training-image pairs side by side, with their distances."""
    shown = [
        (sample, train, f"{label}  d={dist:.4f}" + ("  memorised-like" if dist < threshold else ""))
        for dist, label, sample, train in pairs
    ]
    title = (
        "Closest samples (left) and their nearest training image (right); "
        f"threshold {threshold:.4f}"
    )
    _pair_sheet(shown, title, path)


def look_alike_pairs(
    pairs: list[tuple[float, float, str, torch.Tensor, torch.Tensor]], path: Path
) -> None:
    """The groups' closest sample pairs side by side, with their distances and their
    group's look-alike threshold."""
    shown = [
        (a, b, f"{label}  d={dist:.4f} / {limit:.4f}" + ("  look-alike" if dist < limit else ""))
        for dist, limit, label, a, b in pairs
    ]
    title = "Closest sample pairs of a group (d / the group's look-alike threshold)"
    if not shown:
        title += ": no group had enough samples to compare"
    _pair_sheet(shown, title, path)
