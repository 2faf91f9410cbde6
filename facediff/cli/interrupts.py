"""Ctrl-C during a module import waits until the import is done.

A ``KeyboardInterrupt`` raised in the middle of ``import torch`` (numpy's C extension,
torch's own start-up) leaves half-initialised modules behind: the process then failed
with a traceback (``ImportError: cannot load module more than once per process``,
``RecursionError``) or, in about one try in three, lost the interrupt and trained on.
While :func:`deferred_during_imports` is active, a SIGINT that lands inside an import is
held, and raised as ``KeyboardInterrupt`` within a few milliseconds of the import's
return (a timer checks), or by :func:`raise_held` just before a command installs its
own SIGINT handler (``train``'s stop-after-this-step), which then replaces this one.
Outside imports, Ctrl-C behaves as Python's default handler does.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator
from types import FrameType

#: How often a held interrupt checks whether the import has returned.
RETRY_S = 0.005

_held = False


def inside_import(frame: FrameType | None) -> bool:
    """Whether ``frame`` (the frame a signal interrupted) runs inside a module import."""
    while frame is not None:
        if frame.f_code.co_filename.startswith("<frozen importlib"):
            return True
        frame = frame.f_back
    return False


def _on_sigint(signum: int, frame: FrameType | None) -> None:
    global _held
    if not inside_import(frame):
        raise KeyboardInterrupt
    _held = True
    signal.setitimer(signal.ITIMER_REAL, RETRY_S)


def _on_alarm(signum: int, frame: FrameType | None) -> None:
    global _held
    if not _held:
        return
    if inside_import(frame):
        signal.setitimer(signal.ITIMER_REAL, RETRY_S)
        return
    _held = False
    handler = signal.getsignal(signal.SIGINT)
    if callable(handler) and handler is not _on_sigint:
        handler(signal.SIGINT, frame)  # installed since the Ctrl-C (see raise_held)
        return
    raise KeyboardInterrupt


def raise_held() -> None:
    """Raise the ``KeyboardInterrupt`` of a Ctrl-C still held for an import. A command
    calls this just before it installs a SIGINT handler of its own (``train``), so that
    a Ctrl-C from before ends it as any early Ctrl-C does."""
    global _held
    if _held:
        _held = False
        signal.setitimer(signal.ITIMER_REAL, 0)
        raise KeyboardInterrupt


@contextlib.contextmanager
def deferred_during_imports() -> Iterator[None]:
    """Hold a Ctrl-C that lands inside an import until the import is done (main thread,
    with Python's default SIGINT handler in place and SIGALRM free; elsewhere nothing
    changes)."""
    global _held
    if (
        not hasattr(signal, "setitimer")
        or threading.current_thread() is not threading.main_thread()
        or signal.getsignal(signal.SIGINT) is not signal.default_int_handler
        or signal.getsignal(signal.SIGALRM) != signal.SIG_DFL
    ):
        yield
        return
    _held = False
    signal.signal(signal.SIGALRM, _on_alarm)
    signal.signal(signal.SIGINT, _on_sigint)
    try:
        yield
        raise_held()  # not lost when the block ends before the timer fires
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        signal.signal(signal.SIGALRM, signal.SIG_DFL)
        _held = False
