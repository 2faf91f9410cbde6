"""``demo``: the whole pipeline on synthetic faces, with no data of the user's.

demo-data → prepare → train (the ``tiny`` preset, a few minutes on a laptop CPU) →
sample every category and mix → grid. Everything is written under one folder::

    <out>/raw/        synthetic category faces named by prefix (indian_0001.png …)
    <out>/data/       the prepared dataset
    <out>/run/        the training run (checkpoints, metrics)
    <out>/samples/    <LABEL>/<LABEL>_<seed>.png and samples.json
    <out>/grid.png    categories and mixes × seeds, plus an O→I strip
"""

from __future__ import annotations

import math
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from facediff.config import SampleConfig, TrainConfig
from facediff.errors import ConfigError, FacediffError
from facediff.progress import Progress, ProgressCallback, emit

DEFAULT_DEMO_DIR = "facediff-demo"
_PARTS = ("raw", "data", "run", "samples", "grid.png")


@dataclass(frozen=True)
class DemoConfig:
    """Sizes of the demo; the defaults fit a few minutes on a 2-core CPU."""

    per_category: int = 200  # synthetic faces per category
    size: int = 32  # pixels
    preset: str = "tiny"
    minutes: float = 3.0  # training time budget (wall clock); training stops after it
    max_steps: int = 1500  # training steps, if the time budget lasts
    batch_size: int = 16
    lr: float = 1e-3
    lr_warmup_steps: int = 50
    samples: int = 4  # images per category and mix (also the grid's columns)
    sample_steps: int = 20
    # Not `sample`'s 3: on the demo's undertrained model, 1.5 drew mixes closer to their
    # weights, less grain and less tint at equal FID (benchmarks/demo_budget.py, README).
    guidance: float = 1.5
    seed: int = 0
    device: str = "auto"


#: Training steps from which the demo's grid looks finished on the CPU (tiny preset, 32 px,
#: batch 16): flat backgrounds and clean faces at 1,000 and 1,129 steps, muddy backgrounds and
#: blotched shirts at about 480 (README, "Quick start").
CLEAR_STEPS = 1000


@dataclass
class DemoResult:
    out: Path
    run: Path
    samples: Path
    grid: Path
    train_steps: int
    seconds: float
    #: ``--minutes`` that would reach :data:`CLEAR_STEPS` at this run's pace, when the time
    #: budget stopped training short of them; None otherwise.
    more_minutes: int | None = None


def more_minutes(c: DemoConfig, steps: int) -> int | None:
    """The whole minutes of training that would reach :data:`CLEAR_STEPS` at the pace of a
    run that made ``steps`` in ``c.minutes``, if the budget stopped it short of them; None if
    it got there, made no step, or was asked for fewer (``c.max_steps``), which no longer
    budget would change."""
    if steps <= 0 or steps >= CLEAR_STEPS or c.max_steps < CLEAR_STEPS:
        return None
    return math.ceil(c.minutes * CLEAR_STEPS / steps)


def _clear(out: Path, force: bool) -> None:
    if not out.exists():
        return
    if not out.is_dir():
        raise FacediffError(f"{out} exists and is not a folder")
    if not any(out.iterdir()):
        return
    if not force:
        raise FacediffError(f"{out} already exists and is not empty; use --force to redo the demo")
    unknown = [p.name for p in out.iterdir() if p.name not in _PARTS]
    if unknown:
        raise FacediffError(
            f"{out} holds files the demo did not write ({unknown[0]}); not touching it"
        )
    for name in _PARTS:
        p = out / name
        if p.is_dir():
            shutil.rmtree(p)
        elif p.exists():
            p.unlink()


def _train_config(c: DemoConfig) -> TrainConfig:
    return TrainConfig(
        preset=c.preset,
        max_steps=c.max_steps,
        batch_size=c.batch_size,
        lr=c.lr,
        lr_warmup_steps=c.lr_warmup_steps,
        checkpoint_every=c.max_steps,
        keep=1,
        preview_every=0,
        log_every=max(1, min(50, c.max_steps // 10)),
        seed=c.seed,
        device=c.device,
    )


def _train_for(data: Path, run: Path, c: DemoConfig, progress: ProgressCallback | None):
    """Train until ``max_steps`` or the time budget, whichever comes first."""
    from facediff.training import train

    return train(data, run, _train_config(c), progress=progress, time_budget_s=c.minutes * 60.0)


def demo(
    out: Path = Path(DEFAULT_DEMO_DIR),
    config: DemoConfig | None = None,
    *,
    force: bool = False,
    progress: ProgressCallback | None = None,
) -> DemoResult:
    """Run the whole pipeline on synthetic faces under ``out`` and write ``out/grid.png``."""
    from facediff.grids import grid
    from facediff.preparation import prepare
    from facediff.sample_folder import sample
    from facediff.synthetic import make_demo_data

    c = config or DemoConfig()
    if c.minutes <= 0:
        raise ConfigError(f"{{}} must be > 0; got {c.minutes}", "minutes")
    out = Path(out)
    _clear(out, force)
    began = time.perf_counter()
    say = lambda text: emit(progress, Progress("demo", 0, None, message=text))  # noqa: E731
    paths = make_demo_data(
        out / "raw", per_category=c.per_category, size=c.size, seed=c.seed, people=False
    )
    say(f"wrote {len(paths)} synthetic faces to {out / 'raw'}")
    prepare(out / "raw", out / "data", size=c.size, progress=progress)
    say(f"prepared {out / 'data'}; training the {c.preset!r} preset for up to {c.minutes:g} min")
    trained = _train_for(out / "data", out / "run", c, progress)
    say(f"trained {trained.step} steps in {trained.seconds:.0f}s (loss {trained.loss})")
    sample_cfg = SampleConfig(
        n=c.samples, steps=c.sample_steps, guidance=c.guidance, seed=c.seed, device=c.device
    )
    sample(out / "run", out / "samples", sample_cfg, progress=progress)
    result = grid(
        out / "run",
        out / "grid.png",
        sample_cfg,
        seeds=c.samples,
        from_samples=out / "samples",
        progress=progress,
    )
    return DemoResult(
        out=out,
        run=out / "run",
        samples=out / "samples",
        grid=result.out,
        train_steps=trained.step,
        seconds=time.perf_counter() - began,
        more_minutes=more_minutes(c, trained.step),
    )
