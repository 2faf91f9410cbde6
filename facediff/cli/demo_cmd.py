"""``facediff demo`` (the whole pipeline on synthetic faces, ending with a grid) and
``facediff demo-data`` (synthetic raw photos)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from facediff.cli.app import app
from facediff.cli.options import DEFAULT_DATA, DeviceOpt, QuietOpt, SeedOpt, check_range
from facediff.config import (
    DEMO_PER_CATEGORY,
    DEMO_SIZE,
    MAX_SIZE,
    MIN_SIZE,
    PrepareConfig,
    field_default,
)
from facediff.demo import CLEAR_STEPS, DEFAULT_DEMO_DIR, DemoConfig

_D = DemoConfig()


@app.command("demo")
def demo_command(
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder for everything.")] = Path(
        DEFAULT_DEMO_DIR
    ),
    minutes: Annotated[
        float, typer.Option("--minutes", help="Training time budget in minutes.")
    ] = _D.minutes,
    max_steps: Annotated[
        int, typer.Option("--max-steps", help="Training steps, if the time budget lasts.")
    ] = _D.max_steps,
    per_category: Annotated[
        int, typer.Option("--per-category", help="Synthetic faces per category.")
    ] = _D.per_category,
    size: Annotated[int, typer.Option("--size", help="Image size in pixels.")] = _D.size,
    samples: Annotated[
        int, typer.Option("--samples", help="Images per category and mix.")
    ] = _D.samples,
    sample_steps: Annotated[
        int, typer.Option("--sample-steps", help="Sampler steps.")
    ] = _D.sample_steps,
    device: DeviceOpt = _D.device,
    force: Annotated[bool, typer.Option("--force", help="Redo a previous demo in OUT.")] = False,
    quiet: QuietOpt = False,
) -> None:
    """Synthetic faces -> prepare -> train (tiny preset) -> sample every mix -> grid.

    Examples:

    \b
      facediff demo                         # ~3 min on a laptop CPU -> facediff-demo/grid.png
      facediff demo --minutes 1 --out /tmp/demo --force
      facediff demo --device cuda --minutes 5 --size 64
    """
    from facediff.cli import render
    from facediff.demo import demo

    for name, value in (
        ("--max-steps", max_steps),
        ("--per-category", per_category),
        ("--samples", samples),
        ("--sample-steps", sample_steps),
    ):
        if value < 1:
            raise typer.BadParameter("must be at least 1", param_hint=name)
    config = DemoConfig(
        per_category=per_category,
        size=size,
        minutes=minutes,
        max_steps=max_steps,
        samples=samples,
        sample_steps=sample_steps,
        device=device,
    )
    with render.progress(quiet) as bar:
        result = demo(out, config, force=force, progress=bar)
    render.out.print(
        f"demo done in {result.seconds / 60:.1f} min ({result.train_steps} training steps); "
        f"samples in {result.samples}"
    )
    render.out.print(f"grid: {result.grid}")
    if result.more_minutes is not None:
        render.out.print(
            f"only {result.train_steps} training steps fit in {minutes:g} min on this machine; "
            f"the faces sharpen by about {CLEAR_STEPS:,}: run again with --force --minutes "
            f"{result.more_minutes}"
        )


@app.command("demo-data")
def demo_data_command(
    out: Annotated[
        Path, typer.Argument(metavar="OUT", help="New folder for the synthetic raw photos.")
    ],
    per_category: Annotated[
        int, typer.Option("--per-category", "-n", help="Images per category.")
    ] = DEMO_PER_CATEGORY,
    size: Annotated[int, typer.Option("--size", help="Image side in pixels.")] = DEMO_SIZE,
    seed: SeedOpt = 0,
) -> None:
    """Draw synthetic faces to try facediff without photos.

    Writes faces of people aged 0-90, half of them women, named by category prefix and
    then the UTKFace way (white_63_1_0_2017….png: age, gender 0 male / 1 female, race,
    date) into OUT, a raw folder for `facediff prepare` (`facediff prepare OUT
    --attributes utkface` reads the ages and genders back).

    Examples:

    \b
      facediff demo-data raw-demo                     # 200 faces per category, 64x64
      facediff demo-data raw-demo -n 50 --size 32 --seed 1
    """
    from facediff.cli import render
    from facediff.synthetic import make_demo_data

    check_range("--per-category", per_category, 1)
    check_range("--size", size, MIN_SIZE, MAX_SIZE)
    paths = make_demo_data(out, per_category=per_category, size=size, seed=seed)
    size_option = f" --size {size}" if size != field_default(PrepareConfig, "size") else ""
    render.out.print(
        f"Wrote {len(paths)} synthetic faces to {out}. "
        f"Next: facediff prepare {out} --out {DEFAULT_DATA}{size_option}"
    )
