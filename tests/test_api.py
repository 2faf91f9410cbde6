import importlib
import importlib.metadata
import inspect

import facediff


def test_public_api_gives_functions_not_modules():
    # Importing the core modules first (as the CLI does) must not shadow the API's functions.
    for module in ("preparation", "training", "sample_folder", "generation", "grids", "exporting"):
        importlib.import_module(f"facediff.{module}")
    importlib.import_module("facediff.evaluation")
    from facediff import evaluate, export, generate, grid, prepare, sample, train

    for fn in (prepare, train, sample, generate, grid, export, evaluate):
        assert inspect.isfunction(fn), fn
    assert facediff.__version__ == importlib.metadata.version("facediff")
