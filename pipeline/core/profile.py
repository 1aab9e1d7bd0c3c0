"""Where a stage's time goes: per-step time from any thread, summed over threads and as wall time.

Why both: extract and convert overlap their steps in threads (and in ffmpeg's processes),
so the sum over threads says what a step costs in CPU, and the wall time (the time at
least one thread was in the step, the union of its intervals) says how long the run
waited on it. A step that is costly summed but small in wall time is hidden behind
others; making it cheaper frees cores for them rather than shortening the run directly.

Recording is a list append per interval (thread-safe under the GIL), cheap enough to stay
on in every run: a 200-frame convert records a few thousand intervals.
"""
from __future__ import annotations

import os
import time
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


class StepTimes:
    """Intervals (perf_counter seconds) per named step, recorded from any thread."""

    def __init__(self) -> None:
        self._spans: defaultdict[str, list[tuple[float, float]]] = defaultdict(list)
        self._extra: defaultdict[str, float] = defaultdict(float)

    @contextmanager
    def step(self, name: str) -> Iterator[None]:
        """Time the block as one interval of ``name``."""
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self._spans[name].append((t0, time.perf_counter()))

    def add(self, name: str, start: float, end: float) -> None:
        """One interval of ``name`` measured by the caller (perf_counter seconds)."""
        self._spans[name].append((start, end))

    def add_cpu(self, name: str, seconds: float) -> None:
        """CPU seconds spent outside this process's threads (an ffmpeg child), counted in the sum only."""
        self._extra[name] += seconds

    def merge(self, other: StepTimes) -> None:
        """Take over ``other``'s intervals and CPU seconds (a helper object's own recorder)."""
        for name, spans in other._spans.items():
            self._spans[name].extend(spans)
        for name, seconds in other._extra.items():
            self._extra[name] += seconds

    def summed(self) -> dict[str, float]:
        """Seconds per step, summed over threads (plus child CPU seconds)."""
        out = {name: sum(b - a for a, b in spans) for name, spans in self._spans.items()}
        for name, seconds in self._extra.items():
            out[name] = out.get(name, 0.0) + seconds
        return out

    def wall(self) -> dict[str, float]:
        """Seconds per step during which at least one thread was in it (the union of its intervals)."""
        out = {}
        for name, spans in self._spans.items():
            total, end = 0.0, float("-inf")
            for a, b in sorted(spans):
                if b <= end:
                    continue
                total += b - max(a, end)
                end = b
            out[name] = total
        return out


def child_cpu_seconds(pid: int) -> float | None:
    """User + system CPU seconds of a running (or exited, not yet reaped) process, from /proc; None elsewhere.

    Why: the decoder and the encoder are ffmpeg processes, whose work no thread of ours sees.
    """
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text.rsplit(")", 1)[1].split()
    try:
        ticks = int(fields[11]) + int(fields[12])          # utime, stime (fields 14 and 15 of stat)
    except (IndexError, ValueError):
        return None
    return ticks / float(os.sysconf("SC_CLK_TCK"))


def cpu_at_exit(pid: int) -> float | None:
    """Wait for process ``pid`` to exit without reaping it, then its CPU seconds (None where not measurable).

    The process stays a zombie until its ``Popen.wait`` reaps it, so /proc still holds its
    final figures (a reaped process's would be gone).
    """
    if not hasattr(os, "waitid"):
        return None
    try:
        os.waitid(os.P_PID, pid, os.WEXITED | os.WNOWAIT)
    except (ChildProcessError, OSError):
        return None
    return child_cpu_seconds(pid)
