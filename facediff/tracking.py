"""Optional experiment tracking: TensorBoard scalars and preview images, as the diffusers
examples log them (``--log tensorboard``). The metrics.jsonl file is always written."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
from PIL import Image

from facediff.errors import FacediffError, UsageError

TRACKERS = ("none", "tensorboard")
TENSORBOARD_DIR = "tensorboard"


class TensorBoardTracker:
    """Writes ``<run>/tensorboard/events.*``: ``train/loss``, ``train/lr``,
    ``train/images_per_s``, ``train/epoch`` per log interval and each preview grid."""

    def __init__(self, run_dir: Path) -> None:
        from torch.utils.tensorboard import SummaryWriter

        self.dir = Path(run_dir) / TENSORBOARD_DIR
        self._writer = SummaryWriter(log_dir=str(self.dir))

    def scalars(self, step: int, values: dict[str, float]) -> None:
        for name, value in values.items():
            self._writer.add_scalar(f"train/{name}", value, step)
        self._writer.flush()

    def image(self, tag: str, path: Path, step: int) -> None:
        with Image.open(path) as im:
            array = np.asarray(im.convert("RGB"))
        self._writer.add_image(tag, array, step, dataformats="HWC")
        self._writer.flush()

    def close(self) -> None:
        self._writer.close()


def check_tracker(kind: str) -> str:
    """Validate ``--log`` early: a known name, and its package installed."""
    if kind not in TRACKERS:
        raise UsageError(f"invalid --log {kind!r}: use {' or '.join(TRACKERS)}")
    if kind == "tensorboard" and importlib.util.find_spec("tensorboard") is None:
        raise FacediffError(
            "--log tensorboard needs the tensorboard package: pip install tensorboard"
        )
    return kind


def open_tracker(kind: str, run_dir: Path) -> TensorBoardTracker | None:
    """The tracker for ``--log`` (None for ``none``)."""
    if check_tracker(kind) == "none":
        return None
    return TensorBoardTracker(run_dir)
