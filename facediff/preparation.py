"""``prepare``: a raw folder of photos → a prepared dataset (docs/architecture.md).

Which category each photo is comes from file-name prefixes, a folder per category or a
labels file (:mod:`facediff.raw_scan`); attribute labels (age, gender, …), when asked for,
from UTKFace file names or a CSV (:mod:`facediff.prepare_attributes`).

The raw folder is only ever read. Every file is accounted for: kept, or skipped with a
reason recorded in the manifest. The output is a function of the input files alone
(sorted walk, results assembled in file order whatever the worker completion order, no
timestamps), so preparing the same folder twice gives byte-identical packed files.

Output names: a file's *stem* is its name up to its first image extension
(``white_1_0_0_2017.jpg.chip.jpg`` → ``white_1_0_0_2017``). When two kept files of a
category share a stem (``indian1.jpg`` beside ``indian1.png``, or the same name in two
sub-folders; compared ignoring case), the first in sorted source-path order keeps it and
the others get ``<stem>_2``, ``<stem>_3`` … (skipping any suffix that is itself the
stem of another file).
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import math
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from facediff import __version__, folder_lock
from facediff.attributes import AttributeSet
from facediff.categories import DEFAULT_CATEGORIES, CategoryMap, untrained_consequence
from facediff.config import (
    DATASET_VERSION,
    HELDOUT_FILE,
    MAX_HOLDOUT,
    MAX_SIZE,
    MIN_SIZE,
    PACKED_FILE,
    PrepareConfig,
)
from facediff.dataset import write_manifest, write_packed
from facediff.errors import ConfigError, FacediffError, UsageError
from facediff.files import atomic_path
from facediff.host_memory import available_bytes, format_size
from facediff.prepare_attributes import (
    ImageAttributes,
    attribute_counts,
    attribute_source,
    label_images,
    unknown_reasons,
)
from facediff.prepare_out import DATASET_FILES, clear_out, remove_empty_folders
from facediff.prepare_pool import cpu_count, run_jobs
from facediff.progress import Progress, ProgressCallback, emit
from facediff.raw_scan import (
    FOLDERS,
    FOLDERS_AND_PREFIXES,
    LABELS_FILE,
    PREFIXES,
    Skipped,
    Source,
    assign_stems,
    dedupe,
    image_stem,
    read_labels,
    scan_raw,
)

_DEFAULTS = PrepareConfig()


@dataclass(frozen=True)
class CategoryCounts:
    prefix: str
    name: str
    code: str
    found: int  # image files whose name matched the prefix
    kept: int  # held out ones included
    skipped: dict[str, int] = field(default_factory=dict)  # by reason kind
    held_out: int = 0  # of the kept: --holdout, packed apart, never trained on


@dataclass(frozen=True)
class PrepareReport:
    raw: Path
    out: Path
    size: int
    categories: tuple[CategoryCounts, ...]
    unmatched: dict[str, int]  # files of no category, by reason (not an image file, …)
    skipped: tuple[Skipped, ...]
    seconds: float
    layout: str = PREFIXES  # how categories were read: see the module docstring
    upscaled: int = 0  # kept images whose source was smaller than ``size``
    smallest_side: int | None = None  # of the kept sources, in pixels
    attributes: AttributeSet = field(default_factory=AttributeSet)  # empty: none asked for
    #: {category name: {attribute: {value: n, …, "unknown": n}}} (manifest "attribute_counts")
    attribute_counts: dict[str, dict[str, dict[str, int]]] = field(default_factory=dict)
    #: {attribute: {reason: n}}: why values are unknown, over all kept images
    attribute_unknown: dict[str, dict[str, int]] = field(default_factory=dict)

    @property
    def kept(self) -> int:
        return sum(c.kept for c in self.categories)

    @property
    def found(self) -> int:
        return sum(c.found for c in self.categories)

    @property
    def files_seen(self) -> int:
        return self.kept + len(self.skipped)

    @property
    def held_out(self) -> int:
        return sum(c.held_out for c in self.categories)


def _check_paths(raw: Path, out: Path, size: int) -> tuple[Path, Path]:
    if not MIN_SIZE <= size <= MAX_SIZE:
        raise UsageError(f"--size must be between {MIN_SIZE} and {MAX_SIZE}, got {size}")
    if not raw.exists():
        raise FacediffError(f"raw folder not found: {raw}")
    if not raw.is_dir():
        raise FacediffError(f"raw path is not a folder: {raw}")
    raw_abs, out_abs = raw.resolve(), out.resolve()
    if out_abs == raw_abs or out_abs.is_relative_to(raw_abs):
        raise FacediffError(
            f"--out {out} is inside the raw folder {raw}: prepare never writes there"
        )
    if raw_abs.is_relative_to(out_abs):
        raise FacediffError(f"the raw folder {raw} is inside --out {out}: choose another --out")
    if out_abs.exists() and not out_abs.is_dir():
        raise FacediffError(f"--out {out} exists and is not a folder")
    return raw_abs, out_abs


def _reason_kind(reason: str) -> str:
    return reason.split(" (", 1)[0]


def _counts(
    categories: CategoryMap,
    sources: list[Source],
    kept_labels: list[int],
    skipped: list[Skipped],
    held_labels: list[int],
) -> tuple[tuple[CategoryCounts, ...], dict[str, int]]:
    found = Counter(s.label for s in sources)
    kept, held = Counter(kept_labels), Counter(held_labels)
    by_cat: dict[int, Counter] = {i: Counter() for i in range(len(categories))}
    unmatched: Counter = Counter()
    for s in skipped:
        (by_cat[s.label] if s.label is not None else unmatched)[s.kind] += 1
    counts = tuple(
        CategoryCounts(
            c.prefix, c.name, c.code, found[i], kept[i], dict(sorted(by_cat[i].items())), held[i]
        )
        for i, c in enumerate(categories)
    )
    return counts, dict(sorted(unmatched.items()))


def _thin_categories(counts: tuple[CategoryCounts, ...], holdout: float) -> list[str]:
    """Warnings naming the categories the model will not train on (no photo found, none
    usable, or ``--holdout`` took them all) and, when ``--holdout`` held photos out, those
    it took none of (evaluate cannot judge their realism on unseen photos)."""
    out = []
    for c in counts:
        if c.kept - c.held_out == 0:
            if c.held_out:
                why = f"--holdout {holdout:g} held out all {c.held_out} of its images"
            elif c.found:
                why = (
                    "its one file is not usable"
                    if c.found == 1
                    else f"none of its {c.found} files is usable"
                ) + " (see the manifest's skipped list)"
            else:
                why = "none found"
            out.append(
                f"warning: no training images of {c.name} ({c.code}): {why}; "
                + untrained_consequence(c.code)
            )
        elif holdout > 0 and c.held_out == 0 and sum(d.held_out for d in counts):
            images = f"{c.kept} image{'' if c.kept == 1 else 's'}"
            out.append(
                f"warning: --holdout {holdout:g} held out none of {c.name}'s {images}: evaluate "
                f"cannot judge {c.code}'s realism against photos the model never saw"
            )
    return out


def _manifest(
    raw: Path,
    size: int,
    categories: CategoryMap,
    counts: tuple[CategoryCounts, ...],
    images: list[dict[str, Any]],
    skipped: list[Skipped],
    packed_sha256: str,
    layout: str,
    labelled: ImageAttributes | None,
    kept_labels: list[int],
) -> dict[str, Any]:
    extra: dict[str, Any] = {}
    if labelled is not None:
        extra = {
            "attributes": labelled.attributes.to_list(),
            "attributes_from": labelled.origin,
            "attribute_counts": attribute_counts(labelled, kept_labels, categories),
        }
    return {
        "facediff_dataset_version": DATASET_VERSION,
        "size": size,
        "layout": layout,
        "created_by": f"facediff {__version__}",
        "categories": [
            {**c.to_dict(), "count": n.kept - n.held_out} for c, n in zip(categories, counts)
        ],
        **extra,
        "images": images,
        "skipped": [{"source": s.source, "reason": s.reason} for s in skipped],
        "packed": {"file": PACKED_FILE, "sha256": packed_sha256, "count": len(images)},
        "raw": str(raw),
    }


def _check_packed_fits(photos: int, size: int) -> None:
    """Refuse a dataset whose packed images (``photos`` × 3 × ``size``², uint8, held in
    memory while they are decoded and written) cannot fit in the memory available: the
    kernel would kill the process once decoding had filled it, minutes in."""
    available = available_bytes()
    needed = photos * 3 * size * size
    if available is None or needed <= available:
        return
    fits = int(math.isqrt(available // (3 * photos)) // 8 * 8)
    hint = f"use --size {fits} or less, or fewer photos" if fits >= MIN_SIZE else "use fewer photos"
    raise ConfigError(
        f"{{}} {size}: packing {photos:,} photos needs at least {format_size(needed)} of "
        f"memory; {format_size(available)} is available: {hint}",
        "size",
    )


def _write_packed(
    out: Path,
    images: np.ndarray,
    labels: list[int],
    attributes: torch.Tensor | None,
    file: str = PACKED_FILE,
) -> str:
    with atomic_path(out / file) as tmp:
        labels_t = torch.tensor(labels, dtype=torch.int64)
        return write_packed(tmp, torch.from_numpy(images), labels_t, attributes)


class _Split:
    """The kept images in packed order, and the photos ``--holdout`` takes out of them."""

    def __init__(
        self,
        images: np.ndarray,
        labels: list[int],
        entries: list[dict[str, Any]],
        labelled: ImageAttributes | None,
    ) -> None:
        self.images, self.labels, self.entries, self.labelled = images, labels, entries, labelled

    @property
    def tensor(self) -> torch.Tensor | None:
        return self.labelled.tensor if self.labelled is not None else None

    def hold_out(self, fraction: float) -> dict[str, Any] | None:
        """Take the held-out photos out; their manifest record (with their ``packed``
        images, ``labels`` and attribute ``tensor`` to write), or None when none is."""
        held = [i for i, e in enumerate(self.entries) if held_out_by_name(e["source"], fraction)]
        if not held:
            return None
        taken = set(held)
        train = [i for i in range(len(self.entries)) if i not in taken]
        tensor = self.tensor
        record = {
            "fraction": fraction,
            "file": HELDOUT_FILE,
            "count": len(held),
            "images": [self.entries[i] for i in held],
            "packed": self.images[held],
            "labels": [self.labels[i] for i in held],
            "tensor": tensor[held] if tensor is not None else None,
        }
        self.images = self.images[train]
        self.labels = [self.labels[i] for i in train]
        self.entries = [self.entries[i] for i in train]
        if self.labelled is not None and tensor is not None:
            self.labelled = dataclasses.replace(self.labelled, tensor=tensor[train])
        return record


def _output_files(unique: list[tuple[Source, str]], categories: CategoryMap) -> list[str]:
    """``<Category name>/<unique stem>.png`` for each kept source, relative to OUT."""
    stems = assign_stems([s for s, _ in unique])
    return [f"{categories[s.label].name}/{stem}.png" for (s, _), stem in zip(unique, stems)]


def _collect(
    unique: list[tuple[Source, str]],
    files: list[str],
    reasons: list[str | None],
    categories: CategoryMap,
) -> tuple[list[int], list[int], list[dict[str, Any]], list[Skipped]]:
    """Split decoded jobs into kept (indices, labels, manifest entries) and skipped."""
    kept, labels, entries, skipped = [], [], [], []
    for j, ((s, digest), file, reason) in enumerate(zip(unique, files, reasons)):
        if reason is not None:
            skipped.append(Skipped(s.rel, reason, _reason_kind(reason), s.label))
            continue
        kept.append(j)
        labels.append(s.label)
        code = categories[s.label].code
        entries.append(
            {"file": file, "source": s.rel, "sha256": digest, "label": s.label, "code": code}
        )
    return kept, labels, entries, skipped


def held_out_by_name(source: str, fraction: float) -> bool:
    """Whether ``prepare --holdout fraction`` keeps a photo out of training: by a hash of
    its file name (not its folder, content or position), so a photo stays on its side
    as the raw folder grows or moves, and a larger fraction holds out a superset."""
    digest = hashlib.sha256(Path(source).name.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 < fraction


def _check_options(categories: CategoryMap, workers: int, holdout: float) -> None:
    if workers < 0:
        raise ConfigError(f"{{}} must be >= 0, got {workers}", "workers")
    if not 0.0 <= holdout <= MAX_HOLDOUT:
        raise ConfigError(f"{{}} must be from 0 to {MAX_HOLDOUT}, got {holdout}", "holdout")
    for c in categories:
        if c.name.lower() in DATASET_FILES:
            raise UsageError(f"category name {c.name!r} is reserved for a dataset file")


def prepare(
    raw: Path,
    out: Path,
    *,
    size: int = _DEFAULTS.size,
    categories: CategoryMap = DEFAULT_CATEGORIES,
    workers: int = _DEFAULTS.workers,
    force: bool = _DEFAULTS.force,
    max_pixels: int = _DEFAULTS.max_pixels,
    labels: Path | None = None,
    attributes: str | Path | None = None,
    age_edges: str | Sequence[int] | None = None,
    min_side: int = _DEFAULTS.min_side,
    max_aspect: float = _DEFAULTS.max_aspect,
    holdout: float = _DEFAULTS.holdout,
    progress: ProgressCallback | None = None,
) -> PrepareReport:
    """Sort, resize and validate the photos under ``raw`` into a dataset in ``out``.

    Categories come from file-name prefixes, from top-level folders named after the
    categories, or from ``labels`` (a ``file,category`` CSV); see the module docstring.
    Sources with a side below ``min_side`` or an aspect ratio beyond ``max_aspect`` are
    skipped; those smaller than ``size`` are upscaled, with a warning.

    ``attributes="utkface"`` reads age and gender from UTKFace file names; a path reads
    a ``file,<attribute>,…`` CSV (:mod:`facediff.prepare_attributes`). Ages are bucketed
    by ``age_edges`` (``"10,20,30"``; default decades). Unknown values are recorded with
    their reason, never guessed.

    ``holdout`` (a fraction) keeps photos out of training, chosen by a hash of their file
    name (:func:`held_out_by_name`): packed apart in ``heldout.safetensors``, listed in
    the manifest's ``"holdout"``, never read by ``train``; ``evaluate`` measures against
    them.

    Writes ``<out>/<Category>/<stem>.png``, the packed file and, last, the manifest.
    ``workers=0`` uses one process per CPU core (and at most that many),
    ``workers=1`` decodes in-process.
    Never writes inside ``raw``; refuses a non-empty ``out`` unless ``force`` and it
    holds a previous dataset.
    """
    started = time.perf_counter()
    _check_options(categories, workers, holdout)
    raw_abs, out_abs = _check_paths(Path(raw), Path(out), size)
    fresh = not out_abs.exists()
    with folder_lock.writing(out_abs):  # one prepare per output folder
        listed = read_labels(Path(labels), raw_abs, categories) if labels is not None else None
        if attributes is None and age_edges is not None:
            raise UsageError("--age-edges needs --attributes (utkface or a CSV with an age column)")
        source = (
            attribute_source(attributes, raw_abs, age_edges) if attributes is not None else None
        )
        sources, skipped, layout = scan_raw(raw_abs, categories, listed)
        emit(progress, Progress("prepare", 0, None, message=f"layout: {describe_layout(layout)}"))
        unique, duplicates = dedupe(sources)
        skipped += duplicates
        if not unique:
            raise FacediffError(f"no images found in {raw}: {_skip_summary(skipped)}")
        _check_packed_fits(len(unique), size)  # before anything of --out is replaced
        clear_out(out_abs, categories, force)
        files = _output_files(unique, categories)
        try:  # Ctrl-C, SIGTERM, a full disk, no usable image: leave no half-written dataset
            _make_folders(out_abs, files)
            jobs = [(str(s.path), str(out_abs / f)) for (s, _), f in zip(unique, files)]
            shape = (max_pixels, min_side, max_aspect)
            # never more decoders than cores: --workers 100000 forked 600 processes for 600
            # photos on 2 cores and took 100 times as long
            results = run_jobs(
                jobs, size, shape, min(workers or cpu_count(), cpu_count()), progress
            )
            kept, kept_labels, entries, failed = _collect(
                unique, files, results.reasons, categories
            )
            skipped = sorted(skipped + failed, key=lambda s: s.source)
            if not kept:
                raise FacediffError(f"no usable images in {raw}: {_skip_summary(skipped)}")
            labelled = None
            if source is not None:
                labelled = label_images(source, [e["source"] for e in entries], categories)
                for entry, values, why in zip(entries, labelled.values, labelled.unknown):
                    entry["attributes"], entry["unknown"] = values, why
                if labelled.unused_rows:
                    unused = labelled.unused_rows
                    message = f"warning: {unused} rows of the attributes file name no kept image"
                    emit(progress, Progress("prepare", len(jobs), len(jobs), message=message))
            packed = results.images if len(kept) == len(jobs) else results.images[kept]
            split = _Split(packed, kept_labels, entries, labelled)
            held = split.hold_out(holdout)
            if not split.labels:
                raise FacediffError(
                    f"--holdout {holdout} holds out all {len(entries)} usable images of {raw}, "
                    "leaving none to train on: lower it"
                )
            if held is not None:
                held["sha256"] = _write_packed(
                    out_abs, held.pop("packed"), held["labels"], held.pop("tensor"), HELDOUT_FILE
                )
            elif holdout > 0:
                message = f"warning: --holdout {holdout} held out none of {len(entries)} images"
                emit(progress, Progress("prepare", len(jobs), len(jobs), message=message))
            packed_sha256 = _write_packed(out_abs, split.images, split.labels, split.tensor)
            held_labels = held.pop("labels") if held is not None else []
            counts, unmatched = _counts(categories, sources, kept_labels, skipped, held_labels)
            manifest = _manifest(
                raw_abs,
                size,
                categories,
                counts,
                split.entries,
                skipped,
                packed_sha256,
                layout,
                split.labelled,
                split.labels,
            )
            if held is not None:
                manifest["holdout"] = held
            write_manifest(out_abs, manifest)
        except BaseException:
            with contextlib.suppress(OSError):  # the first error is the one to report
                _remove_partial(out_abs, files, categories, fresh)
            raise
        for message in _thin_categories(counts, holdout):
            emit(progress, Progress("prepare", len(jobs), len(jobs), message=message))
        sides = [results.sides[j] for j in kept]
        upscaled = sum(side < size for side in sides)
        if upscaled:
            message = _upscale_warning(upscaled, len(kept), size, min(sides))
            emit(progress, Progress("prepare", len(jobs), len(jobs), message=message))
        return PrepareReport(
            raw=raw_abs,
            out=out_abs,
            size=size,
            categories=counts,
            unmatched=unmatched,
            skipped=tuple(skipped),
            seconds=time.perf_counter() - started,
            layout=layout,
            upscaled=upscaled,
            smallest_side=min(sides),
            attributes=labelled.attributes if labelled is not None else AttributeSet(),
            attribute_counts=manifest.get("attribute_counts", {}),
            attribute_unknown=unknown_reasons(labelled) if labelled is not None else {},
        )


def _remove_partial(out: Path, files: list[str], categories: CategoryMap, fresh: bool) -> None:
    """Remove what an unfinished prepare wrote (its decoder processes have stopped): the
    manifest if it got that far, the packed file, the images, the category folders left
    empty, and ``out`` itself when this prepare created it; a retry needs no --force."""
    for rel in (*DATASET_FILES, *files):
        path = out / rel
        if path.is_symlink() or path.is_file():  # a link itself, never its target
            path.unlink()
    remove_empty_folders(out, categories)
    if fresh and out.is_dir() and not any(out.iterdir()):
        out.rmdir()


def _make_folders(out: Path, files: list[str]) -> None:
    """The category folders of ``files``; never through a link (clear_out checks them when
    --out held a dataset; this makes sure for a fresh --out too)."""
    for name in sorted({f.split("/")[0] for f in files}):
        folder = out / name
        if folder.is_symlink():
            raise FacediffError(
                f"--out {out}: {folder} is a symbolic link; prepare never writes through links"
            )
        folder.mkdir(exist_ok=True)


def describe_layout(layout: str) -> str:
    """One phrase for the user: how the categories were read."""
    return {
        PREFIXES: "file-name prefixes (raw/indian_001.jpg)",
        FOLDERS: "one folder per category (raw/indian/001.jpg)",
        FOLDERS_AND_PREFIXES: "category folders, and file-name prefixes outside them",
        LABELS_FILE: "labels file (file,category)",
    }[layout]


def _upscale_warning(upscaled: int, kept: int, size: int, smallest: int) -> str:
    suggestion = max(MIN_SIZE, smallest // 8 * 8)
    return (
        f"warning: {upscaled} of {kept} images are smaller than --size {size} "
        f"(smallest side {smallest} px) and were upscaled; consider --size {suggestion}"
    )


def _skip_summary(skipped: list[Skipped]) -> str:
    if not skipped:
        return "the folder is empty"
    kinds = Counter(s.kind for s in skipped)
    details = ", ".join(f"{k}: {n}" for k, n in sorted(kinds.items()))
    return f"{len(skipped)} files skipped ({details})"


__all__ = ["CategoryCounts", "PrepareReport", "Skipped", "image_stem", "prepare"]
