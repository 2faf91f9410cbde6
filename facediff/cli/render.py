"""Rendering core progress events (the only place progress meets a terminal or a log file).

- On a terminal: rich bars on stderr (:class:`RichProgress`).
- Redirected (``> train.log 2>&1``, nohup, SLURM, CI): plain timestamped lines on stderr,
  one every ``FACEDIFF_PROGRESS_SECONDS`` seconds (default 10) per task, flushed as they
  happen (:class:`PlainProgress`).
- ``--quiet``: only warnings.

Results go to stdout (:data:`out`); progress and diagnostics to stderr (:data:`console`).
"""

from __future__ import annotations

import contextlib
import math
import os
import sys
import time
from collections.abc import Iterator
from typing import Any, ClassVar

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.text import Text

from facediff.progress import Progress as ProgressEvent

#: Seconds between plain progress lines when output is not a terminal.
PROGRESS_SECONDS_ENV = "FACEDIFF_PROGRESS_SECONDS"
DEFAULT_PROGRESS_SECONDS = 10.0

# Redirected output keeps whole lines (no cut at 80 columns).
_WIDTH = None if sys.stdout.isatty() else 200
# Text is printed as it is: paths, category names and notes may hold "[...]" or ":...:",
# which rich would otherwise take for markup or emoji codes and drop ("facediff[fid]").
console = Console(stderr=True, soft_wrap=True, markup=False, emoji=False)  # diagnostics
out = Console(soft_wrap=True, width=_WIDTH, markup=False, emoji=False)  # results


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)


def _duration(seconds: float) -> str:
    if not math.isfinite(seconds):
        return "?"
    s = round(seconds)
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{s % 3600 // 60:02d}m"


def _is_warning(event: ProgressEvent) -> bool:
    return bool(event.message) and event.message.startswith("warning")


class _RateColumn(ProgressColumn):
    """Units per second (images/s when sampling, steps/s when training)."""

    def render(self, task) -> Text:
        speed = task.finished_speed or task.speed
        return Text(f"{speed:.1f}/s" if speed else "", style="progress.data.speed")


class RichProgress:
    """A progress callback that draws one rich bar per task name.

    Use as a context manager and pass the instance as ``progress=`` to a core function.
    """

    def __init__(self, console_: Console | None = None) -> None:
        self.console = console_ or console
        self._bar = Progress(
            TextColumn("{task.description}", style="bold", markup=False),
            BarColumn(),
            MofNCompleteColumn(),
            _RateColumn(),
            TimeElapsedColumn(),
            TextColumn("eta"),
            TimeRemainingColumn(),
            TextColumn("{task.fields[info]}", markup=False),
            console=self.console,
            transient=False,
        )
        self._tasks: dict[str, Any] = {}
        self._started = False

    def __enter__(self) -> RichProgress:
        return self

    def __exit__(self, *exc: object) -> None:
        if self._started:
            self._bar.stop()

    def __call__(self, event: ProgressEvent) -> None:
        if not self._started:  # start on the first event: early errors print cleanly
            self._bar.start()
            self._started = True
        if event.message:
            self._bar.console.print(event.message, markup=False)
        task = self._tasks.get(event.task)
        if task is None:
            task = self._bar.add_task(event.task, total=event.total, info="")
            self._tasks[event.task] = task
        info = "  ".join(f"{k} {_fmt(v)}" for k, v in event.info.items())
        self._bar.update(task, completed=event.completed, total=event.total, info=info)


class _TaskClock:
    def __init__(self, completed: int) -> None:
        self.started = time.monotonic()
        self.first = completed
        self.printed = -math.inf
        self.last_line: str | None = None


class PlainProgress:
    """Timestamped progress lines for logs: at most one per task every ``seconds``.

    A line reads ``2026-01-31 12:00:00 train step 120/2000 (6%) epoch 3 loss 0.041
    img/s 55.1 lr 0.0002 elapsed 1m02s eta 16m10s``; messages (checkpoint saved, warnings)
    are printed at once. Every line is flushed, so ``tail -f`` shows it immediately.
    """

    _UNITS: ClassVar[dict[str, str]] = {"train": "step"}

    def __init__(self, stream=None, seconds: float | None = None) -> None:
        self.stream = stream or sys.stderr
        self.seconds = progress_seconds() if seconds is None else seconds
        self._clocks: dict[str, _TaskClock] = {}

    def __enter__(self) -> PlainProgress:
        return self

    def __exit__(self, *exc: object) -> None:
        pass

    def _write(self, text: str) -> None:
        stamp = time.strftime("%Y-%m-%d %H:%M:%S")
        print(f"{stamp} {text}", file=self.stream, flush=True)

    def __call__(self, event: ProgressEvent) -> None:
        if event.message:
            self._write(event.message)
        clock = self._clocks.get(event.task)
        if clock is None:
            clock = self._clocks[event.task] = _TaskClock(event.completed)
        now = time.monotonic()
        done = event.total is not None and event.completed >= event.total
        if now - clock.printed < self.seconds and not done:
            return
        line = self._line(event, clock, now)
        if line != clock.last_line:  # e.g. the final event repeated
            self._write(line)
            clock.printed, clock.last_line = now, line

    def _line(self, event: ProgressEvent, clock: _TaskClock, now: float) -> str:
        unit = self._UNITS.get(event.task)
        parts = [event.task] + ([unit] if unit else [])
        if event.total:
            pct = 100.0 * event.completed / event.total
            parts.append(f"{event.completed}/{event.total} ({pct:.0f}%)")
        else:
            parts.append(str(event.completed))
        parts += [f"{k} {_fmt(v)}" for k, v in event.info.items()]
        elapsed = now - clock.started
        parts.append(f"elapsed {_duration(elapsed)}")
        rate = (event.completed - clock.first) / elapsed if elapsed > 0 else 0.0
        if event.total and event.completed < event.total and rate > 0:
            parts.append(f"eta {_duration((event.total - event.completed) / rate)}")
        return " ".join(parts)


class QuietProgress:
    """``--quiet``: nothing but warnings."""

    def __enter__(self) -> QuietProgress:
        return self

    def __exit__(self, *exc: object) -> None:
        pass

    def __call__(self, event: ProgressEvent) -> None:
        if _is_warning(event):
            print(event.message, file=sys.stderr, flush=True)


def progress_seconds() -> float:
    """The plain-line interval from ``FACEDIFF_PROGRESS_SECONDS`` (default 10 s)."""
    raw = os.environ.get(PROGRESS_SECONDS_ENV)
    try:
        value = float(raw) if raw else DEFAULT_PROGRESS_SECONDS
    except ValueError:
        value = DEFAULT_PROGRESS_SECONDS
    return max(value, 0.0)


@contextlib.contextmanager
def progress(quiet: bool = False) -> Iterator[Any]:
    """The progress callback for this process's stderr: rich bars, plain lines or quiet."""
    if quiet:
        renderer: Any = QuietProgress()
    elif console.is_terminal:
        renderer = RichProgress()
    else:
        renderer = PlainProgress()
    with renderer as callback:
        yield callback


def warn(message: str) -> None:
    """A diagnostic line on stderr (shown even with ``--quiet``)."""
    print(f"warning: {message}", file=sys.stderr, flush=True)


def plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"
