"""How much memory this process can still take: the kernel's ``MemAvailable`` plus free
swap (``/proc/meminfo``), less where a cgroup v2 limit leaves less. Where that cannot be
told (not Linux), None: callers then check nothing. Standard library only."""

from __future__ import annotations

from pathlib import Path

GIB = 1 << 30


def _meminfo() -> dict[str, int]:
    """``/proc/meminfo``'s fields in bytes, read once (empty where there is none)."""
    fields: dict[str, int] = {}
    try:
        for line in Path("/proc/meminfo").read_text(encoding="ascii").splitlines():
            name, _, rest = line.partition(":")
            if value := rest.split():
                fields[name] = int(value[0]) * 1024
    except (OSError, ValueError):
        return {}
    return fields


def _cgroup_room() -> int | None:
    """What a cgroup v2 memory limit leaves this process, or None (no limit)."""
    root = Path("/sys/fs/cgroup")
    try:
        limit = (root / "memory.max").read_text(encoding="ascii").strip()
        used = int((root / "memory.current").read_text(encoding="ascii").strip())
    except (OSError, ValueError):
        return None
    return None if limit == "max" else max(0, int(limit) - used)


def available_bytes() -> int | None:
    """The memory this process can still take, or None where that cannot be told."""
    info = _meminfo()
    if "MemAvailable" not in info:
        return None
    available = info["MemAvailable"] + info.get("SwapFree", 0)
    room = _cgroup_room()
    return available if room is None else min(available, room)


def format_size(n: float) -> str:
    """``1.2 GiB``, ``18 MiB`` under a GiB, ``36 KiB`` under a MiB."""
    if n >= GIB:
        return f"{n / GIB:.1f} GiB"
    return f"{n / 2**20:.0f} MiB" if n >= 2**20 else f"{n / 1024:.0f} KiB"
