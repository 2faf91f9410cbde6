"""facediff: class-conditional diffusion on folders of faces, with real hybrid mixes.

The CLI is a thin layer over these functions::

    from facediff import prepare, train, sample, evaluate

Called from here, the long-running functions show progress bars (tqdm: a widget in a
notebook) unless given ``progress=None`` (silent) or a callback of your own.
"""

from __future__ import annotations

import functools
from importlib import import_module
from typing import Any

__version__ = "0.1.0"

# Public API, imported lazily so ``import facediff`` stays fast. Module names differ from
# function names, so ``from facediff import train`` always gives the function.
_API = {
    "prepare": "facediff.preparation",
    "make_demo_data": "facediff.synthetic",
    "train": "facediff.training",
    "sample": "facediff.sample_folder",
    "generate": "facediff.generation",
    "grid": "facediff.grids",
    "export": "facediff.exporting",
    "FaceDiffPipeline": "facediff.pipeline",
    "evaluate": "facediff.evaluation",
    "load_for_inference": "facediff.loading",
    "parse_mix": "facediff.mix",
    "DEFAULT_CATEGORIES": "facediff.categories",
}


#: Functions that take ``progress=``: from the package they default to progress bars.
_WITH_PROGRESS = ("prepare", "train", "sample", "grid", "evaluate")


def _with_bars(func: Any) -> Any:
    """``func`` with a default ``progress=`` of tqdm bars (``None`` or ``False``: silent)."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        if kwargs.get("progress", True) is False:
            kwargs["progress"] = None
        if "progress" in kwargs:
            return func(*args, **kwargs)
        from facediff.progress import BarProgress

        bars = BarProgress()
        try:
            return func(*args, progress=bars, **kwargs)
        finally:
            bars.close()

    return wrapper


def __getattr__(name: str) -> Any:
    if name in _API:
        value = getattr(import_module(_API[name]), name)
        if name in _WITH_PROGRESS:
            value = _with_bars(value)
        globals()[name] = value  # later look-ups skip __getattr__
        return value
    raise AttributeError(f"module 'facediff' has no attribute {name!r}")


__all__ = ["__version__", *_API]
