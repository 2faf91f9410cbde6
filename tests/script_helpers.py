"""Environment for running ``benchmarks/`` scripts as subprocesses in tests."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parents[1]


def script_env(cache_home: Path | None = None) -> dict[str, str]:
    """This checkout importable, one CPU thread and, if given, its own ``XDG_CACHE_HOME``
    (so a compile cache or download cache starts empty)."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    if cache_home is not None:
        env["XDG_CACHE_HOME"] = str(cache_home)
    return env


def run_script(script: Path, *args: object, timeout: float = 600) -> subprocess.CompletedProcess:
    """``python script args…`` in :func:`script_env`, its output captured as text."""
    cmd = [sys.executable, str(script), *map(str, args)]
    return subprocess.run(cmd, capture_output=True, text=True, env=script_env(), timeout=timeout)


def import_script(script: Path) -> ModuleType:
    """A ``benchmarks/`` script imported as a module (its ``main`` not run)."""
    spec = importlib.util.spec_from_file_location(script.stem, script)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
