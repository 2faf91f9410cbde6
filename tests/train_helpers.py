"""Shared helpers of the training tests (tiny datasets on disk, tiny configs)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import torch

from facediff.attributes import AttributeSet, age_attribute, gender_attribute
from facediff.categories import DEFAULT_CATEGORIES, CategoryMap
from facediff.config import PACKED_FILE, TrainConfig
from facediff.dataset import write_manifest, write_packed

TINY = TrainConfig(
    preset="tiny",
    max_steps=4,
    batch_size=8,
    lr_warmup_steps=2,
    checkpoint_every=1000,
    preview_every=0,
    log_every=2,
    device="cpu",
)


def write_dataset(
    out: Path,
    images: torch.Tensor,
    labels: torch.Tensor,
    categories: CategoryMap = DEFAULT_CATEGORIES,
    version: int = 1,
    attributes: AttributeSet | None = None,
    attribute_labels: torch.Tensor | None = None,
) -> Path:
    """A prepared dataset on disk; with ``attributes`` (and N×A ``attribute_labels``,
    -1 unknown) it carries attribute labels like ``prepare --attributes``."""
    out.mkdir(parents=True, exist_ok=True)
    sha = write_packed(out / PACKED_FILE, images, labels, attribute_labels)
    counts = torch.bincount(labels, minlength=len(categories)).tolist()
    extra = {"attributes": attributes.to_list()} if attributes else {}
    write_manifest(
        out,
        {
            **extra,
            "facediff_dataset_version": version,
            "size": int(images.shape[-1]),
            "categories": [{**c, "count": n} for c, n in zip(categories.to_list(), counts)],
            "images": [],
            "skipped": [],
            "packed": {"file": PACKED_FILE, "sha256": sha, "count": int(labels.shape[0])},
        },
    )
    return out


#: The attributes of the synthetic attribute datasets: gender, and age in 3 buckets.
ATTRIBUTES = AttributeSet((gender_attribute(), age_attribute((30, 60))))


def attribute_labels(n: int, seed: int = 0, unknown: float = 0.1) -> torch.Tensor:
    """Random N×2 (gender, age bucket) value indices of :data:`ATTRIBUTES`, about
    ``unknown`` of them -1."""
    g = torch.Generator().manual_seed(seed)
    values = torch.stack([torch.randint(0, s, (n,), generator=g) for s in ATTRIBUTES.sizes], 1)
    return torch.where(torch.rand(values.shape, generator=g) < unknown, -1, values)


def attribute_blocks_dataset(
    out: Path, per_category: int = 4, size: int = 16, seed: int = 0, **kw
) -> Path:
    """:func:`blocks_dataset` images with random gender and age labels (some unknown)
    whose brightness shifts with the gender and the age bucket."""
    g = torch.Generator().manual_seed(seed)
    k = len(kw.get("categories", DEFAULT_CATEGORIES))
    labels = torch.arange(k).repeat_interleave(per_category)
    attrs = kw.pop("attribute_labels", None)
    attrs = attribute_labels(len(labels), seed) if attrs is None else attrs
    shift = (attrs.clamp(min=0) * torch.tensor([20, 10])).sum(1).view(-1, 1, 1, 1)
    base = torch.linspace(40, 175, k)[labels].view(-1, 1, 1, 1) + shift
    noise = torch.randint(-20, 21, (len(labels), 3, size, size), generator=g)
    images = (base + noise).clamp(0, 255).to(torch.uint8)
    kw.setdefault("attributes", ATTRIBUTES)
    return write_dataset(out, images, labels, attribute_labels=attrs, **kw)


def blocks_dataset(out: Path, per_category: int = 4, size: int = 16, seed: int = 0, **kw) -> Path:
    """Cheap images whose colour depends on the class (for tests that need no faces)."""
    g = torch.Generator().manual_seed(seed)
    k = len(kw.get("categories", DEFAULT_CATEGORIES))
    labels = torch.arange(k).repeat_interleave(per_category)
    base = torch.linspace(40, 215, k)[labels].view(-1, 1, 1, 1)
    noise = torch.randint(-30, 31, (len(labels), 3, size, size), generator=g)
    images = (base + noise).clamp(0, 255).to(torch.uint8)
    return write_dataset(out, images, labels, **kw)


def people_dataset(
    out: Path,
    per_category: int = 8,
    size: int = 16,
    seed: int = 0,
    age_edges: tuple[int, ...] = (30, 60),
    **kw,
) -> Path:
    """demo-data's people (``make_faces(..., people=True)``: visible age and gender cues)
    labelled with their age bucket and gender, as ``prepare --attributes utkface`` would."""
    from facediff.synthetic import make_faces
    from facediff.synthetic_people import face_attributes

    images, labels = make_faces(per_category, size=size, seed=seed, people=True)
    attributes, rows = face_attributes(per_category, seed=seed, age_edges=age_edges)
    return write_dataset(out, images, labels, attributes=attributes, attribute_labels=rows, **kw)


def faces_dataset(out: Path, per_category: int = 8, size: int = 16, seed: int = 0, **kw) -> Path:
    """Synthetic faces (facediff.synthetic): the look depends on the category."""
    from facediff.synthetic import make_faces

    images, labels = make_faces(per_category, size=size, seed=seed)
    return write_dataset(out, images, labels, **kw)


def tiny(**changes) -> TrainConfig:
    return dataclasses.replace(TINY, **changes)
