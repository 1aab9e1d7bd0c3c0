"""Files the tool writes and names it reads back: one atomic, durable write; safe joins.

Every file the tool writes (aligned faces, masks, workspace.json, checkpoints, models,
reports, previews) goes through :func:`write_atomic`: a temp file in the same folder,
flushed to disk, renamed over the target, and the folder flushed, so neither a kill nor
a power cut leaves half a file where a whole one was.

Names read back from the index or from workspace.json go through :func:`inside`, so a
tampered or damaged index can never make the tool read, overwrite or delete a file
outside the folder the name belongs to.

A full disk is its own error, :class:`DiskFullError`: it names the folder, the free
space and what the command kept, because the errors it arrives as say otherwise
(torch.save's "RuntimeError ... inline_container.cc", SQLite's "disk I/O error" that
reads like a damaged index). :func:`is_disk_full` recognises them.
"""
from __future__ import annotations

import errno
import os
import re
import shutil
import sqlite3
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import BinaryIO

from pipeline.core.errors import UserError

Writer = Callable[[BinaryIO], object]

#: errno values that mean the disk (or the user's quota on it) has no room left.
NO_SPACE = (errno.ENOSPC, errno.EDQUOT)
#: SQLite's primary result codes for "database or disk is full" and for an I/O error.
_SQLITE_FULL, _SQLITE_IOERR = 13, 10
#: With less free space than this, an I/O error while writing is taken for a full disk: SQLite
#: reports a full disk as "disk I/O error" when it cannot grow its WAL or shared-memory file.
LOW_SPACE = 16 << 20


def free_bytes(folder: Path) -> int | None:
    """Bytes an unprivileged writer may still use on the file system of ``folder`` (or of its
    nearest existing parent); None when the system will not say."""
    path = Path(folder)
    while not path.exists() and path != path.parent:
        path = path.parent
    try:
        return shutil.disk_usage(path).free
    except OSError:
        return None


def format_bytes(n: float) -> str:
    """'1 MB', '3.2 GB': sizes in messages (decimal units, as disk tools print them)."""
    for unit, size in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= size:
            value = n / size
            return f"{value:.1f} {unit}" if value < 10 and unit == "GB" else f"{value:.0f} {unit}"
    return f"{n:.0f} bytes"


def _chain(exc: BaseException) -> Iterator[BaseException]:
    """``exc`` and every exception it was raised from or while handling (torch.save keeps the file's
    OSError only as the context of its own RuntimeError)."""
    seen: set[int] = set()
    todo: list[BaseException] = [exc]
    while todo:
        e = todo.pop()
        if id(e) in seen:
            continue
        seen.add(id(e))
        yield e
        todo += [x for x in (e.__cause__, e.__context__) if x is not None]


def _io_failure(e: BaseException) -> bool:
    if isinstance(e, sqlite3.OperationalError):
        code = getattr(e, "sqlite_errorcode", None)
        return (code is not None and code & 0xFF == _SQLITE_IOERR) or "disk I/O error" in str(e)
    if isinstance(e, OSError):
        return e.errno == errno.EIO
    return isinstance(e, RuntimeError) and any(s in str(e) for s in ("inline_container", "file write failed"))


def is_disk_full(exc: BaseException, folder: Path | None = None) -> bool:
    """Whether ``exc`` (or what caused it) means no space was left: ENOSPC/EDQUOT, SQLite's SQLITE_FULL,
    or, given the ``folder`` written to, an I/O error there while it has less than ``LOW_SPACE`` free."""
    chain = list(_chain(exc))
    for e in chain:
        if isinstance(e, OSError) and e.errno in NO_SPACE:
            return True
        if isinstance(e, sqlite3.OperationalError) and (
                getattr(e, "sqlite_errorcode", None) == _SQLITE_FULL or "database or disk is full" in str(e)):
            return True
    if folder is not None and any(_io_failure(e) for e in chain):
        free = free_bytes(folder)
        return free is not None and free < LOW_SPACE
    return False


class DiskFullError(UserError):
    """No space left where the command writes: the folder, its free space, what was kept, what to do."""

    def __init__(self, folder: Path, kept: str, writing: str | None = None) -> None:
        self.folder, self.kept, self.writing = Path(folder), kept, writing
        free = free_bytes(self.folder)
        room = f" ({format_bytes(free)} free)" if free is not None else ""
        what = f" while writing {writing}" if writing else ""
        super().__init__(f"disk full: no space left in {self.folder}{room}{what}; {kept}; free some space there "
                         f"(or choose another folder) and run the command again", exit_code=1)

    def keeping(self, kept: str) -> DiskFullError:
        """The same error, saying what the command as a whole kept (a stage knows more than one write)."""
        err = DiskFullError(self.folder, kept, self.writing)
        err.__cause__ = self.__cause__
        return err


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
    except Exception as exc:
        if not is_disk_full(exc, path.parent):
            raise
        remove_quietly(tmp)             # before the free space is measured for the message
        raise DiskFullError(path.parent, f"{path.name} is as it was before this write", path.name) from exc
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


def confined(root: Path, path: Path, what: str) -> Path:
    """``path`` when it resolves (links followed) inside ``root``; else one line saying which link leads out.

    The one rule for a workspace's own files and folders: the tool writes and reads only
    inside the workspace, so a folder or file that is a link to somewhere else (another
    workspace's index, a system folder) is refused before anything is read or written.
    """
    base = Path(root).resolve()
    path = Path(path)
    target = path.resolve()
    if target != base and base not in target.parents:
        raise UserError(f"{what} {path} leads outside the workspace {base} (it resolves to {target}); this tool "
                        f"reads and writes only inside the workspace: replace the link with a real "
                        f"{'folder' if target.is_dir() else 'file'} and run again")
    return path


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


def frame_range_files(folder: Path, name: re.Pattern[str], start: int, end: int) -> list[tuple[int, int, Path]]:
    """(first, end, path) of the whole files in ``folder`` whose names ``name`` matches with two numbers (a range
    of frames) inside [start, end), sorted: the segments and pieces a cluster job leaves finished."""
    found: list[tuple[int, int, Path]] = []
    if folder.is_dir():
        for path in folder.iterdir():
            m = name.match(path.name)
            if m and path.is_file() and not path.is_symlink() and path.stat().st_size > 0:
                a, b = int(m.group(1)), int(m.group(2))
                if start <= a < b <= end:
                    found.append((a, b, path))
    return sorted(found)
