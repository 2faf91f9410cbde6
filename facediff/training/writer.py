"""Periodic checkpoints written on a worker thread while training goes on.

Writing a checkpoint of ``base`` (1.2 GB: weights, EMA and the optimizer's moments) takes
seconds: serializing, hashing every file and syncing it to disk. A periodic checkpoint costs
the loop only a copy of its state into host memory (:func:`snapshot`); the write itself
runs on one worker thread (:class:`BackgroundWriter`), one write at a time, while the next
steps train. The files are written exactly as before
(:func:`facediff.checkpoint.save_checkpoint`: a temporary folder renamed once complete), so
a run killed mid-write resumes from the checkpoint before it. The loop takes a write's
outcome at the next step after it ends: a failed write stops training there with its
one-line error. The final checkpoint of a run is written in the foreground.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import torch


def snapshot(obj: Any) -> Any:
    """``obj`` (nested dicts, lists and tuples of tensors and plain values) with every
    tensor copied to host memory: what a checkpoint of this step holds, however the live
    tensors change afterwards."""
    if isinstance(obj, torch.Tensor):
        return obj.detach().to("cpu", copy=True)
    if isinstance(obj, dict):
        return {k: snapshot(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(snapshot(v) for v in obj)
    return obj


class BackgroundWriter:
    """Runs one write at a time on a worker thread; :meth:`wait` returns its result or
    raises its exception in the caller's thread.

    The thread is not a daemon: a process that ends while a write is in flight lets it
    finish (the checkpoint it writes is complete or absent, never half-written)."""

    def __init__(self) -> None:
        self._thread: threading.Thread | None = None
        self._ended = threading.Event()  # set by the worker when its write has ended
        self._outcome: tuple[Any, BaseException | None] = (None, None)

    @property
    def busy(self) -> bool:
        """Whether a write was submitted and its outcome not yet taken."""
        return self._thread is not None

    def done(self) -> bool:
        """Whether the write in flight has ended (its outcome is ready for :meth:`wait`)."""
        return self._thread is not None and self._ended.is_set()

    def submit(self, write: Callable[[], Any]) -> None:
        """Start ``write()`` on the worker thread; the previous write's outcome must have
        been taken (:meth:`wait`)."""
        if self._thread is not None:
            raise RuntimeError("a checkpoint write is still in flight; wait() for it first")

        def run() -> None:
            try:
                self._outcome = (write(), None)
            except BaseException as e:  # handed to the loop's thread by wait()
                self._outcome = (None, e)
            finally:
                self._ended.set()

        self._outcome = (None, None)
        self._ended.clear()
        self._thread = threading.Thread(target=run, name="facediff-checkpoint-writer")
        self._thread.start()

    def wait(self) -> Any:
        """Wait for the write in flight, if any: its result (None when there was none),
        or its exception, raised here."""
        if self._thread is None:
            return None
        # Wait on an event, not in Thread.join(): a Ctrl-C that interrupts join() marks the
        # still-running thread as stopped (CPython before 3.13), and the interpreter would
        # then exit under it, leaving its temporary folder half-written.
        self._ended.wait()
        self._thread.join()
        (result, error), self._thread = self._outcome, None
        self._outcome = (None, None)
        if error is not None:
            raise error
        return result
