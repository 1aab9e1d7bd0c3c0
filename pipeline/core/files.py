"""Files the tool writes and names it reads back: one atomic, durable write; safe joins.

Every file the tool writes (aligned faces, masks, workspace.json, checkpoints, models,
reports, previews) goes through :func:`write_atomic`: a temp file in the same folder,
flushed to disk, renamed over the target, and the folder flushed, so neither a kill nor
a power cut leaves half a file where a whole one was.

Names read back from the index or from workspace.json go through :func:`inside`, so a
tampered or damaged index can never make the tool read, overwrite or delete a file
outside the folder the name belongs to.
"""
from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

from pipeline.core.errors import UserError

Writer = Callable[[BinaryIO], object]


def temp_name(path: Path) -> Path:
    """Where ``write_atomic`` stages ``path``: hidden, in the same folder, tagged with our pid."""
    return path.with_name(f".{path.name}.{os.getpid()}.tmp")


def write_atomic(path: Path, data: bytes | Writer) -> None:
    """Write ``data`` (bytes, or a function that writes to a binary file) to ``path`` atomically."""
    path = Path(path)
    tmp = temp_name(path)
    try:
        with open(tmp, "wb") as fh:
            if isinstance(data, (bytes, bytearray, memoryview)):
                fh.write(data)
            else:
                data(fh)
        commit_file(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def commit_file(tmp: Path, path: Path) -> None:
    """Flush a finished temp file to disk and rename it over ``path`` (also for files ffmpeg wrote)."""
    fd = os.open(tmp, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    sync_folder(Path(path).parent)


def sync_folder(folder: Path) -> None:
    """Flush a folder's entries (a rename is durable only once its folder is)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass            # some file systems refuse fsync on folders; the rename still happened
    finally:
        os.close(fd)


def remove_quietly(path: Path) -> None:
    try:
        os.remove(path)
    except FileNotFoundError:
        pass


def inside(folder: Path, name: str, what: str, fix: str) -> Path:
    """``folder / name`` when it stays inside ``folder`` (after links); else a UserError.

    ``what`` says where the name came from (e.g. "faces.sqlite row 12 (aligned_file)"),
    so the message points at the record to fix; ``fix`` says what to do about it.
    """
    base = Path(folder).resolve()
    if not isinstance(name, str) or not name or "\x00" in name or name in (".", ".."):
        raise UserError(f"{what}: {name!r} is not a file name; {fix}")
    if (base / name).resolve().parent != base:
        raise UserError(f"{what}: {name!r} points outside {base}; {fix}")
    return base / name


def pid_alive(pid: int) -> bool:
    """Whether a process with this id runs on this machine (ours or another user's)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
