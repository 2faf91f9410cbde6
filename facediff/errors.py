"""Errors a user can cause and fix: the CLI prints them as one line and exits non-zero."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


class FacediffError(Exception):
    """Bad input or a state the user must resolve (message is shown as-is, one line)."""


class UsageError(FacediffError):
    """An invalid option value or argument (the CLI exits with status 2, like click)."""


class ConfigError(UsageError):
    """An invalid config value. The message names the config fields (``batch size``);
    the CLI names its options instead, through :meth:`naming`."""

    def __init__(self, template: str, *fields: str) -> None:
        self.template, self.fields = template, fields
        super().__init__(self.naming(lambda name: name.replace("_", " ")))

    def naming(self, name: Callable[[str], str]) -> str:
        """The message with each field called ``name(field)``."""
        return self.template.format(*(name(f) for f in self.fields))


def _shown(value: Any) -> str:
    return repr(value).replace("{", "{{").replace("}", "}}")


def invalid(field: str, value: Any, why: str) -> ConfigError:
    """``invalid <field> <value>: <why>``."""
    return ConfigError(f"invalid {{}} {_shown(value)}: {why}", field)


def unknown(field: str, value: Any, choices: tuple[str, ...]) -> ConfigError:
    """``unknown <field> <value>; choose from <choices>``."""
    return ConfigError(f"unknown {{}} {_shown(value)}; choose from {', '.join(choices)}", field)


class DataError(FacediffError):
    """The prepared dataset is missing, empty, corrupt or from an incompatible version."""


class CheckpointError(FacediffError):
    """A checkpoint or run folder cannot be used (missing, corrupt, incompatible)."""


class TrainingDiverged(FacediffError):
    """The loss became NaN or infinite; the last good checkpoint is kept."""


def first_line(e: BaseException) -> str:
    """The first line of an exception's message (its OS reason when it has one)."""
    text = (getattr(e, "strerror", None) or str(e)).strip()
    return text.splitlines()[0] if text else type(e).__name__
