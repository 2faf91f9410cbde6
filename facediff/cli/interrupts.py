"""Ctrl-C during a module import waits until the import is done.

A ``KeyboardInterrupt`` raised in the middle of ``import torch`` (numpy's C extension,
torch's own start-up) leaves half-initialised modules behind: the process then failed
with a traceback (``ImportError: cannot load module more than once per process``,
``RecursionError``) or, in about one try in three, lost the interrupt and trained on.
While :func:`deferred_during_imports` is active, a SIGINT that lands inside an import is
held: a trace function on the frame that started the import raises the
``KeyboardInterrupt`` there as soon as the import returns. Outside imports, Ctrl-C
behaves as Python's default handler does; a command that installs its own SIGINT
handler (``train``'s stop-after-this-step) replaces this one.
"""

from __future__ import annotations

import contextlib
import signal
import sys
import threading
from collections.abc import Iterator
from types import FrameType


def importer(frame: FrameType | None) -> FrameType | None:
    """The frame whose code started the outermost import ``frame`` runs in (None when
    ``frame`` runs outside any import)."""
    outermost = None
    while frame is not None:
        if frame.f_code.co_filename.startswith("<frozen importlib"):
            outermost = frame
        frame = frame.f_back
    return None if outermost is None else outermost.f_back


def _on_sigint(signum: int, frame: FrameType | None) -> None:
    caller = importer(frame)
    if caller is None:
        raise KeyboardInterrupt
    _interrupt_when_back_in(caller)


def _interrupt_when_back_in(caller: FrameType) -> None:
    """Raise ``KeyboardInterrupt`` in ``caller`` once its import has returned: at its next
    line, or in its own caller if the import was its last statement."""

    def local(frame: FrameType, event: str, arg: object):
        if frame is not caller:
            return local
        frame.f_trace = None
        if event == "return" and frame.f_back is not None:
            _interrupt_when_back_in(frame.f_back)
            return None
        sys.settrace(None)
        raise KeyboardInterrupt

    caller.f_trace_lines = True
    caller.f_trace = local
    sys.settrace(_no_new_frames)  # tracing on, so that caller.f_trace is called


def _no_new_frames(frame: FrameType, event: str, arg: object) -> None:
    return None


@contextlib.contextmanager
def deferred_during_imports() -> Iterator[None]:
    """Hold a Ctrl-C that lands inside an import until the import is done (main thread
    only, with Python's default SIGINT handler in place; elsewhere nothing changes)."""
    if (
        threading.current_thread() is not threading.main_thread()
        or signal.getsignal(signal.SIGINT) is not signal.default_int_handler
        or sys.gettrace() is not None  # a debugger or coverage: leave its tracing alone
    ):
        yield
        return
    signal.signal(signal.SIGINT, _on_sigint)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, signal.default_int_handler)
