"""``facediff export``: a diffusers folder (unet/, scheduler/) plus facediff.json."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from facediff.cli.app import app
from facediff.cli.sample_cmd import CheckpointOpt, ForceOpt, NoEmaOpt


@app.command("export")
def export_command(
    run: Annotated[Path, typer.Argument(help="Run folder (written by `facediff train`).")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder to write.")],
    checkpoint: CheckpointOpt = None,
    no_ema: NoEmaOpt = False,
    force: ForceOpt = False,
) -> None:
    """Export a checkpoint as a standard diffusers folder loadable with diffusers alone.

    Examples:

    \b
      facediff export runs/faces --out faces-model
      facediff export runs/faces --out faces-model-5k --checkpoint 5000 --no-ema
      python -c "from diffusers import UNet2DModel; UNet2DModel.from_pretrained('faces-model/unet')"
    """
    from facediff.cli.render import console
    from facediff.exporting import export

    result = export(run, out, checkpoint_step=checkpoint, use_ema=not no_ema, force=force)
    console.print(
        f"exported step {result.step} ({result.weights} weights) from {result.source} "
        f"to {result.out}"
    )
