"""One writer at a time per workspace: a lock file naming the command that holds it.

Two commands writing one workspace (an extract and a train, two extracts) would
interleave their index writes and model files. A writer takes ``.lock`` in the
workspace folder; a second writer is refused with one line saying which command holds
it. The lock re-enters within a process (train holds it for the whole run while its
data loading opens the workspace for writing again).

Who holds it is decided by an ``flock`` on the file, which the kernel releases when its
holder dies: a lock left by a killed command is free at once, and two commands that find
the same stale lock cannot both take it (judging "stale" and taking over are one step
under the flock; nobody ever deletes a lock file another process may have just taken).
The file's text (pid, host, command, start) is for the message, and keeps the refusal
of a lock written by a command on another machine or by an older version of this tool.
"""
from __future__ import annotations

import contextlib
import json
import os
import socket
import threading
import time
from pathlib import Path

try:
    import fcntl
except ImportError:                        # not on Windows: the pid in the file decides alone
    fcntl = None  # type: ignore[assignment]

from pipeline.core.errors import UserError
from pipeline.core.files import pid_alive, remove_quietly

LOCK_NAME = ".lock"

_held: dict[Path, tuple[int, int]] = {}   # lock path -> (holders in this process, the flocked descriptor)
_guard = threading.Lock()


def _read(path: Path) -> dict | None:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _read_holder(path: Path) -> dict | None:
    """The lock's text as its holder wrote it: a holder that has just taken it may still be writing it."""
    for _ in range(25):
        info = _read(path)
        if info is not None:
            return info
        time.sleep(0.02)
    return None


def _stale(info: dict, path: Path) -> bool:
    """Whether the holder a readable lock names is gone (only decidable for a holder on this machine).

    Called under the flock: an empty or unreadable lock file is taken without asking.
    """
    if info.get("host") != socket.gethostname():
        return False
    pid = info.get("pid")
    return not isinstance(pid, int) or pid == os.getpid() or not pid_alive(pid)


class WorkspaceLock:
    """Hold the workspace's write lock; ``acquire`` raises UserError when another command holds it."""

    def __init__(self, root: Path, command: str) -> None:
        self.path = Path(root).absolute() / LOCK_NAME
        self.command = command
        self.held = False

    def acquire(self) -> "WorkspaceLock":
        if self.held:
            return self
        with _guard:
            if self.path in _held:
                count, fd = _held[self.path]
                _held[self.path] = (count + 1, fd)
                self.held = True
                return self
            for _ in range(20):
                taken = self._try_take()
                if taken is not None:
                    _held[self.path] = (1, taken)
                    self.held = True
                    return self
        raise UserError(self._busy_message(_read(self.path)))

    def _try_take(self) -> int | None:
        """The lock's descriptor, flocked and naming us; None to try again (the file was replaced meanwhile).

        UserError when a live command holds it.
        """
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0), 0o644)
        try:
            if fcntl is not None:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    raise UserError(self._busy_message(_read_holder(self.path))) from None
            try:                           # still the file at the path? (a holder removes it on release)
                current = os.stat(self.path, follow_symlinks=False).st_ino
            except FileNotFoundError:
                current = -1
            if current != os.fstat(fd).st_ino:
                os.close(fd)
                return None
            info = _read(self.path)
            if info is not None and not _stale(info, self.path):
                # no flock, yet a live process on this machine (an older version) or another host named
                raise UserError(self._busy_message(info))
            mine = {"pid": os.getpid(), "host": socket.gethostname(), "command": self.command,
                    "started": time.strftime("%Y-%m-%d %H:%M:%S")}
            data = json.dumps(mine).encode()
            os.pwrite(fd, data, 0)         # never empty in between (a refused writer reads it for its message)
            os.ftruncate(fd, len(data))
            os.fsync(fd)
            return fd
        except BaseException:
            with contextlib.suppress(OSError):
                os.close(fd)
            raise

    def _busy_message(self, info: dict | None) -> str:
        root = self.path.parent
        if info is None:
            return (f"workspace {root} is locked by another command ({self.path} is unreadable); wait for it, or "
                    f"delete {self.path} if no command is running")
        where = "" if info.get("host") == socket.gethostname() else f" on {info.get('host')}"
        return (f"workspace {root} is being written by '{info.get('command')}' (pid {info.get('pid')}{where}, since "
                f"{info.get('started')}); wait until it ends, or stop it, then run this again")

    def release(self) -> None:
        if not self.held:
            return
        with _guard:
            count, fd = _held.get(self.path, (0, -1))
            if count <= 1:
                _held.pop(self.path, None)
                # remove while still holding the flock: a waiter that opened this file sees it was replaced
                info = _read(self.path)
                if info is not None and info.get("pid") == os.getpid():
                    remove_quietly(self.path)
                with contextlib.suppress(OSError):
                    os.close(fd)
            else:
                _held[self.path] = (count - 1, fd)
        self.held = False

    def __enter__(self) -> "WorkspaceLock":
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()
