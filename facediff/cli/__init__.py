"""Command-line interface: one module per command, each a thin layer over the core."""

from facediff.cli.app import app, main

# Importing a command module registers its command(s) on ``app``; the order is the
# order of `facediff --help`.
from facediff.cli import prepare_cmd  # noqa: F401  isort: skip
from facediff.cli import train_cmd  # noqa: F401  isort: skip
from facediff.cli import sample_cmd  # noqa: F401  isort: skip
from facediff.cli import grid_cmd  # noqa: F401  isort: skip
from facediff.cli import evaluate_cmd  # noqa: F401  isort: skip
from facediff.cli import export_cmd  # noqa: F401  isort: skip
from facediff.cli import demo_cmd  # noqa: F401  isort: skip

__all__ = ["app", "main"]
