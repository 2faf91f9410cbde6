"""Progress reporting from the core to whoever renders it (the CLI uses rich).

Core functions take ``progress: ProgressCallback | None`` and call it with
:class:`Progress` events; they never import a UI library themselves
(k-diffusion's ``callback=``, minGPT's trainer callbacks).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Progress:
    """One progress event.

    ``task`` names the long-running piece of work (``"prepare"``, ``"train"``,
    ``"sample"`` …); ``completed``/``total`` count its units (``total`` is None when
    unknown); ``info`` holds extra figures to show (loss, images/s, epoch …);
    ``message`` is a line of text to print above the bar (e.g. "checkpoint saved").
    """

    task: str
    completed: int
    total: int | None = None
    info: dict[str, float | int | str] = field(default_factory=dict)
    message: str | None = None


ProgressCallback = Callable[[Progress], None]


def emit(callback: ProgressCallback | None, event: Progress) -> None:
    """Send ``event`` to ``callback`` if there is one."""
    if callback is not None:
        callback(event)
