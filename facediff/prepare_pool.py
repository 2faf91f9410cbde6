"""``prepare``'s decoding pool: jobs in chunks over worker processes, results in job order."""

from __future__ import annotations

import math
import os
from concurrent.futures import Future, ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from typing import Any

import numpy as np

from facediff.errors import FacediffError
from facediff.imaging import Processed, process_chunk
from facediff.progress import Progress, ProgressCallback, emit

_CHUNK_FILES = 64  # files per pool task: small files, so amortise the task overhead


def _chunks(items: list[Any], workers: int) -> list[list[Any]]:
    per_chunk = max(1, min(_CHUNK_FILES, math.ceil(len(items) / max(1, workers * 4))))
    return [items[i : i + per_chunk] for i in range(0, len(items), per_chunk)]


class Results:
    """Decoded images land in one preallocated N×3×S×S buffer, at their job's index."""

    def __init__(self, count: int, size: int) -> None:
        self.images = np.zeros((count, 3, size, size), dtype=np.uint8)
        self.reasons: list[str | None] = [None] * count
        self.sides = [0] * count  # the source's smaller side
        self.done = 0

    def store(self, start: int, chunk: list[Processed]) -> None:
        for j, (array, reason, side) in enumerate(chunk, start):
            if array is None:
                self.reasons[j] = reason
            else:
                self.images[j] = array.transpose(2, 0, 1)
                self.sides[j] = side
        self.done += len(chunk)


def run_jobs(
    jobs: list[tuple[str, str]],
    size: int,
    shape: tuple[int, int, float],  # max_pixels, min_side, max_aspect
    workers: int,
    progress: ProgressCallback | None,
) -> Results:
    """Decode, resize and save every job; results in job order whatever the completion order."""
    chunks = _chunks(jobs, workers)
    starts = np.cumsum([0] + [len(c) for c in chunks]).tolist()
    results = Results(len(jobs), size)
    emit(progress, Progress("prepare", 0, len(jobs)))
    if workers == 1 or len(chunks) == 1:
        for i, chunk in enumerate(chunks):
            results.store(starts[i], process_chunk(chunk, size, *shape))
            emit(progress, Progress("prepare", results.done, len(jobs)))
        return results
    pool = ProcessPoolExecutor(max_workers=min(workers, len(chunks)))
    try:
        futures: dict[Future, int] = {
            pool.submit(process_chunk, chunk, size, *shape): i for i, chunk in enumerate(chunks)
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


def cpu_count() -> int:
    """CPUs this process may use (its affinity mask where the OS has one)."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return os.cpu_count() or 1
