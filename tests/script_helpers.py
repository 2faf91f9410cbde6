"""Environment for running ``benchmarks/`` scripts as subprocesses in tests."""

from __future__ import annotations

import os
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def script_env(cache_home: Path | None = None) -> dict[str, str]:
    """This checkout importable, one CPU thread and, if given, its own ``XDG_CACHE_HOME``
    (so a compile cache or download cache starts empty)."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    if cache_home is not None:
        env["XDG_CACHE_HOME"] = str(cache_home)
    return env
