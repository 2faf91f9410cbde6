"""The prepared dataset: the packed tensor file and its manifest (format: docs/architecture.md).

``<data>/dataset.safetensors`` holds ``images`` (uint8, N×3×S×S), ``labels``
(int64, N) and, when prepared with attributes, ``attributes`` (int64, N×A: the value
index of each attribute in the manifest's ``"attributes"`` list, -1 when unknown);
``<data>/manifest.json`` describes them. Training reads only these two
files, in one read, so the whole set can live in (GPU) memory. Photos held out by
``prepare --holdout`` are packed apart in ``<data>/heldout.safetensors`` (same tensors),
described by the manifest's ``"holdout"``: training never reads them.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from facediff.attributes import AttributeSet
from facediff.categories import CategoryMap
from facediff.config import DATASET_VERSION, HELDOUT_FILE, MANIFEST_FILE, PACKED_FILE
from facediff.errors import DataError, FacediffError
from facediff.files import raise_naming, read_text_bounded, write_text_atomic


@dataclass
class PreparedData:
    images: torch.Tensor  # uint8 N×3×S×S
    labels: torch.Tensor  # int64 N
    categories: CategoryMap
    size: int
    manifest: dict[str, Any]
    path: Path
    #: The attributes the images are labelled with (empty: category only).
    attributes: AttributeSet = field(default_factory=AttributeSet)
    #: int64 N×A value indices (order of ``attributes``), -1 unknown; None without attributes.
    attribute_labels: torch.Tensor | None = None

    @property
    def fingerprint(self) -> str:
        """sha256 of the packed file, as recorded in the manifest."""
        return str(self.manifest["packed"]["sha256"])

    def __len__(self) -> int:
        return int(self.labels.shape[0])


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def _sha256(packed: Path) -> str:
    try:
        return sha256_file(packed)
    except OSError as e:
        raise DataError(f"cannot read packed file {packed}: {e}") from None


def write_packed(
    path: Path,
    images: torch.Tensor,
    labels: torch.Tensor,
    attributes: torch.Tensor | None = None,
) -> str:
    """Write the packed file deterministically; return its sha256. ``attributes``
    (N×A value indices, -1 unknown) is stored only when given."""
    if images.dtype != torch.uint8 or images.ndim != 4 or images.shape[1] != 3:
        raise ValueError("images must be uint8 N×3×S×S")
    tensors = {"images": images.contiguous(), "labels": labels.to(torch.int64).contiguous()}
    if attributes is not None:
        if attributes.ndim != 2 or attributes.shape[0] != images.shape[0]:
            raise ValueError("attributes must be N×A")
        tensors["attributes"] = attributes.to(torch.int64).contiguous()
    try:
        save_file(
            tensors,
            str(path),
            metadata={"facediff_dataset_version": str(DATASET_VERSION)},
        )
    except Exception as e:  # a full disk: name the file
        raise_naming(e, path)
    return sha256_file(path)


def write_manifest(data_dir: Path, manifest: dict[str, Any]) -> None:
    text = json.dumps(manifest, indent=2, ensure_ascii=False) + "\n"
    write_text_atomic(Path(data_dir) / MANIFEST_FILE, text)


def read_manifest(data_dir: Path) -> dict[str, Any]:
    data_dir = Path(data_dir)
    if not data_dir.exists():
        raise DataError(f"prepared data not found: {data_dir} (run `facediff prepare RAW` first)")
    if not data_dir.is_dir():
        raise DataError(f"prepared data must be a folder: {data_dir}")
    path = data_dir / MANIFEST_FILE
    if not path.is_file():
        raise DataError(f"{data_dir} is not a prepared dataset: {MANIFEST_FILE} is missing")
    try:
        manifest = json.loads(read_text_bounded(path))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise DataError(f"corrupt manifest {path}: {e}") from None
    version = manifest.get("facediff_dataset_version") if isinstance(manifest, dict) else None
    if version != DATASET_VERSION:
        raise DataError(
            f"{path} is dataset version {version!r}; this facediff reads version "
            f"{DATASET_VERSION}: prepare the raw folder again"
        )
    return manifest


def load_prepared(data_dir: Path, verify: bool = True) -> PreparedData:
    """Read and validate a prepared dataset. With ``verify`` the packed file's sha256 is
    checked against the manifest first (about 0.2 s per 300 MB here): a damaged file is
    refused, never trained or evaluated on. Photos held out by ``prepare --holdout`` are
    not part of it (:func:`load_held_out`)."""
    data_dir = Path(data_dir)
    manifest = read_manifest(data_dir)
    try:
        packed = (PACKED_FILE, str(manifest["packed"]["sha256"]), int(manifest["packed"]["count"]))
    except (KeyError, TypeError, ValueError, AttributeError) as e:
        raise DataError(f"corrupt manifest {data_dir / MANIFEST_FILE}: {e}") from None
    return _read_packed(data_dir, manifest, *packed, verify=verify)


def category_counts(data: PreparedData) -> dict[str, int]:
    """Images per category code, in label order (of a training set: what a model trained
    on it saw of each category)."""
    n = torch.bincount(data.labels.cpu(), minlength=len(data.categories)).tolist()
    return {c.code: int(k) for c, k in zip(data.categories, n)}


def load_held_out(data: PreparedData, verify: bool = True) -> PreparedData | None:
    """The photos ``prepare --holdout`` kept out of ``data`` (never trained on), as a
    dataset of their own (its ``manifest`` is the dataset's, its ``path`` the dataset's
    folder); None when none were held out."""
    held = data.manifest.get("holdout")
    if held is None:
        return None
    try:
        packed = (str(held["file"]), str(held["sha256"]), int(held["count"]))
    except (KeyError, TypeError, ValueError, AttributeError) as e:
        raise DataError(f"corrupt manifest {data.path / MANIFEST_FILE}: holdout {e}") from None
    if packed[0] != HELDOUT_FILE:  # a name, never a path out of the folder
        raise DataError(f"corrupt manifest {data.path / MANIFEST_FILE}: holdout file {packed[0]!r}")
    return _read_packed(data.path, data.manifest, *packed, verify=verify)


def _read_packed(
    data_dir: Path, manifest: dict[str, Any], file: str, recorded: str, expected: int, verify: bool
) -> PreparedData:
    try:
        categories = CategoryMap.from_list(manifest["categories"])
        size = int(manifest["size"])
        attributes = AttributeSet.from_list(manifest.get("attributes"))
    except (KeyError, TypeError, ValueError, AttributeError, FacediffError) as e:
        raise DataError(f"corrupt manifest {data_dir / MANIFEST_FILE}: {e}") from None
    packed = data_dir / file
    if not packed.is_file():
        raise DataError(f"packed file missing: {packed} (run `facediff prepare` again)")
    if verify and _sha256(packed) != recorded:
        raise DataError(
            f"packed file {packed} is damaged: its sha256 differs from the one in "
            f"{MANIFEST_FILE} (prepare the raw folder again)"
        )
    try:
        tensors = load_file(str(packed))
        images, labels = tensors["images"], tensors["labels"]
    except (SafetensorError, OSError, KeyError, ValueError) as e:
        raise DataError(f"corrupt packed file {packed}: {e}") from None
    if (
        images.dtype != torch.uint8
        or tuple(images.shape[1:]) != (3, size, size)
        or labels.shape != (images.shape[0],)
        or images.shape[0] != expected
    ):
        raise DataError(f"packed file {packed} does not match its manifest")
    if expected == 0:
        raise DataError(f"prepared dataset {data_dir} holds no images")
    if int(labels.min()) < 0 or int(labels.max()) >= len(categories):
        raise DataError(f"packed file {packed} has labels outside the categories")
    return PreparedData(
        images=images,
        labels=labels.to(torch.int64),
        categories=categories,
        size=size,
        manifest=manifest,
        path=data_dir,
        attributes=attributes,
        attribute_labels=_attribute_labels(
            tensors.get("attributes"), attributes, len(labels), packed
        ),
    )


def _attribute_labels(
    found: torch.Tensor | None, attributes: AttributeSet, count: int, packed: Path
) -> torch.Tensor | None:
    """The packed ``attributes`` tensor, checked against the manifest's attribute list."""
    if not attributes:
        if found is not None:
            raise DataError(f"packed file {packed} has attribute labels its manifest does not list")
        return None
    if found is None:
        raise DataError(
            f"packed file {packed} lacks the attribute labels its manifest lists "
            f"({', '.join(attributes.names)}): prepare the raw folder again"
        )
    n = len(attributes)
    if found.dtype != torch.int64 or tuple(found.shape) != (count, n):
        raise DataError(
            f"packed file {packed}: attribute labels must be int64 {count}×{n} "
            f"({', '.join(attributes.names)}), got {found.dtype} {tuple(found.shape)}"
        )
    for j, a in enumerate(attributes):
        column = found[:, j]
        if len(column) and (int(column.min()) < -1 or int(column.max()) >= len(a.values)):
            raise DataError(
                f"packed file {packed} has {a.name} labels outside -1..{len(a.values) - 1}"
            )
    return found
