"""Command-line interface: one module per command, each a thin layer over the core."""

from facediff.cli.app import app, main

# Importing a command module registers its command(s) on ``app``.
from facediff.cli import prepare_cmd  # noqa: F401  isort: skip

__all__ = ["app", "main"]
