"""``pipeline.core.process.exit_quickly``: the process ends fast, and nothing its teardown did is lost."""
from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_exit_keeps_threads_exit_handlers_output_and_the_code(tmp_path):
    """A pool's pending job, a plain thread's late write, an exit handler and unflushed output all survive."""
    script = textwrap.dedent(f"""
        import atexit, sys, threading, time
        from concurrent.futures import ThreadPoolExecutor
        from pathlib import Path
        from pipeline.core.process import exit_quickly
        out = Path({str(tmp_path)!r})
        def late(name):
            time.sleep(0.3)
            (out / name).write_text("done")
        threading.Thread(target=late, args=("thread",)).start()
        ThreadPoolExecutor(1).submit(late, "pool")       # never shut down: the interpreter's hook joins it
        atexit.register(lambda: print("exit handler ran"))
        sys.stdout.write("x" * 100000 + "\\n")            # a block buffer's worth, not flushed
        exit_quickly(3)
    """)
    res = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert res.returncode == 3, res.stderr
    assert res.stdout.splitlines() == ["x" * 100000, "exit handler ran"]
    assert (tmp_path / "thread").read_text() == "done"
    assert (tmp_path / "pool").read_text() == "done"


def test_main_py_exits_with_the_commands_code():
    res = subprocess.run([sys.executable, "main.py", "info", "--workspace", "/nonexistent/ws"], cwd=ROOT,
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 2 and res.stderr.startswith("error: "), (res.returncode, res.stderr)
    ok = subprocess.run([sys.executable, "main.py", "--help"], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert ok.returncode == 0 and "extract" in ok.stdout


def test_a_wrapper_running_main_py_through_runpy_still_runs_its_own_code(tmp_path):
    """An audit or memory probe around main.py (runpy, then a ``finally`` of its own) is not cut short."""
    after = tmp_path / "after.txt"
    script = textwrap.dedent(f"""
        import runpy, sys
        sys.argv = ["main.py", "info", "--workspace", "/nonexistent/ws"]
        try:
            runpy.run_path("main.py", run_name="__main__")
        finally:
            open({str(after)!r}, "w").write("ran")
    """)
    res = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert res.returncode == 2, res.stderr
    assert after.read_text() == "ran"
