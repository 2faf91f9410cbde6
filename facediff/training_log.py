"""Training metrics on disk: ``metrics.jsonl`` (one JSON object per log step) and a
loss-curve PNG drawn with Pillow (no plotting library needed)."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from PIL import Image, ImageDraw

from facediff.files import raise_naming, save_image_atomic, write_text_atomic

METRICS_FILE = "metrics.jsonl"
LOSS_PLOT_FILE = "loss.png"


def append_metrics(run_dir: Path, record: dict[str, Any]) -> None:
    """Append ``record`` as one line (a line cut short by a full disk is skipped when read)."""
    path = Path(run_dir) / METRICS_FILE
    try:
        with open(path, "a", encoding="utf-8") as f:
            f.write(json.dumps(record) + "\n")
    except OSError as e:  # a full disk: name the file
        raise_naming(e, path)


def read_metrics(run_dir: Path) -> list[dict[str, Any]]:
    path = Path(run_dir) / METRICS_FILE
    if not path.is_file():
        return []
    records = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:  # a line torn by a crash
            continue
    return records


def truncate_metrics(run_dir: Path, after_step: int) -> None:
    """Drop records past ``after_step`` (written by a run that died after its checkpoint)."""
    path = Path(run_dir) / METRICS_FILE
    if not path.is_file():
        return
    kept = [r for r in read_metrics(run_dir) if int(r.get("step", 0)) <= after_step]
    write_text_atomic(path, "".join(json.dumps(r) + "\n" for r in kept))


def plot_loss(run_dir: Path, width: int = 640, height: int = 360) -> Path | None:
    """Draw loss against step (log-scale loss axis) to ``<run>/loss.png``."""
    pts = [
        (float(r["step"]), float(r["loss"]))
        for r in read_metrics(run_dir)
        if isinstance(r.get("loss"), (int, float)) and r["loss"] > 0 and math.isfinite(r["loss"])
    ]
    if len(pts) < 2:
        return None
    margin_l, margin_r, margin_t, margin_b = 70, 20, 20, 40
    xs = [p[0] for p in pts]
    ys = [math.log10(p[1]) for p in pts]
    x0, x1 = min(xs), max(xs)
    y0, y1 = min(ys), max(ys)
    if y1 - y0 < 1e-6:
        y0, y1 = y0 - 0.5, y1 + 0.5
    x1 = x1 if x1 > x0 else x0 + 1

    def to_px(x: float, y: float) -> tuple[float, float]:
        px = margin_l + (x - x0) / (x1 - x0) * (width - margin_l - margin_r)
        py = height - margin_b - (y - y0) / (y1 - y0) * (height - margin_t - margin_b)
        return px, py

    img = Image.new("RGB", (width, height), "white")
    d = ImageDraw.Draw(img)
    d.rectangle([margin_l, margin_t, width - margin_r, height - margin_b], outline="black")
    d.line([to_px(x, y) for x, y in zip(xs, ys)], fill=(31, 119, 180), width=2)
    d.text((5, margin_t), f"{10**y1:.4g}", fill="black")
    d.text((5, height - margin_b - 10), f"{10**y0:.4g}", fill="black")
    d.text((margin_l, height - margin_b + 5), f"{int(x0)}", fill="black")
    d.text((width - margin_r - 60, height - margin_b + 5), f"step {int(x1)}", fill="black")
    d.text((width // 2 - 40, 3), "loss (log scale)", fill="black")
    path = Path(run_dir) / LOSS_PLOT_FILE
    save_image_atomic(img, path)
    return path
