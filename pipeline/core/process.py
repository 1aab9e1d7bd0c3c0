"""Ending the command's process once its work is done, without the interpreter's slow teardown."""
from __future__ import annotations

import atexit
import os
import sys
import threading
from typing import NoReturn


def exit_quickly(code: int | None, wrapped: bool = False) -> NoReturn:
    """End the process with ``code``: threads joined, exit handlers run and output flushed, then gone.

    Why: with torch loaded, Python's own exit (every module freed, then torch's C++ state)
    took 0.3-0.5 s after the last frame was written: 5-7 % of a 200-frame convert, and half a
    second after every command that loads a model (issue 31). What that teardown does that
    matters happens here first, in the order the interpreter does it: non-daemon threads
    (thread pools included) joined, ``atexit`` handlers run (logging's flush, Ray's shutdown),
    stdout and stderr flushed. Where this Python lacks those hooks, or when ``wrapped`` (the
    command runs inside another program's code, whose ``finally`` blocks must still run), it
    exits as usual.
    """
    code = 0 if code is None else int(code)
    shutdown = getattr(threading, "_shutdown", None)
    run_exit_handlers = getattr(atexit, "_run_exitfuncs", None)
    if (wrapped or shutdown is None or run_exit_handlers is None
            or threading.current_thread() is not threading.main_thread()):
        sys.exit(code)
    shutdown()
    run_exit_handlers()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):     # closed, or a reader that went away
            pass
    os._exit(code)
