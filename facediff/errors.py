"""Errors a user can cause and fix: the CLI prints them as one line and exits non-zero."""

from __future__ import annotations


class FacediffError(Exception):
    """Bad input or a state the user must resolve (message is shown as-is, one line)."""


class UsageError(FacediffError):
    """An invalid option value or argument (the CLI exits with status 2, like click)."""


class DataError(FacediffError):
    """The prepared dataset is missing, empty, corrupt or from an incompatible version."""


class CheckpointError(FacediffError):
    """A checkpoint or run folder cannot be used (missing, corrupt, incompatible)."""


class TrainingDiverged(FacediffError):
    """The loss became NaN or infinite; the last good checkpoint is kept."""
