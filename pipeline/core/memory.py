"""How much memory this machine (or the container it runs in) has, without importing torch.

Read before a model is built, so a model too large for the machine is refused with one
line instead of growing until the kernel's OOM killer ends the process (a tampered or
mistyped width once took convert to 24 GB). ``/proc/meminfo`` gives MemTotal and
MemAvailable (what can be allocated without swapping); elsewhere ``os.sysconf``
gives the physical and the free pages. A cgroup memory limit (a container, a systemd
slice) lowers both: the OOM killer acts on it, not on the machine's total.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

MEMINFO = Path("/proc/meminfo")
#: (limit, usage) files of the cgroup this process runs in: v2, then v1.
CGROUP_LIMITS: tuple[tuple[Path, Path], ...] = (
    (Path("/sys/fs/cgroup/memory.max"), Path("/sys/fs/cgroup/memory.current")),
    (Path("/sys/fs/cgroup/memory/memory.limit_in_bytes"), Path("/sys/fs/cgroup/memory/memory.usage_in_bytes")),
)


@dataclass(frozen=True)
class Memory:
    """Bytes in all and bytes that can be allocated now."""

    total: int
    available: int


def _meminfo() -> dict[str, int]:
    """MemTotal, MemAvailable, ... in bytes; empty when the file cannot be read."""
    values: dict[str, int] = {}
    try:
        text = MEMINFO.read_text()
    except OSError:
        return values
    for line in text.splitlines():
        key, _, rest = line.partition(":")
        parts = rest.split()
        if parts and parts[0].isdigit():
            values[key.strip()] = int(parts[0]) * (1024 if parts[1:2] == ["kB"] else 1)
    return values


def _read_int(path: Path) -> int | None:
    try:
        text = path.read_text().strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None          # "max": no limit


def _sysconf(name: str) -> int | None:
    try:
        value = os.sysconf(name)
    except (ValueError, OSError, AttributeError):
        return None
    return value if value > 0 else None


def machine_memory() -> Memory:
    """What this process may use: /proc/meminfo (else sysconf), lowered to its cgroup's limit."""
    info = _meminfo()
    page = _sysconf("SC_PAGE_SIZE") or 4096
    total = info.get("MemTotal") or (_sysconf("SC_PHYS_PAGES") or 0) * page
    available = info.get("MemAvailable")
    if available is None:
        available = (_sysconf("SC_AVPHYS_PAGES") or 0) * page or total
    for limit_path, usage_path in CGROUP_LIMITS:
        limit = _read_int(limit_path)
        if limit is None or (total and limit >= total):    # v1 reports "no limit" as a huge number
            continue
        usage = _read_int(usage_path) or 0
        total, available = limit, min(available, max(0, limit - usage))
        break
    return Memory(total, min(available, total) if total else available)
