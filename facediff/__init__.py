"""facediff: class-conditional diffusion on folders of faces, with real hybrid mixes.

The CLI is a thin layer over these functions::

    from facediff import prepare, train, sample, evaluate
"""

from __future__ import annotations

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
    "load_for_inference": "facediff.checkpoint",
    "parse_mix": "facediff.mix",
    "DEFAULT_CATEGORIES": "facediff.categories",
}


def __getattr__(name: str) -> Any:
    if name in _API:
        return getattr(import_module(_API[name]), name)
    raise AttributeError(f"module 'facediff' has no attribute {name!r}")


__all__ = ["__version__", *_API]
