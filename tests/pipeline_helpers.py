"""Shared helpers for the FaceDiffPipeline tests (their modules_cache fixture: conftest.py)."""

from __future__ import annotations

import numpy as np
import torch

SEEDS = [5, 6, 7]


def gens(seeds=SEEDS):
    return [torch.Generator().manual_seed(s) for s in seeds]


def pixels(images) -> torch.Tensor:
    return torch.stack([torch.from_numpy(np.array(im)).permute(2, 0, 1) for im in images])


def quiet(pipe):
    pipe.set_progress_bar_config(disable=True)
    return pipe
