"""Ctrl-C and SIGTERM end a command in one line, even during a module import.

A ``KeyboardInterrupt`` raised in the middle of ``import torch`` (numpy's C extension,
torch's own start-up) leaves half-initialised modules behind: the process then failed
with a traceback (``ImportError: cannot load module more than once per process``,
``RecursionError``) or, in about one try in three, lost the interrupt and trained on.
While :func:`deferred_during_imports` is active, a SIGINT that lands inside an import is
held, and raised as ``KeyboardInterrupt`` within a few milliseconds of the import's
return (a timer checks), or by :func:`raise_held` just before a command installs its
own handlers (``train``'s stop-after-this-step), which then replace these. SIGTERM is
taken the same way, so that it ends every command as the exit-status table says (130,
``facediff: error: interrupted``) rather than killing the process mid-write. Outside
imports, both behave as Python's default Ctrl-C handler does.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
from collections.abc import Iterator
from types import FrameType

#: How often a held interrupt checks whether the import has returned.
RETRY_S = 0.005

#: The signal held for an import (SIGINT or SIGTERM), or None.
_held: int | None = None


def inside_import(frame: FrameType | None) -> bool:
    """Whether ``frame`` (the frame a signal interrupted) runs inside a module import."""
    while frame is not None:
        if frame.f_code.co_filename.startswith("<frozen importlib"):
            return True
        frame = frame.f_back
    return False


def _on_signal(signum: int, frame: FrameType | None) -> None:
    global _held
    if not inside_import(frame):
        raise KeyboardInterrupt
    _held = signum
    signal.setitimer(signal.ITIMER_REAL, RETRY_S)


def _on_alarm(signum: int, frame: FrameType | None) -> None:
    global _held
    held = _held
    if held is None:
        return
    if inside_import(frame):
        signal.setitimer(signal.ITIMER_REAL, RETRY_S)
        return
    _held = None
    handler = signal.getsignal(held)
    if callable(handler) and handler is not _on_signal:
        handler(held, frame)  # installed since the signal came (see raise_held)
        return
    raise KeyboardInterrupt


def raise_held() -> None:
    """Raise the ``KeyboardInterrupt`` of a Ctrl-C (or SIGTERM) still held for an import.
    A command calls this just before it installs signal handlers of its own (``train``),
    so that a signal from before ends it as any early Ctrl-C does."""
    global _held
    if _held is not None:
        _held = None
        signal.setitimer(signal.ITIMER_REAL, 0)
        raise KeyboardInterrupt


#: The signals handled, each with the handler it must have for this module to take it
#: over: Python's default for Ctrl-C, the default action (exit by the signal) for SIGTERM.
_TAKEN = ((signal.SIGINT, signal.default_int_handler), (signal.SIGTERM, signal.SIG_DFL))


def _defaults_in_child() -> None:
    """A forked child (prepare's decoder processes) starts with Python's own handlers,
    as before this module: its parent decides when the work stops."""
    global _held
    _held = None
    for s, default in _TAKEN:
        if signal.getsignal(s) is _on_signal:
            signal.signal(s, default)
    if signal.getsignal(signal.SIGALRM) is _on_alarm:
        signal.signal(signal.SIGALRM, signal.SIG_DFL)


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_defaults_in_child)


@contextlib.contextmanager
def deferred_during_imports() -> Iterator[None]:
    """Ctrl-C and SIGTERM raise ``KeyboardInterrupt`` (the command ends with exit 130),
    held while an import runs until it returns (main thread, SIGALRM free; elsewhere
    nothing changes)."""
    global _held
    taken = [s for s, default in _TAKEN if signal.getsignal(s) == default]
    if (
        not hasattr(signal, "setitimer")
        or threading.current_thread() is not threading.main_thread()
        or signal.getsignal(signal.SIGALRM) != signal.SIG_DFL
        or not taken
    ):
        yield
        return
    _held = None
    signal.signal(signal.SIGALRM, _on_alarm)
    previous = {s: signal.signal(s, _on_signal) for s in taken}
    try:
        yield
        raise_held()  # not lost when the block ends before the timer fires
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        for s, handler in previous.items():
            signal.signal(s, handler)
        signal.signal(signal.SIGALRM, signal.SIG_DFL)
        _held = None
