"""``facediff grid``: one labelled PNG of categories/mixes × seeds, plus a mix strip."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from facediff.cli.app import app
from facediff.cli.options import (
    DEFAULT_RUN,
    NO_EMA_DEFAULT,
    AgeOpt,
    AttributeGuidanceOpt,
    BatchOpt,
    CheckpointOpt,
    CompileOpt,
    CudaGraphsOpt,
    DeepCacheOpt,
    DeviceOpt,
    ForceOpt,
    GenderOpt,
    GuidanceIntervalOpt,
    GuidanceOpt,
    MixModeOpt,
    MixOpt,
    NoEmaOpt,
    PrecisionOpt,
    QuietOpt,
    RunArg,
    SamplerOpt,
    SeedOpt,
    SpacingOpt,
    StepsOpt,
    attribute_options,
    sample_config,
)
from facediff.config import DEFAULT_GRID_SEEDS, DEFAULT_STRIP_STEPS, SampleConfig

_D = SampleConfig()


@app.command("grid")
def grid_command(
    run: RunArg = DEFAULT_RUN,
    out: Annotated[
        Path | None, typer.Option("--out", "-o", help="PNG to write (default RUN/grid.png).")
    ] = None,
    seeds: Annotated[
        int, typer.Option("--seeds", help="Columns: seeds per row.")
    ] = DEFAULT_GRID_SEEDS,
    category: Annotated[
        list[str] | None,
        typer.Option(
            "--category", "-c", metavar="CODE", help="A category row (code or name; repeatable)."
        ),
    ] = None,
    mix: MixOpt = None,
    rows: Annotated[
        str | None,
        typer.Option(
            "--rows",
            metavar="ATTRIBUTE",
            help="One row per value of this attribute (age or gender) for each category/mix.",
        ),
    ] = None,
    gender: GenderOpt = None,
    age: AgeOpt = None,
    attribute_guidance: AttributeGuidanceOpt = None,
    strip: Annotated[
        tuple[str, str] | None,
        typer.Option("--strip", metavar="A B", help="Sweep weights from mix A to mix B."),
    ] = None,
    strip_steps: Annotated[
        int, typer.Option("--strip-steps", help="Images in the strip.")
    ] = DEFAULT_STRIP_STEPS,
    from_samples: Annotated[
        Path | None,
        typer.Option(
            "--from-samples",
            help="Build the grid from a `facediff sample` folder (rows: all, or -c/--mix).",
        ),
    ] = None,
    sampler: SamplerOpt = _D.sampler,
    steps: StepsOpt = _D.steps,
    spacing: SpacingOpt = _D.spacing,
    guidance: GuidanceOpt = _D.guidance,
    guidance_interval: GuidanceIntervalOpt = None,
    deep_cache: DeepCacheOpt = _D.deep_cache,
    mix_mode: MixModeOpt = _D.mix_mode,
    seed: SeedOpt = _D.seed,
    batch_size: BatchOpt = _D.batch_size,
    checkpoint: CheckpointOpt = None,
    no_ema: NoEmaOpt = NO_EMA_DEFAULT,
    precision: PrecisionOpt = _D.precision,
    compile: CompileOpt = _D.compile,
    cuda_graphs: CudaGraphsOpt = _D.cuda_graphs,
    device: DeviceOpt = _D.device,
    force: ForceOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """A labelled grid: rows = categories and mixes, columns = seeds, plus an A->B strip.

    With --rows age (or gender), one row per value of that attribute for each category or
    mix (default: each category; no default strip).

    Examples:

    \b
      facediff grid runs/faces                              # -> runs/faces/grid.png
      facediff grid runs/faces --mix OIE --seeds 4 --out oie.png
      facediff grid runs/faces --strip O I --strip-steps 7  # weights O -> I at one seed
      facediff grid --from-samples generated_images --out grid.png
      facediff grid runs/utk -c I --rows age --gender female   # a row per age bucket
    """
    from facediff.cli import render
    from facediff.grids import grid

    if strip_steps < 2:
        raise typer.BadParameter("must be at least 2", param_hint="--strip-steps")
    config = sample_config(locals())
    wanted, scales = attribute_options(gender, age, attribute_guidance)
    strip_pair = strip if strip and all(strip) else None
    with render.progress(quiet) as bar:
        result = grid(
            None if from_samples else run,
            out,
            config,
            seeds=seeds,
            mixes=mix,
            categories=category,
            strip=strip_pair,
            attributes=wanted,
            attribute_guidance=scales,
            rows=rows,
            strip_steps=strip_steps,
            from_samples=from_samples,
            checkpoint_step=checkpoint,
            force=force,
            progress=bar,
        )
    w, h = result.size
    render.out.print(f"grid: {result.out} ({result.rows} rows x {result.columns} columns, {w}x{h})")
