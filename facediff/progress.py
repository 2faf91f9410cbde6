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


class BarProgress:
    """Progress bars for the Python API (notebooks and scripts): one tqdm bar per task.

    ``tqdm.auto`` draws a widget in Jupyter and a text bar elsewhere; messages are printed
    above the bars. Call :meth:`close` when done. Without tqdm installed it stays silent.
    """

    def __init__(self) -> None:
        try:
            from tqdm.auto import tqdm
        except ImportError:  # pragma: no cover - tqdm comes with huggingface_hub
            tqdm = None
        self._tqdm = tqdm
        self._bars: dict[str, object] = {}

    def __call__(self, event: Progress) -> None:
        if self._tqdm is None:
            return
        if event.message:
            self._tqdm.write(event.message)
        bar = self._bars.get(event.task)
        if bar is None:
            bar = self._bars[event.task] = self._tqdm(
                desc=event.task, total=event.total, leave=True, dynamic_ncols=True
            )
        if event.total != bar.total:
            bar.total = event.total
        bar.n = event.completed
        if event.info:
            bar.set_postfix(event.info, refresh=False)
        bar.refresh()

    def close(self) -> None:
        for bar in self._bars.values():
            bar.close()
        self._bars.clear()
