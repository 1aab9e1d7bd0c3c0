"""The index reader against tampered values: a seeded loop of hostile cells, one clear line or a clean read.

Every cell of ``faces.sqlite`` can be edited by anyone with a SQLite browser. Whatever is
written there (text where numbers belong, blobs of the wrong length, huge or negative
numbers, NULLs, paths that lead out), reading the workspace must either work or stop
with a ``UserError`` naming the row; never another exception, and never a read outside
the workspace.
"""
import random
import shutil
import sqlite3

import numpy as np
import pytest

from info.summary import InfoOptions, run_info
from pipeline.core.errors import UserError
from pipeline.workspace.store import Workspace
from tests.conftest import copy_v1_workspace, snapshot

VALUES = [None, "", "x", "../../outside.png", "/etc/passwd", "\x00", "a" * 5000, -1, 0, 2 ** 63 - 1, -(2 ** 63),
          1e308, float("nan"), float("inf"), 3.5, b"", b"\x00" * 7, b"\xff" * 1024, "[]", "{}", "[1, 2]", "null",
          "hand", "learned", "deleted", "dst", "src", "nope", np.float64(1.0).tobytes(), "1e999", "-0"]


@pytest.fixture(scope="module")
def current_ws(tmp_path_factory):
    """The version-1 test workspace brought to the current schema (a writer migrates on open)."""
    ws = copy_v1_workspace(tmp_path_factory.mktemp("fuzz"))
    Workspace(ws, write=True, command="test").close()
    return ws


def _read_everything(ws):
    run_info(InfoOptions(workspace=ws))
    with Workspace(ws) as w:
        for set_name in ("dst", "src"):
            rows = w.faces(set_name)
            w.scan_artist_edits(set_name, rows)
            for r in rows:
                w.aligned_path(r)
                w.mask_path(r)


def test_three_hundred_tampered_cells_give_a_clean_read_or_one_clear_error(current_ws, tmp_path):
    rng = random.Random(25)
    pristine = (current_ws / "faces.sqlite").read_bytes()
    con = sqlite3.connect(current_ws / "faces.sqlite")
    columns = [r[1] for r in con.execute("PRAGMA table_info(faces)") if r[1] != "id"]
    frame_columns = [r[1] for r in con.execute("PRAGMA table_info(frames)")]
    ids = [r[0] for r in con.execute("SELECT id FROM faces")]
    con.close()
    outside = tmp_path / "outside.png"
    outside.write_bytes(b"not the workspace's")
    before = snapshot(tmp_path)
    refused = read = 0
    for trial in range(300):
        work = tmp_path / "ws"
        if work.exists():
            shutil.rmtree(work)
        shutil.copytree(current_ws, work)
        (work / "faces.sqlite").write_bytes(pristine)
        con = sqlite3.connect(work / "faces.sqlite")
        con.isolation_level = None                     # each edit on its own: a refused one is skipped
        for _ in range(rng.randint(1, 3)):
            value = rng.choice(VALUES)
            try:
                if rng.random() < 0.8:
                    column = rng.choice(columns)
                    con.execute(f"UPDATE faces SET {column}=? WHERE id=?", (value, rng.choice(ids)))
                else:
                    column = rng.choice(frame_columns)
                    con.execute(f"UPDATE frames SET {column}=? WHERE rowid=(SELECT min(rowid) FROM frames)",
                                (value,))
            except sqlite3.IntegrityError:                # the schema's own constraints refuse it: fine
                pass
        con.close()
        try:
            _read_everything(work)
            read += 1
        except UserError as exc:
            assert "\n" not in str(exc), (trial, str(exc))
            refused += 1
        except Exception as exc:                       # noqa: BLE001 - the point of the test
            pytest.fail(f"trial {trial}: {type(exc).__name__}: {exc}")
    assert refused > 50 and read > 20                   # the loop did reach both outcomes
    assert outside.read_bytes() == b"not the workspace's"
    assert {k: v for k, v in snapshot(tmp_path).items() if not k.startswith("ws/")} == \
        {k: v for k, v in before.items() if not k.startswith("ws/")}
