"""Option types shared by several commands (one definition each; huggingface_hub's
``cli/_cli_utils.py`` aliases). Defaults come from :mod:`facediff.config`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from facediff.categories import CategoryMap, resolve_categories
from facediff.config import (
    DEFAULT_DATA_DIR,
    DEFAULT_RUN_DIR,
)

CategoryOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--category",
        "-c",
        metavar="PREFIX=NAME:CODE",
        help="A category, repeated for each (replaces the default indian/asian/white map).",
    ),
]
CategoriesFileOpt = Annotated[
    Path | None,
    typer.Option("--categories-file", help="JSON file listing categories (prefix, name, code)."),
]
DataArg = Annotated[
    Path,
    typer.Argument(help="Prepared dataset folder (written by `facediff prepare`)."),
]
RunArg = Annotated[
    Path,
    typer.Argument(help="Run folder (written by `facediff train`) or an exported model folder."),
]
DeviceOpt = Annotated[str, typer.Option("--device", help="auto, cpu, cuda or cuda:N.")]
PrecisionOpt = Annotated[
    str, typer.Option("--precision", help="auto (bf16 on GPUs that support it), bf16, fp16, fp32.")
]
SeedOpt = Annotated[int, typer.Option("--seed", help="Random seed.")]

DEFAULT_DATA = Path(DEFAULT_DATA_DIR)
DEFAULT_RUN = Path(DEFAULT_RUN_DIR)


def categories_from(options: list[str] | None, file: Path | None) -> CategoryMap:
    """The category map chosen on the command line."""
    return resolve_categories(options, file)


def check_choice(option: str, value: str, choices: tuple[str, ...] | list[str]) -> str:
    """Validate a string option against its allowed values (one-line error otherwise)."""
    if value not in choices:
        raise typer.BadParameter(f"{value!r} is not one of {', '.join(choices)}", param_hint=option)
    return value
