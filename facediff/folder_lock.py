"""One writer per output folder: a second facediff process writing the same folder is
refused at once instead of interleaving its files with the first one's.

Two ``facediff train --out run`` started together both trained, wrote every
``metrics.jsonl`` line twice and then both died writing the same checkpoint; two
``sample`` runs into one folder could each pass the "already exists" check and
write the same PNGs, or drop each other's ``samples.json`` entry. Every command
that writes a folder therefore holds it (:func:`writing`) from before its
overwrite checks until it is done.

The lock is an advisory ``flock`` on the folder itself: nothing is written into
it, and the kernel drops it when the process ends, however it ends (a crash or
``kill -9`` leaves no stale lock). A folder the lock had to create is removed again
if the command leaves it empty. Where ``flock`` does not exist (Windows) or the
file system refuses it (some network mounts), the command runs unlocked, as
before. Holding a folder is re-entrant within a process; it locks that folder
only, not the folders under it.
"""

from __future__ import annotations

import contextlib
import errno
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from facediff.errors import FacediffError

try:
    import fcntl
except ImportError:  # Windows: no flock; commands run unlocked
    fcntl = None  # type: ignore[assignment]

#: Folders this process holds: (device, inode) → how many holders.
_held: dict[tuple[int, int], int] = {}


class FolderBusy(FacediffError):
    """Another process is writing the folder."""


def _created_folders(folder: Path) -> list[Path] | None:
    """Make ``folder`` (and missing parents); the folders made, deepest first. None when
    it cannot be made (a file in the way, no permission): the caller's own checks then
    report that, as they did without a lock."""
    missing = []
    for p in (folder, *folder.parents):
        if p.exists() or p.is_symlink():
            break
        missing.append(p)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError:
        return None
    return missing


def _holder(inode: int) -> str:
    """``pid N: its command line`` of the process holding a flock on ``inode`` (Linux's
    ``/proc/locks``), or ``""`` when that cannot be told."""
    try:
        with open("/proc/locks", encoding="ascii", errors="replace") as f:
            lines = f.read().splitlines()
        pids = {
            int(parts[4])
            for parts in (line.split() for line in lines)
            if len(parts) > 5 and parts[1] == "FLOCK" and parts[5].rsplit(":", 1)[-1] == str(inode)
        }
        if len(pids) != 1:
            return ""
        pid = pids.pop()
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            args = [a.decode(errors="replace") for a in f.read().split(b"\0") if a]
    except (OSError, ValueError, IndexError):
        return ""
    command = " ".join(_command(args).split())  # one line, whatever the arguments hold
    return f"pid {pid}: {command[:160]}" if command else f"pid {pid}"


def _command(args: list[str]) -> str:
    """A process's arguments as the user typed them: ``facediff train …`` rather than
    ``/usr/bin/python3 /usr/local/bin/facediff train …`` or ``python -m facediff …``."""
    for i, a in enumerate(args[:3]):
        if Path(a).name == "facediff":
            return " ".join(["facediff", *args[i + 1 :]])
    return " ".join([Path(args[0]).name, *args[1:]]) if args else ""


def _try_lock(fd: int) -> bool | None:
    """True: locked; False: another process holds it; None: locking is not available."""
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    except OSError as e:  # ENOLCK, EOPNOTSUPP…: a file system without flock
        return False if e.errno in (errno.EAGAIN, errno.EACCES) else None
    return True


@contextlib.contextmanager
def writing(
    folder: Path,
    option: str = "--out",
    wait_s: float = 0.0,
    waiting: Callable[[str], None] | None = None,
) -> Iterator[None]:
    """Hold ``folder`` (made if missing) while the block writes it; another process
    holding it raises :class:`FolderBusy`, naming ``option``, after waiting up to
    ``wait_s`` seconds for it (0: refuse at once; ``math.inf``: until it is free).
    ``waiting`` is called once, with the holder (``pid N: command``), when it waits."""
    folder = Path(folder)
    opened = _open_locked(folder, option, wait_s, waiting) if fcntl is not None else None
    if opened is None:  # no flock here, or no folder: run unlocked
        yield
        return
    fd, key, created = opened
    try:
        yield
    finally:
        _held[key] -= 1
        if not _held[key]:
            del _held[key]
            for p in created:  # still holding it: nobody else writes into it now
                with contextlib.suppress(OSError):
                    p.rmdir()  # only an empty folder goes
        os.close(fd)  # releases the lock


def _open_locked(
    folder: Path, option: str, wait_s: float, waiting: Callable[[str], None] | None
) -> tuple[int, tuple[int, int], list[Path]] | None:
    """The folder's descriptor, locked (or held already by this process), its key and
    the folders made for it; None where it cannot be locked."""
    for _ in range(3):  # the folder was removed (and made again) while we locked it
        created = _created_folders(folder)
        if created is None:
            return None
        try:
            fd = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
        except OSError:
            return None
        st = os.fstat(fd)
        key = (st.st_dev, st.st_ino)
        if key in _held:
            _held[key] += 1
            return fd, key, created
        try:
            locked = _acquire(fd, folder, option, wait_s, st.st_ino, waiting)
        except BaseException:
            os.close(fd)
            raise
        if not locked:
            os.close(fd)
            return None
        try:
            same = os.stat(folder).st_ino == st.st_ino
        except OSError:
            same = False
        if same:
            _held[key] = 1
            return fd, key, created
        os.close(fd)  # its last holder removed it as we locked it: lock the new one
    return None


def _acquire(
    fd: int,
    folder: Path,
    option: str,
    wait_s: float,
    inode: int,
    waiting: Callable[[str], None] | None,
) -> bool:
    """Lock ``fd``: True once locked, False where locking is not available."""
    deadline = time.monotonic() + wait_s
    told = False
    while True:
        locked = _try_lock(fd)
        if locked is not False:
            return bool(locked)
        if not told and waiting is not None and wait_s > 0:
            waiting(_holder(inode) or "another process")
            told = True
        if time.monotonic() >= deadline:
            holder = _holder(inode)
            raise FolderBusy(
                f"{folder} is in use: another facediff process{f' ({holder})' if holder else ''}"
                f" is writing there; wait for it to finish, or choose another {option}"
            )
        time.sleep(0.05)
