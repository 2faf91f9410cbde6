"""``prepare``: a raw folder of prefix-named photos → a prepared dataset (docs/architecture.md).

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

import json
import math
import os
import shutil
import time
from collections import Counter
from concurrent.futures import Future, ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from facediff import __version__
from facediff.categories import DEFAULT_CATEGORIES, CategoryMap
from facediff.config import (
    DATASET_VERSION,
    MANIFEST_FILE,
    MAX_SIZE,
    MIN_SIZE,
    PACKED_FILE,
    PrepareConfig,
)
from facediff.dataset import write_manifest, write_packed
from facediff.errors import ConfigError, FacediffError, UsageError
from facediff.files import TMP_SUFFIX, atomic_path
from facediff.imaging import process_chunk
from facediff.progress import Progress, ProgressCallback, emit
from facediff.raw_scan import (
    Skipped,
    Source,
    assign_stems,
    dedupe,
    image_stem,
    scan_raw,
)

_CHUNK_FILES = 64  # files per pool task: small files, so amortise the task overhead
_DEFAULTS = PrepareConfig()


@dataclass(frozen=True)
class CategoryCounts:
    prefix: str
    name: str
    code: str
    found: int  # image files whose name matched the prefix
    kept: int
    skipped: dict[str, int] = field(default_factory=dict)  # by reason kind


@dataclass(frozen=True)
class PrepareReport:
    raw: Path
    out: Path
    size: int
    categories: tuple[CategoryCounts, ...]
    unmatched: dict[str, int]  # files of no category, by reason (not an image file, …)
    skipped: tuple[Skipped, ...]
    seconds: float

    @property
    def kept(self) -> int:
        return sum(c.kept for c in self.categories)

    @property
    def found(self) -> int:
        return sum(c.found for c in self.categories)

    @property
    def files_seen(self) -> int:
        return self.kept + len(self.skipped)


def _cpu_count() -> int:
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return os.cpu_count() or 1


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


def _old_category_names(out: Path) -> set[str]:
    try:
        manifest = json.loads((out / MANIFEST_FILE).read_text(encoding="utf-8"))
        return {c.name for c in CategoryMap.from_list(manifest["categories"])}
    except (OSError, ValueError, KeyError, TypeError, FacediffError):
        return set()


def _clear_out(out: Path, categories: CategoryMap, force: bool) -> None:
    """Make ``out`` an empty place for the dataset (only a previous prepare's files go)."""
    if not out.exists() or not any(out.iterdir()):
        out.mkdir(parents=True, exist_ok=True)
        return
    if not force:
        raise FacediffError(
            f"--out {out} is not empty; pass --force to replace a dataset prepared there"
        )
    if not (out / MANIFEST_FILE).is_file():
        raise FacediffError(
            f"--out {out} is not empty and holds no {MANIFEST_FILE}: refusing to overwrite "
            "a folder that is not a facediff dataset, even with --force (delete it yourself "
            "or choose another --out)"
        )
    names = _old_category_names(out) | {c.name for c in categories}
    (out / MANIFEST_FILE).unlink()  # first: no manifest may describe a half-replaced set
    for name in sorted(names):
        folder = out / name
        if folder.is_dir() and not folder.is_symlink():
            shutil.rmtree(folder)
    for leftover in (PACKED_FILE, PACKED_FILE + TMP_SUFFIX, MANIFEST_FILE + TMP_SUFFIX):
        (out / leftover).unlink(missing_ok=True)


def _chunks(items: list[Any], workers: int) -> list[list[Any]]:
    per_chunk = max(1, min(_CHUNK_FILES, math.ceil(len(items) / max(1, workers * 4))))
    return [items[i : i + per_chunk] for i in range(0, len(items), per_chunk)]


class _Results:
    """Decoded images land in one preallocated N×3×S×S buffer, at their job's index."""

    def __init__(self, count: int, size: int) -> None:
        self.images = np.zeros((count, 3, size, size), dtype=np.uint8)
        self.reasons: list[str | None] = [None] * count
        self.done = 0

    def store(self, start: int, chunk: list[tuple[np.ndarray | None, str | None]]) -> None:
        for j, (array, reason) in enumerate(chunk, start):
            if array is None:
                self.reasons[j] = reason
            else:
                self.images[j] = array.transpose(2, 0, 1)
        self.done += len(chunk)


def _run_jobs(
    jobs: list[tuple[str, str]],
    size: int,
    max_pixels: int,
    workers: int,
    progress: ProgressCallback | None,
) -> _Results:
    """Decode, resize and save every job; results in job order whatever the completion order."""
    chunks = _chunks(jobs, workers)
    starts = np.cumsum([0] + [len(c) for c in chunks]).tolist()
    results = _Results(len(jobs), size)
    emit(progress, Progress("prepare", 0, len(jobs)))
    if workers == 1 or len(chunks) == 1:
        for i, chunk in enumerate(chunks):
            results.store(starts[i], process_chunk(chunk, size, max_pixels))
            emit(progress, Progress("prepare", results.done, len(jobs)))
        return results
    pool = ProcessPoolExecutor(max_workers=min(workers, len(chunks)))
    try:
        futures: dict[Future, int] = {
            pool.submit(process_chunk, chunk, size, max_pixels): i for i, chunk in enumerate(chunks)
        }
        for future in as_completed(futures):
            results.store(starts[futures[future]], future.result())
            emit(progress, Progress("prepare", results.done, len(jobs)))
    except BrokenProcessPool:
        raise FacediffError(
            "an image decoder process died; run with --workers 1 to find the file"
        ) from None
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
    return results


def _reason_kind(reason: str) -> str:
    return reason.split(" (", 1)[0]


def _counts(
    categories: CategoryMap, sources: list[Source], kept_labels: list[int], skipped: list[Skipped]
) -> tuple[tuple[CategoryCounts, ...], dict[str, int]]:
    found = Counter(s.label for s in sources)
    kept = Counter(kept_labels)
    by_cat: dict[int, Counter] = {i: Counter() for i in range(len(categories))}
    unmatched: Counter = Counter()
    for s in skipped:
        (by_cat[s.label] if s.label is not None else unmatched)[s.kind] += 1
    counts = tuple(
        CategoryCounts(c.prefix, c.name, c.code, found[i], kept[i], dict(sorted(by_cat[i].items())))
        for i, c in enumerate(categories)
    )
    return counts, dict(sorted(unmatched.items()))


def _manifest(
    raw: Path,
    size: int,
    categories: CategoryMap,
    counts: tuple[CategoryCounts, ...],
    images: list[dict[str, Any]],
    skipped: list[Skipped],
    packed_sha256: str,
) -> dict[str, Any]:
    return {
        "facediff_dataset_version": DATASET_VERSION,
        "size": size,
        "created_by": f"facediff {__version__}",
        "categories": [{**c.to_dict(), "count": n.kept} for c, n in zip(categories, counts)],
        "images": images,
        "skipped": [{"source": s.source, "reason": s.reason} for s in skipped],
        "packed": {"file": PACKED_FILE, "sha256": packed_sha256, "count": len(images)},
        "raw": str(raw),
    }


def _write_packed(out: Path, images: np.ndarray, labels: list[int]) -> str:
    with atomic_path(out / PACKED_FILE) as tmp:
        labels_t = torch.tensor(labels, dtype=torch.int64)
        return write_packed(tmp, torch.from_numpy(images), labels_t)


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


def _check_options(categories: CategoryMap, workers: int) -> None:
    if workers < 0:
        raise ConfigError(f"{{}} must be >= 0, got {workers}", "workers")
    ours = {PACKED_FILE, MANIFEST_FILE, PACKED_FILE + TMP_SUFFIX, MANIFEST_FILE + TMP_SUFFIX}
    for c in categories:
        if c.name.lower() in ours:
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
    progress: ProgressCallback | None = None,
) -> PrepareReport:
    """Sort, resize and validate the photos under ``raw`` into a dataset in ``out``.

    Writes ``<out>/<Category>/<stem>.png``, the packed file and, last, the manifest.
    ``workers=0`` uses one process per CPU core, ``workers=1`` decodes in-process.
    Never writes inside ``raw``; refuses a non-empty ``out`` unless ``force`` and it
    holds a previous dataset.
    """
    started = time.perf_counter()
    _check_options(categories, workers)
    raw_abs, out_abs = _check_paths(Path(raw), Path(out), size)
    sources, skipped = scan_raw(raw_abs, categories)
    unique, duplicates = dedupe(sources)
    skipped += duplicates
    if not unique:
        raise FacediffError(f"no images found in {raw}: {_skip_summary(skipped)}")
    _clear_out(out_abs, categories, force)
    files = _output_files(unique, categories)
    for name in sorted({f.split("/")[0] for f in files}):
        (out_abs / name).mkdir(exist_ok=True)
    jobs = [(str(s.path), str(out_abs / f)) for (s, _), f in zip(unique, files)]
    results = _run_jobs(jobs, size, max_pixels, workers or _cpu_count(), progress)
    kept, labels, entries, failed = _collect(unique, files, results.reasons, categories)
    skipped = sorted(skipped + failed, key=lambda s: s.source)
    if not kept:
        _remove_empty_folders(out_abs, categories)
        raise FacediffError(f"no usable images in {raw}: {_skip_summary(skipped)}")
    packed = results.images if len(kept) == len(jobs) else results.images[kept]
    packed_sha256 = _write_packed(out_abs, packed, labels)
    counts, unmatched = _counts(categories, sources, labels, skipped)
    write_manifest(
        out_abs, _manifest(raw_abs, size, categories, counts, entries, skipped, packed_sha256)
    )
    return PrepareReport(
        raw=raw_abs,
        out=out_abs,
        size=size,
        categories=counts,
        unmatched=unmatched,
        skipped=tuple(skipped),
        seconds=time.perf_counter() - started,
    )


def _skip_summary(skipped: list[Skipped]) -> str:
    if not skipped:
        return "the folder is empty"
    kinds = Counter(s.kind for s in skipped)
    details = ", ".join(f"{k}: {n}" for k, n in sorted(kinds.items()))
    return f"{len(skipped)} files skipped ({details})"


def _remove_empty_folders(out: Path, categories: CategoryMap) -> None:
    for c in categories:
        folder = out / c.name
        if folder.is_dir() and not any(folder.iterdir()):
            folder.rmdir()


__all__ = ["CategoryCounts", "PrepareReport", "Skipped", "image_stem", "prepare"]
