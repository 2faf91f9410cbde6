"""``facediff train``: parse options and call :func:`facediff.training.train` with them.

Options left out are passed as None: :func:`facediff.training.resume_config` keeps the
run's value when resuming (so a bare ``facediff train`` continues a run exactly as it was
started), else the :class:`~facediff.config.TrainConfig` default.
"""

from __future__ import annotations

import contextlib
import signal
import sys
import threading
from pathlib import Path
from typing import Annotated

import typer

from facediff.cli.app import EXIT_INTERRUPTED, app
from facediff.cli.interrupts import raise_held
from facediff.cli.options import DEFAULT_DATA, DEFAULT_RUN, DataArg, QuietOpt
from facediff.config import (
    DEFAULT_EPOCHS,
    PRESETS,
    TrainConfig,
    field_default,
    parse_attribute_dropout,
)


def _d(name: str) -> str:
    """Help suffix with the TrainConfig default (options default to None to mean 'inherit')."""
    return f" [default: {field_default(TrainConfig, name)}; when resuming: the run's value]"


@contextlib.contextmanager
def stop_on_signals():
    """Set an event on SIGINT/SIGTERM (finish the step, checkpoint, exit); a second
    Ctrl-C interrupts at once. Previous handlers are restored afterwards."""
    stop = threading.Event()
    if threading.current_thread() is not threading.main_thread():
        yield stop
        return
    raise_held()  # a Ctrl-C held while torch imported ends the command before training

    def handler(signum, frame):
        if stop.is_set() and signum == signal.SIGINT:
            raise KeyboardInterrupt(
                "interrupted by a second Ctrl-C: the current step was not saved; the newest "
                "complete checkpoint is kept (any half-written one was removed)"
            )
        stop.set()
        print(
            "\nfacediff: stopping after this step and saving a checkpoint (Ctrl-C again to abort)",
            file=sys.stderr,
            flush=True,
        )

    previous = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield stop
    finally:
        for s, h in previous.items():
            signal.signal(s, h)


# Command options that are not TrainConfig fields.
_NOT_CONFIG = ("data", "out", "quiet", "log", "time_budget", "force")


