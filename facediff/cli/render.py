"""Rendering core progress events with rich (the only place progress meets a terminal)."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from facediff.progress import Progress as ProgressEvent

console = Console(stderr=True)


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)


class RichProgress:
    """A progress callback that draws one rich bar per task name.

    Use as a context manager and pass the instance as ``progress=`` to a core function.
    """

    def __init__(self, console_: Console | None = None) -> None:
        self.console = console_ or console
        self._bar = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TextColumn("eta"),
            TimeRemainingColumn(),
            TextColumn("{task.fields[info]}"),
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
            self._bar.console.print(event.message)
        task = self._tasks.get(event.task)
        if task is None:
            task = self._bar.add_task(event.task, total=event.total, info="")
            self._tasks[event.task] = task
        info = "  ".join(f"{k} {_fmt(v)}" for k, v in event.info.items())
        self._bar.update(task, completed=event.completed, total=event.total, info=info)
