"""The Typer application and its error handling.

Bad input never shows a traceback: usage errors and :class:`FacediffError` become
one line on stderr (``facediff: error: ...``) and a non-zero exit status:

- 2: a usage error (unknown option, invalid option value or argument: click's
  ``UsageError`` and facediff's :class:`~facediff.errors.UsageError`);
- 1: a runtime failure (missing or unreadable files, bad data, a diverged run …);
- 130: interrupted (Ctrl-C / SIGTERM; `train` saves a checkpoint first).

This module imports only typer and facediff's light modules: torch, diffusers and rich
load inside the commands, so ``facediff --help`` and ``--version`` start quickly.
"""

from __future__ import annotations

import sys

import typer
from typer.core import TyperGroup

from facediff import __version__
from facediff.errors import ConfigError, FacediffError, UsageError
from facediff.imports import lean_start

EXIT_USAGE = 2
EXIT_ERROR = 1
EXIT_INTERRUPTED = 130


# Typer may vendor click (0.29+) or use the real one: take its classes from its own errors.
_ClickException = next(c for c in typer.BadParameter.__mro__ if c.__name__ == "ClickException")
_UsageError = next(c for c in typer.BadParameter.__mro__ if c.__name__ == "UsageError")


def fail(message: str, code: int = EXIT_ERROR) -> None:
    """Print a one-line error and exit."""
    print(f"facediff: error: {message}", file=sys.stderr, flush=True)
    sys.exit(code)


def _os_error_message(e: OSError) -> str:
    name = f": {e.filename}" if getattr(e, "filename", None) else ""
    return f"{e.strerror or e}{name}"


#: Config fields whose option is not ``--<field-with-dashes>``.
_OPTION_NAMES = {
    "n": "-n",
    "per_group": "-n",
    "use_ema": "--no-ema",
    "checkpoint_step": "--checkpoint",
}


def option_name(field: str) -> str:
    """The command-line option that sets config field ``field``."""
    return _OPTION_NAMES.get(field, "--" + field.replace("_", "-"))


def _interrupted(e: KeyboardInterrupt) -> str:
    return str(e) or "interrupted"


def _is_oom(e: BaseException) -> bool:
    text = str(e).lower()
    return type(e).__name__ == "OutOfMemoryError" or any(
        s in text for s in ("out of memory", "can't allocate memory", "cannot allocate memory")
    )


def _oom_message(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    detail = f" ({text[0][:200]})" if text and text[0] else ""
    return (
        f"out of memory{detail}: try a smaller --batch-size (or -n); "
        "checkpoints and files already written are intact"
    )


class _Interrupted(Exception):
    """Ctrl-C inside a command, carried past typer (which would turn it into a silent 130)."""


class FacediffGroup(TyperGroup):
    """A command group whose errors are single lines, not tracebacks or panels."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except KeyboardInterrupt as e:
            raise _Interrupted(_interrupted(e)) from None

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra):
        try:
            rv = super().main(
                args=args,
                prog_name=prog_name or "facediff",
                complete_var=complete_var,
                standalone_mode=False,
                **extra,
            )
        except typer.Exit as e:
            sys.exit(e.exit_code)
        except _Interrupted as e:
            fail(str(e), EXIT_INTERRUPTED)
        except typer.Abort:
            fail("interrupted", EXIT_INTERRUPTED)
        except _ClickException as e:
            if type(e).__name__ == "NoArgsIsHelpError":  # bare `facediff`: show the help
                print(e.format_message())
                sys.exit(EXIT_USAGE)
            hint = ""
            ctx = getattr(e, "ctx", None)
            if isinstance(e, _UsageError) and ctx is not None:
                hint = f" (see '{ctx.command_path} --help')"
            fail(e.format_message().replace("\n", " ") + hint, e.exit_code)
        except ConfigError as e:
            fail(e.naming(option_name), EXIT_USAGE)
        except UsageError as e:
            fail(str(e), EXIT_USAGE)
        except FacediffError as e:
            fail(str(e))
        except KeyboardInterrupt as e:
            fail(_interrupted(e), EXIT_INTERRUPTED)
        except OSError as e:
            fail(_os_error_message(e))
        except MemoryError as e:
            fail(_oom_message(e))
        except RuntimeError as e:  # torch.OutOfMemoryError (CUDA) and the CPU allocator's
            if not _is_oom(e):
                raise
            fail(_oom_message(e))
        if isinstance(rv, int) and rv:
            sys.exit(rv)
        sys.exit(0)


app = typer.Typer(
    name="facediff",
    cls=FacediffGroup,
    help="Class-conditional diffusion on folders of faces sorted by file-name prefix.",
    no_args_is_help=True,
    add_completion=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"facediff {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version and exit."
    ),
) -> None:
    """Train class-conditional diffusion models on faces and generate categories and mixes."""


def main() -> None:
    """Console-script entry point (``facediff`` and ``python -m facediff``)."""
    from facediff.cli.interrupts import deferred_during_imports

    with deferred_during_imports():  # Ctrl-C inside `import torch` waits for it to finish
        lean_start()  # a faster start: fewer of diffusers' imports (facediff.imports)
        app()