@app.command("train")
def train_command(
    data: DataArg = DEFAULT_DATA,
    out: Annotated[Path, typer.Option("--out", "-o", help="Run folder.")] = DEFAULT_RUN,
    epochs: Annotated[
        int | None, typer.Option(help=f"Epochs to train in total [default: {DEFAULT_EPOCHS}].")
    ] = None,
    max_steps: Annotated[
        int | None, typer.Option(help="Optimizer steps in total (instead of --epochs).")
    ] = None,
    preset: Annotated[
        str | None, typer.Option(help=f"Model preset: {', '.join(PRESETS)}." + _d("preset"))
    ] = None,
    batch_size: Annotated[
        int | None, typer.Option(help="Images per step per process." + _d("batch_size"))
    ] = None,
    lr: Annotated[float | None, typer.Option(help="Peak learning rate." + _d("lr"))] = None,
    lr_warmup_steps: Annotated[
        int | None,
        typer.Option(
            help="Steps of linear LR warm-up from 0 to --lr (0: none)." + _d("lr_warmup_steps")
        ),
    ] = None,
    precision: Annotated[
        str | None,
        typer.Option(
            help="auto (bf16/fp16 on GPU, fp32 on CPU), bf16, fp16, fp32." + _d("precision")
        ),
    ] = None,
    compile: Annotated[
        bool | None,
        typer.Option(
            "--compile/--no-compile",
            help="torch.compile the training step, with a persistent compile cache "
            "(~/.cache/facediff/compile). [default: auto: on a GPU when the run is long "
            "enough to pay for compiling, never on the CPU; when resuming: the run's value]",
        ),
    ] = None,
    cuda_graphs: Annotated[
        bool | None,
        typer.Option(
            "--cuda-graphs/--no-cuda-graphs",
            help="Replay the training step (forward, backward, optimizer) as one CUDA graph "
            "after 3 eager steps: less per-step overhead at small batches. Single GPU, bf16 "
            "or fp32; elsewhere training runs without it. [default: auto: on where it "
            "applies, compiled or not; when resuming: the run's value]",
        ),
    ] = None,
    ema_decay: Annotated[
        float | None, typer.Option(help="EMA decay cap." + _d("ema_decay"))
    ] = None,
    cond_drop: Annotated[
        float | None,
        typer.Option(help="Probability of training a label as the null class." + _d("cond_drop")),
    ] = None,
    attribute_dropout: Annotated[
        str | None,
        typer.Option(
            help="Probability of training an attribute label as its null, each attribute "
            "on its own: one rate (0.2) or per attribute (gender=0.3,age=0.1); attributes "
            "not named use --cond-drop. [default: --cond-drop; when resuming: the run's value]"
        ),
    ] = None,
    checkpoint_every: Annotated[
        int | None, typer.Option(help="Steps between checkpoints." + _d("checkpoint_every"))
    ] = None,
    keep: Annotated[int | None, typer.Option(help="Checkpoints to keep." + _d("keep"))] = None,
    preview_every: Annotated[
        int | None,
        typer.Option(help="Steps between preview grids (0: none)." + _d("preview_every")),
    ] = None,
    log_every: Annotated[
        int | None, typer.Option(help="Steps between metrics records." + _d("log_every"))
    ] = None,
    balance: Annotated[
        bool | None,
        typer.Option(
            "--balance/--no-balance", help="Sample categories equally often." + _d("balance")
        ),
    ] = None,
    seed: Annotated[
        int | None, typer.Option(min=0, max=2**63 - 1, help="Random seed." + _d("seed"))
    ] = None,
    device: Annotated[
        str | None, typer.Option(help="auto, cpu, cuda or cuda:N." + _d("device"))
    ] = None,
    min_snr_gamma: Annotated[
        float | None, typer.Option(help="Min-SNR-γ loss weight (0: off)." + _d("min_snr_gamma"))
    ] = None,
    prediction_type: Annotated[
        str | None, typer.Option(help="epsilon or v_prediction." + _d("prediction_type"))
    ] = None,
    beta_schedule: Annotated[
        str | None,
        typer.Option(
            help="Noise schedule: squaredcos_cap_v2 (cosine), linear or scaled_linear."
            + _d("beta_schedule")
        ),
    ] = None,
    time_budget: Annotated[
        str | None,
        typer.Option(
            help="Stop cleanly with a checkpoint after this much wall time (e.g. 90s, 15m, "
            "2h; start-up included). A resumed run gets a new budget."
        ),
    ] = None,
    log: Annotated[
        str,
        typer.Option(
            "--log",
            help="Also log scalars and previews to: none, or tensorboard (RUN/tensorboard; "
            "needs the tensorboard package).",
        ),
    ] = "none",
    force: Annotated[
        bool,
        typer.Option(
            "--force", help="Also write into a non-empty --out that holds no run (its files stay)."
        ),
    ] = False,
    quiet: QuietOpt = False,
) -> None:
    """Train a class-conditional diffusion model; resumes if --out holds a checkpoint.

    Under `torchrun --nproc-per-node N -m facediff train ...` it trains data-parallel
    (the global batch is --batch-size × N).

    Examples:

    \b
      facediff train --epochs 1000                       # data/faces -> runs/faces
      facediff train data/faces --out runs/faces         # run again to resume
      facediff train --preset tiny --max-steps 2000 --device cpu
      facediff train > train.log 2>&1                    # plain timestamped progress lines
      facediff train --log tensorboard                   # then: tensorboard --logdir runs
      torchrun --nproc-per-node 4 -m facediff train data/faces --out runs/faces
    """
    options = {k: v for k, v in locals().items() if k not in _NOT_CONFIG}
    if attribute_dropout is not None:
        options["attribute_dropout"] = parse_attribute_dropout(attribute_dropout)
    from facediff.durations import parse_duration, seconds_since_process_start

    budget = None if time_budget is None else parse_duration(time_budget, "--time-budget")
    from facediff import distributed
    from facediff.training import train

    main = distributed.detect().is_main
    if budget is not None:
        # The budget counts from the command's launch: imports and start-up included.
        budget = max(budget - seconds_since_process_start(), 1e-3)
    with stop_on_signals() as stop, _progress(main, quiet) as progress:
        result = train(
            data,
            out,
            progress=progress,
            stop=stop,
            log=log,
            time_budget_s=budget,
            force=force,
            **options,
        )
    if not main:
        return
    loss = f", loss {result.loss:.4g}" if result.loss is not None else ""
    print(
        f"step {result.step} (epoch {result.epoch}, {result.images_seen} images{loss}) "
        f"in {result.seconds:.0f}s; checkpoint: {result.checkpoint}",
        flush=True,
    )
    if result.budget_reached:
        print(
            f"facediff: time budget reached; continue with: facediff train {data} --out {out} "
            "[--time-budget DURATION]",
            file=sys.stderr,
        )
    if result.interrupted:
        print(
            f"facediff: interrupted; resume with: facediff train {data} --out {out}",
            file=sys.stderr,
        )
        raise typer.Exit(EXIT_INTERRUPTED)


@contextlib.contextmanager
def _progress(enabled: bool, quiet: bool):
    if not enabled:
        yield None
        return
    from facediff.cli import render

    with render.progress(quiet) as p:
        yield p
