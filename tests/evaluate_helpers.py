"""Shared helpers of the evaluation tests: prepared data, run folders and sample folders
on disk, written the way `prepare`, `train` and `sample` write them."""

from __future__ import annotations

import json

import torch
from PIL import Image
from sampling_helpers import TINY, save_tiny_checkpoint
from train_helpers import write_dataset as write_prepared

from facediff.model import build_unet

SIZE = TINY.sample_size

__all__ = ["SIZE", "make_untrained_run", "write_prepared", "write_samples"]


def make_untrained_run(run, data_path):
    """A run folder with one checkpoint of a randomly initialised tiny UNet."""
    torch.manual_seed(0)
    sd = build_unet(TINY).state_dict()
    save_tiny_checkpoint(run, 1, sd, sd, data_path=str(data_path))
    return run


def write_samples(folder, groups):
    """A `facediff sample`-style folder: <LABEL>/<LABEL>_<i>.png plus samples.json."""
    mixes = {}
    for label, (weights, images) in groups.items():
        (folder / label).mkdir(parents=True)
        for i, img in enumerate(images):
            Image.fromarray(img.permute(1, 2, 0).numpy()).save(folder / label / f"{label}_{i}.png")
        mixes[label] = weights
    (folder / "samples.json").write_text(json.dumps({"entries": [{"mixes": mixes}]}))
    return folder
