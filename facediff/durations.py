"""Human durations for options such as ``--time-budget``: ``90``, ``90s``, ``15m``, ``2h``,
``1h30m``, ``1.5h`` (a bare number is seconds)."""

from __future__ import annotations

import math
import re

from facediff.errors import UsageError

_UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_PART = re.compile(r"(\d+(?:\.\d+)?)([smhd])")


def parse_duration(text: str, what: str = "duration") -> float:
    """Seconds in ``text``; raises :class:`UsageError` (naming ``what``) for anything
    else, for zero and for infinity."""
    s = str(text).strip().lower().replace(" ", "")
    seconds: float | None = None
    if re.fullmatch(r"\d+(?:\.\d+)?", s):
        seconds = float(s)
    elif s and _PART.sub("", s) == "":
        seconds = sum(float(n) * _UNITS[u] for n, u in _PART.findall(s))
    if seconds is None or not math.isfinite(seconds) or seconds <= 0:
        raise UsageError(f"invalid {what} {text!r}: use seconds or e.g. 90s, 15m, 2h, 1h30m")
    return seconds


def seconds_since_process_start() -> float:
    """Wall time since this process started (Linux ``/proc``; 0.0 where unavailable), so a
    time budget given on the command line includes the interpreter's start-up and imports."""
    import os

    try:
        with open("/proc/self/stat", encoding="ascii") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        start_ticks = int(fields[19])  # field 22 (starttime), counted after "pid (comm)"
        with open("/proc/uptime", encoding="ascii") as f:
            uptime = float(f.read().split()[0])
        return max(0.0, uptime - start_ticks / os.sysconf("SC_CLK_TCK"))
    except (OSError, ValueError, IndexError):
        return 0.0
