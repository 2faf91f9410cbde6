"""`facediff prepare`: raw photos → prepared dataset."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from facediff.cli.app import app
from facediff.cli.options import (
    DEFAULT_DATA,
    CategoriesFileOpt,
    CategoryOpt,
    JsonOpt,
    QuietOpt,
    categories_from,
    print_json,
)
from facediff.config import MAX_SIZE, MIN_SIZE, PrepareConfig, field_default


def _reasons(counts: dict[str, int]) -> str:
    return "\n".join(f"{reason}: {n}" for reason, n in counts.items()) or "-"


def _summary(report):
    """Per category: files found, kept and skipped by reason; then the totals."""
    from rich.table import Table

    title = f"Prepared {report.size}×{report.size} dataset (layout: {report.layout})"
    table = Table(title=title, title_justify="left")
    held = report.held_out > 0  # --holdout: a column of the kept photos held out
    columns = ["category", "code", "prefix", "found", "kept", *(["held out"] * held), "skipped"]
    for column in columns:
        table.add_column(
            column, justify="right" if column in ("found", "kept", "held out") else "left"
        )
    for c in report.categories:
        table.add_row(
            c.name, c.code, c.prefix, str(c.found), str(c.kept),
            *([str(c.held_out)] * held), _reasons(c.skipped),
        )  # fmt: skip
    other = sum(report.unmatched.values())
    if other:
        table.add_row(
            "(other files)", "", "", str(other), "0", *(["0"] * held), _reasons(report.unmatched)
        )
    table.add_section()
    total = report.found + other
    table.add_row(
        "total", "", "", str(total), str(report.kept),
        *([str(report.held_out)] * held), str(total - report.kept),
    )  # fmt: skip
    return table


def _attribute_tables(report):
    """One table per attribute: images per category × value (unknown last)."""
    from rich.table import Table

    tables = []
    for a in report.attributes:
        values = [*a.values, "unknown"]
        table = Table(title=f"Attribute {a.name} (images per category)", title_justify="left")
        table.add_column("category")
        for v in values:
            table.add_column(v, justify="right")
        totals = dict.fromkeys(values, 0)
        for name, per in report.attribute_counts.items():
            counts = per[a.name]
            table.add_row(name, *(str(counts[v]) for v in values))
            for v in values:
                totals[v] += counts[v]
        table.add_section()
        table.add_row("total", *(str(totals[v]) for v in values))
        tables.append(table)
    return tables


def _json_summary(report) -> dict:
    return {
        "raw": str(report.raw),
        "out": str(report.out),
        "size": report.size,
        "found": report.found,
        "kept": report.kept,
        "held_out": report.held_out,
        "skipped": len(report.skipped),
        "layout": report.layout,
        "upscaled": report.upscaled,
        "categories": [
            {
                "name": c.name,
                "code": c.code,
                "prefix": c.prefix,
                "found": c.found,
                "kept": c.kept,
                "held_out": c.held_out,
                "skipped": c.skipped,
            }
            for c in report.categories
        ],
        "unmatched": report.unmatched,
        "attributes": report.attributes.to_list(),
        "attribute_counts": report.attribute_counts,
        "attribute_unknown": report.attribute_unknown,
        "seconds": report.seconds,
        "manifest": str(report.out / "manifest.json"),
    }


@app.command("prepare")
def prepare_command(
    raw: Annotated[
        Path,
        typer.Argument(
            metavar="RAW",
            help="Folder of photos: named by category prefix, or in one folder per category.",
        ),
    ],
    out: Annotated[
        Path, typer.Option("--out", "-o", help="Folder for the prepared dataset.")
    ] = DEFAULT_DATA,
    size: Annotated[
        int, typer.Option("--size", help=f"Image side in pixels ({MIN_SIZE}-{MAX_SIZE}).")
    ] = field_default(PrepareConfig, "size"),
    category: CategoryOpt = None,
    categories_file: CategoriesFileOpt = None,
    labels: Annotated[
        Path | None,
        typer.Option(
            "--labels",
            metavar="FILE.csv",
            help="CSV of file,category rows (paths relative to RAW; category as prefix, "
            "name or code) instead of names or folders.",
        ),
    ] = None,
    attributes: Annotated[
        str | None,
        typer.Option(
            "--attributes",
            metavar="utkface|FILE.csv",
            help="Attribute labels: 'utkface' reads age and gender from UTKFace file names "
            "(63_1_0_2017….jpg, also behind a category prefix); a CSV has a header row "
            "file,age,gender,… (any other column is a categorical attribute).",
        ),
    ] = None,
    age_edges: Annotated[
        str | None,
        typer.Option(
            "--age-edges",
            metavar="10,20,…",
            help="Lower edges of the age buckets after 0 [default: decades, 10,20,…,90].",
        ),
    ] = None,
    workers: Annotated[
        int,
        typer.Option("--workers", help="Decoder processes (0: one per CPU core; never more)."),
    ] = field_default(PrepareConfig, "workers"),
    holdout: Annotated[
        float,
        typer.Option(
            "--holdout",
            metavar="FRACTION",
            help="Keep this fraction of the photos out of training (chosen by a hash of "
            "their file names), for `facediff evaluate` to measure against photos the model "
            "never saw.",
        ),
    ] = field_default(PrepareConfig, "holdout"),
    force: Annotated[
        bool,
        typer.Option("--force", help="Replace a dataset previously prepared in --out."),
    ] = field_default(PrepareConfig, "force"),
    quiet: QuietOpt = False,
    json: JsonOpt = False,
) -> None:
    """Turn a folder of raw photos into a prepared dataset.

    Photos are sorted into categories by file-name prefix (raw/indian_001.jpg), by a
    folder per category (raw/indian/001.jpg or raw/Indian/001.jpg) or by --labels, then
    validated, centre-cropped and resized; the result is what `facediff train` reads.
    RAW is only read, never written.

    Examples:

    \b
      facediff prepare ./raw                             # -> data/faces, 64x64
      facediff prepare ./raw --out data/faces32 --size 32
      facediff prepare ./photos --labels labels.csv      # rows: file,category
      facediff prepare ./utkface --attributes utkface    # age and gender from the names
      facediff prepare ./raw --attributes attrs.csv --age-edges 20,40,60
      facediff prepare ./raw -c cat=Cat:C -c dog=Dog:D   # your own categories
      facediff prepare ./raw --holdout 0.1               # 10% never trained on, for evaluate
      facediff prepare ./raw --out data/faces --force    # replace an earlier dataset
    """
    from facediff.cli import render

    categories = categories_from(category, categories_file)
    from facediff.preparation import prepare  # loads torch: only when the command runs

    with render.progress(quiet) as progress:
        report = prepare(
            raw,
            out,
            size=size,
            categories=categories,
            workers=workers,
            force=force,
            labels=labels,
            attributes=attributes,
            age_edges=age_edges,
            holdout=holdout,
            progress=progress,
        )
    if json:
        print_json(_json_summary(report))
        return
    render.out.print(_summary(report))
    for table in _attribute_tables(report):
        render.out.print(table)
    for name, reasons in report.attribute_unknown.items():
        if reasons:
            listed = "; ".join(f"{reason}: {n}" for reason, n in reasons.items())
            line = f"{name} unknown for {sum(reasons.values())} images ({listed})"
            render.out.print(line, markup=False)
    if report.skipped:
        render.out.print(f"Skipped files and their reasons are listed in {out / 'manifest.json'}.")
    held = (
        f", {report.held_out} of them held out for evaluate (never trained on)"
        if report.held_out
        else ""
    )
    render.out.print(
        f"{report.kept} image{'' if report.kept == 1 else 's'} ready in {out}{held} "
        f"({report.seconds:.1f} s). Next: facediff train {out}",
        soft_wrap=True,
    )
