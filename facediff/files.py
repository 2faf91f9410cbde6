"""Writing a file so that a crash never leaves a torn one: write it beside, then rename.

Every file facediff writes in place of an older one (configs, manifests, reports,
weights, PNGs) goes through :func:`atomic_path`; readers see the old file or the new
one, never half of either, and a failed or interrupted write leaves no temporary file.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

TMP_SUFFIX = ".tmp"


def tmp_path(path: Path) -> Path:
    """Where :func:`atomic_path` writes ``path`` before renaming it."""
    return path.with_name(path.name + TMP_SUFFIX)


@contextlib.contextmanager
def atomic_path(path: Path, *, fsync: bool = False) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; once the block has written it, rename it
    onto ``path`` (``fsync`` first flushes it to disk)."""
    path = Path(path)
    tmp = tmp_path(path)
    try:
        yield tmp
        if fsync:
            with open(tmp, "rb") as f:
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:  # a full disk or Ctrl-C: leave no temporary file behind
        tmp.unlink(missing_ok=True)
        raise


def write_text_atomic(path: Path, text: str, *, fsync: bool = False) -> None:
    with atomic_path(path, fsync=fsync) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_json_atomic(path: Path, data: Any) -> None:
    """Write ``data`` as indented JSON, flushed to disk before the rename."""
    write_text_atomic(path, json.dumps(data, indent=2) + "\n", fsync=True)
