"""One writer at a time per workspace: a lock file naming the command that holds it.

Two commands writing one workspace (an extract and a train, two extracts) would
interleave their index writes and model files. A writer takes ``.lock`` in the
workspace folder; a second writer is refused with one line saying which command holds
it. A lock whose process is gone (killed, crashed) is stale: it is removed and taken.
The lock is re-entrant within a process (train holds it for the whole run while its
data loading opens the workspace for writing again).
"""
from __future__ import annotations

import json
import os
import socket
import threading
import time
from pathlib import Path

from pipeline.core.errors import UserError
from pipeline.core.files import pid_alive, remove_quietly

LOCK_NAME = ".lock"

_held: dict[Path, int] = {}            # lock path -> how many holders in this process
_guard = threading.Lock()


def _read(path: Path) -> dict | None:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _stale(info: dict | None, path: Path) -> bool:
    """Whether the lock's holder is gone (only decidable for a holder on this machine)."""
    if info is None:            # unreadable: a writer killed while creating it (created via link, so rare)
        try:
            return time.time() - path.stat().st_mtime > 60
        except OSError:
            return True
    if info.get("host") != socket.gethostname():
        return False
    pid = info.get("pid")
    return not isinstance(pid, int) or not pid_alive(pid)


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
            if _held.get(self.path, 0) > 0:
                _held[self.path] += 1
                self.held = True
                return self
            for _ in range(3):
                if self._try_create():
                    _held[self.path] = 1
                    self.held = True
                    return self
                info = _read(self.path)
                if _stale(info, self.path):
                    remove_quietly(self.path)
                    continue
                raise UserError(self._busy_message(info))
        raise UserError(self._busy_message(_read(self.path)))

    def _try_create(self) -> bool:
        """Create the lock with its content in one step (write a temp file, hard-link it)."""
        info = {"pid": os.getpid(), "host": socket.gethostname(), "command": self.command,
                "started": time.strftime("%Y-%m-%d %H:%M:%S")}
        tmp = self.path.with_name(f"{LOCK_NAME}.{os.getpid()}.{threading.get_ident()}.tmp")
        tmp.write_text(json.dumps(info))
        try:
            os.link(tmp, self.path)
            return True
        except FileExistsError:
            return False
        finally:
            remove_quietly(tmp)

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
            count = _held.get(self.path, 0) - 1
            if count <= 0:
                _held.pop(self.path, None)
                info = _read(self.path)
                if info is not None and info.get("pid") == os.getpid():
                    remove_quietly(self.path)
            else:
                _held[self.path] = count
        self.held = False

    def __enter__(self) -> "WorkspaceLock":
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()
