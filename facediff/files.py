"""Writing a file so that a crash never leaves a torn one: write it beside, then rename.

Every file facediff writes in place of an older one (configs, manifests, reports,
weights, PNGs) goes through :func:`atomic_path`; readers see the old file or the new
one, never half of either, and a failed or interrupted write leaves no temporary file.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import re
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NoReturn

TMP_SUFFIX = ".tmp"

#: The largest JSON file facediff reads (manifests of 100,000 images are ~30 MiB).
MAX_JSON_BYTES = 256 << 20


def read_text_bounded(path: Path, limit: int = MAX_JSON_BYTES) -> str:
    """The text of a regular file of at most ``limit`` bytes. A FIFO, a device such as
    ``/dev/zero`` or an oversized file raises :class:`OSError` instead of blocking or
    filling memory."""
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0)
    fd = os.open(path, flags)
    mode = os.fstat(fd).st_mode
    if not stat.S_ISREG(mode):  # before fdopen, which names a folder by its descriptor
        os.close(fd)
        why = "is a folder, not a file" if stat.S_ISDIR(mode) else "not a regular file"
        raise OSError(errno.EINVAL, why, str(path))
    with os.fdopen(fd, "rb") as f:
        data = f.read(limit + 1)
    if len(data) > limit:
        raise OSError(errno.EFBIG, f"larger than {limit} bytes", str(path))
    return data.decode("utf-8")


def failure_reason(e: Exception) -> str:
    """Why reading failed, for a message that already names the file: an OSError's
    text without its ``[Errno N]`` and file name (``is a folder, not a file``)."""
    return (e.strerror or str(e)) if isinstance(e, OSError) else str(e)


def tmp_path(path: Path) -> Path:
    """Where :func:`atomic_path` writes ``path`` before renaming it."""
    return path.with_name(path.name + TMP_SUFFIX)


#: How a Rust library (safetensors) reports the OS error under a failed write.
_WRAPPED_OS_ERROR = re.compile(r"\(os error (\d+)\)")


def naming(e: BaseException, path: Path | str, *written: Path | str) -> BaseException:
    """The error to raise for ``e``, a failed write of ``path`` (through the temporary
    files ``written``): an :class:`OSError` naming ``path`` where ``e`` names no file or
    only a temporary one (a full disk names none), or where ``e`` wraps an OS error
    (``SafetensorError: ... No space left on device (os error 28)``); else ``e``. The
    one-line message then says which file could not be written."""
    if isinstance(e, OSError):
        if e.filename is not None and str(e.filename) not in {str(w) for w in written}:
            return e
        return type(e)(e.errno, e.strerror or str(e), str(path))
    found = _WRAPPED_OS_ERROR.search(str(e))
    if found:
        code = int(found.group(1))
        return OSError(code, os.strerror(code), str(path))
    return e


def raise_naming(e: BaseException, path: Path | str, *written: Path | str) -> NoReturn:
    """Raise :func:`naming`'s error for ``e`` (chained to ``e``, or ``e`` itself)."""
    named = naming(e, path, *written)
    if named is e:
        raise e
    raise named from e


@contextlib.contextmanager
def atomic_path(path: Path, *, fsync: bool = False) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; once the block has written it, rename it
    onto ``path`` (``fsync`` first flushes it to disk)."""
    path = Path(path)
    tmp = tmp_path(path)
    try:
        yield tmp
        if fsync:
            with open(tmp, "rb") as f:
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as e:  # a full disk or Ctrl-C: leave no temporary file behind
        tmp.unlink(missing_ok=True)
        raise_naming(e, path, tmp)


def save_image_atomic(image: Any, path: Path, image_format: str = "PNG") -> None:
    """Save a PIL image through :func:`atomic_path`: never half-written, and a link at
    ``path`` is replaced, never written through. The temporary name has no image
    extension, hence ``image_format``."""
    with atomic_path(path) as tmp:
        image.save(tmp, format=image_format)


def save_image_new(image: Any, path: Path, image_format: str = "PNG") -> None:
    """Save a PIL image at ``path`` only if nothing is there, never half-written: written
    beside under a name of this process's own, then hard-linked into place. A file that
    appeared at ``path`` meanwhile (another process) raises :class:`FileExistsError` and
    is left as it is, where a rename would replace it."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}{TMP_SUFFIX}")
    try:
        image.save(tmp, format=image_format)
        try:
            os.link(tmp, path)
        except FileExistsError:
            raise
        except OSError:  # a file system without hard links: check, then rename
            if path.exists() or path.is_symlink():
                raise FileExistsError(errno.EEXIST, "already exists", str(path)) from None
            os.replace(tmp, path)
    except FileExistsError:
        raise
    except OSError as e:  # a full disk: name the file
        raise_naming(e, path, tmp)
    finally:
        tmp.unlink(missing_ok=True)


def write_text_atomic(path: Path, text: str, *, fsync: bool = False) -> None:
    with atomic_path(path, fsync=fsync) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_json_atomic(path: Path, data: Any) -> None:
    """Write ``data`` as indented JSON, flushed to disk before the rename."""
    write_text_atomic(path, json.dumps(data, indent=2) + "\n", fsync=True)
