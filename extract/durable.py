"""New face files written at once and made durable in the background, before the index commits them.

Why: ``write_atomic`` flushes every file to disk before renaming it into place, and a
flush is an I/O wait of about 6 ms here. Extract writes two files a face from its main
thread, the thread that also feeds the frame pool: 12 ms of waiting a frame, a second and
a half of a 200-frame clip's run, while the cores idled. A file that did not exist before
loses nothing if a crash leaves it unflushed, as long as the index row naming it is not
committed first: the frame is then not done, and the next run writes it again. So new
files are written and renamed now (visible whole, never half written), flushed by a
background thread, and ``wait`` (called before every commit of the index) returns once
they and their folders are on disk. Files that replace existing ones keep
``write_atomic``: an interrupted overwrite must not damage a face the index already has.
"""
from __future__ import annotations

import os
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

from pipeline.core.files import DiskFullError, is_disk_full, remove_quietly, sync_folder, temp_name


def _flush(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class DeferredFlush:
    """Writes new files now; ``wait`` makes every one written since the last ``wait`` durable."""

    def __init__(self, threads: int = 2) -> None:
        self._pool = ThreadPoolExecutor(threads, thread_name_prefix="flush")
        self._pending: list[tuple[Path, Future]] = []
        self._folders: set[Path] = set()

    def write(self, path: Path, data: bytes) -> None:
        """``path`` (which must not exist yet) holds ``data`` when this returns; on disk after ``wait``."""
        path = Path(path)
        tmp = temp_name(path)
        try:
            with open(tmp, "wb") as fh:
                fh.write(data)
            os.replace(tmp, path)
        except Exception as exc:
            remove_quietly(tmp)
            if not is_disk_full(exc, path.parent):
                raise
            raise DiskFullError(path.parent, f"{path.name} was not written", path.name) from exc
        self._pending.append((path, self._pool.submit(_flush, path)))
        self._folders.add(path.parent)

    def wait(self) -> None:
        """Every file written so far, and its folder, flushed to disk (the error of a failed flush raised)."""
        pending, self._pending = self._pending, []
        folders, self._folders = self._folders, set()
        failed: BaseException | None = None
        for path, future in pending:
            try:
                future.result()
            except Exception as exc:   # noqa: BLE001 - the first is raised once every flush has ended
                if failed is None:
                    failed = DiskFullError(path.parent, f"{path.name} was not flushed", path.name) \
                        if is_disk_full(exc, path.parent) else exc
                    failed.__cause__ = exc
        if failed is not None:
            raise failed
        for folder in folders:
            sync_folder(folder)

    def close(self) -> None:
        """Stop the background thread (after ``wait``, or when the run failed and its files are dropped)."""
        self._pool.shutdown(wait=True)
