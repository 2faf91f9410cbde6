"""Shared helpers of the evaluation tests: prepared data, run folders and sample folders
on disk, written the way `prepare`, `train` and `sample` write them."""

from __future__ import annotations

import json

import torch
from PIL import Image
from sampling_helpers import TINY, save_tiny_checkpoint
from train_helpers import write_dataset as write_prepared

from facediff.model import build_unet
from facediff.synthetic import make_faces

SIZE = TINY.sample_size

__all__ = [
    "SIZE",
    "attribute_faces",
    "faces_and_untrained_run",
    "make_untrained_run",
    "mark_attributes",
    "write_prepared",
    "write_samples",
]


def mark_attributes(images: torch.Tensor, age: torch.Tensor, gender: torch.Tensor) -> torch.Tensor:
    """Visible attribute cues on synthetic faces: a top band whose colour says the gender
    (blue / red) and a bottom band whose colour says the age bucket (green, yellow, white)."""
    out = images.clone()
    genders = torch.tensor([[30, 60, 230], [230, 40, 40]], dtype=torch.uint8)
    ages = torch.tensor([[20, 200, 40], [240, 220, 20], [250, 250, 250]], dtype=torch.uint8)
    band = images.shape[-1] // 5
    out[:, :, :band, :] = genders[gender].view(-1, 3, 1, 1)
    out[:, :, -band:, :] = ages[age].view(-1, 3, 1, 1)
    return out


def attribute_faces(n: int, seed: int, size: int = 32):
    """``make_faces`` with random age buckets (3) and genders drawn on: (images, labels,
    N×2 attribute values in the order age, gender)."""
    images, labels = make_faces(n, size=size, seed=seed)
    g = torch.Generator().manual_seed(seed)
    age = torch.randint(0, 3, (len(labels),), generator=g)
    gender = torch.randint(0, 2, (len(labels),), generator=g)
    return mark_attributes(images, age, gender), labels, torch.stack([age, gender], dim=1)


def make_untrained_run(run, data_path):
    """A run folder with one checkpoint of a randomly initialised tiny UNet, recording
    ``data_path`` and its fingerprint as its training data (as `train` does)."""
    torch.manual_seed(0)
    sd = build_unet(TINY).state_dict()
    manifest = json.loads((data_path / "manifest.json").read_text())
    fingerprint = manifest["packed"]["sha256"]
    save_tiny_checkpoint(run, 1, sd, sd, data_path=str(data_path), fingerprint=fingerprint)
    return run


def faces_and_untrained_run(root):
    """``(data, run, images, labels)``: 40 synthetic faces per category prepared in
    ``root/data``, and an untrained run of them in ``root/run``."""
    images, labels = make_faces(40, size=SIZE, seed=0)
    data = write_prepared(root / "data", images, labels)
    return data, make_untrained_run(root / "run", data), images, labels


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
