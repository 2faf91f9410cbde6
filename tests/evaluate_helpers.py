"""Shared helpers of the evaluation tests: prepared data, run folders and sample folders
on disk, written the way `prepare`, `train` and `sample` write them."""

from __future__ import annotations

import json

import torch
from PIL import Image

from facediff.categories import DEFAULT_CATEGORIES
from facediff.checkpoint import save_checkpoint
from facediff.config import PACKED_FILE, ModelConfig, TrainConfig
from facediff.dataset import write_manifest, write_packed
from facediff.model import build_unet, scheduler_config

SIZE = 16
TINY = ModelConfig(
    block_out_channels=(8, 16),
    layers_per_block=1,
    down_block_types=("DownBlock2D", "AttnDownBlock2D"),
    up_block_types=("AttnUpBlock2D", "UpBlock2D"),
    attention_head_dim=8,
    norm_num_groups=8,
    sample_size=SIZE,
    num_categories=3,
)


def write_prepared(path, images, labels, categories=DEFAULT_CATEGORIES):
    """A prepared dataset on disk (packed file + manifest), as `prepare` writes it."""
    path.mkdir(parents=True, exist_ok=True)
    sha = write_packed(path / PACKED_FILE, images, labels)
    write_manifest(
        path,
        {
            "facediff_dataset_version": 1,
            "size": int(images.shape[-1]),
            "categories": categories.to_list(),
            "packed": {"file": PACKED_FILE, "sha256": sha, "count": len(labels)},
        },
    )
    return path


def make_untrained_run(run, data_path):
    """A run folder with one checkpoint of a randomly initialised tiny UNet."""
    torch.manual_seed(0)
    sd = build_unet(TINY).state_dict()
    save_checkpoint(
        run,
        1,
        model_state=sd,
        ema_state=sd,
        training_state={},
        state={
            "step": 1,
            "epoch": 1,
            "images_seen": 4,
            "model": TINY.to_dict(),
            "categories": DEFAULT_CATEGORIES.to_list(),
            "scheduler": scheduler_config(
                num_train_timesteps=1000,
                beta_schedule="squaredcos_cap_v2",
                prediction_type="epsilon",
            ),
            "train": TrainConfig(preset="tiny").to_dict(),
            "data": {"path": str(data_path), "fingerprint": "0" * 64},
        },
    )
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
