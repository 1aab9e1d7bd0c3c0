"""Mask files have one writer at a time, and an automatic write yields to the artist's.

The studio saves painted masks while another command may hold the workspace's write lock
(``masks apply`` running for minutes, an ``extract --force``). The studio cannot wait for
that lock, so the rule is enforced on the mask files themselves: every mask write, the
studio's, ``masks apply``'s, ``masks import``'s and extract's, happens under one short
exclusive lock on ``.masks.lock`` in the workspace, and an automatic write first checks,
under that lock, that the file still holds the pixels the index recorded for it. A mask
the artist saved in between is therefore never overwritten, whatever the timing: the
automatic step skips it and the next edit scan records it as hand work.

The lock is an ``flock`` on a file: released by the kernel when its holder dies, held for
milliseconds (one batch of masks), and shared by threads and processes alike.
"""
from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Iterator
from pathlib import Path

try:
    import fcntl
except ImportError:                      # not on Windows: one process's threads are still serialised
    fcntl = None  # type: ignore[assignment]

LOCK_NAME = ".masks.lock"
_local = threading.Lock()


@contextlib.contextmanager
def mask_writes(root: Path) -> Iterator[None]:
    """Hold the workspace's mask-write lock for the block (blocking; holders keep it for milliseconds)."""
    path = Path(root) / LOCK_NAME
    if fcntl is None:
        with _local:
            yield
        return
    fd = os.open(path, os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0), 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)                     # closing the descriptor releases the lock
