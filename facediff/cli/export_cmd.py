"""``facediff export``: a diffusers pipeline folder with a model card."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from facediff.cli.app import app
from facediff.cli.options import NO_EMA_DEFAULT, CheckpointOpt, ForceOpt, NoEmaOpt


@app.command("export")
def export_command(
    run: Annotated[Path, typer.Argument(help="Run folder (written by `facediff train`).")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder to write.")],
    checkpoint: CheckpointOpt = None,
    no_ema: NoEmaOpt = NO_EMA_DEFAULT,
    force: ForceOpt = False,
    report: Annotated[
        Path | None,
        typer.Option(
            "--report",
            help="A `facediff evaluate` report.json for the model card "
            "[default: RUN/evaluation/report.json if it exists].",
        ),
    ] = None,
) -> None:
    """Export a checkpoint as a diffusers pipeline folder (FaceDiffPipeline) with a model card.

    Writes OUT/model_index.json, unet/, scheduler/, pipeline.py, guidance.py, facediff.json
    and README.md (the model card, with the run's latest `facediff evaluate` numbers).

    Examples:

    \b
      facediff export runs/faces --out faces-model
      facediff export runs/faces --out faces-model-5k --checkpoint 5000 --no-ema
      facediff export runs/faces --out faces-model --report eval-200/report.json
      python -c "from facediff import FaceDiffPipeline as P; P.from_pretrained('faces-model')"
    """
    from facediff.cli import render
    from facediff.exporting import export

    result = export(
        run, out, checkpoint_step=checkpoint, use_ema=not no_ema, force=force, report=report
    )
    for warning in result.warnings:  # e.g. a damaged newest checkpoint was skipped
        render.warn(warning.removeprefix("warning: "))
    render.out.print(
        f"exported step {result.step} ({result.weights} weights) from {result.source} "
        f"to {result.out}"
    )
    evaluated = f"with the numbers of {result.report}" if result.report else "(no evaluate report)"
    render.out.print(f"model card: {result.out / 'README.md'} {evaluated}")
