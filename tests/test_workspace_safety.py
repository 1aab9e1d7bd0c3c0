"""Hostile input to the workspace: names that lead outside it, a damaged or lost index, two writers.

Each case ends with one clear line and leaves the workspace (and everything outside it)
as it was, or, for a lost index, rebuilds it without losing the artist's work.
"""
import json
import os
import signal
import sqlite3
import subprocess
import sys

import cv2
import pytest

from tests.conftest import CLIP6, ROOT, clean_error, run_cli, snapshot

pytestmark = pytest.mark.slow


def _set_aligned_file(ws, frame, value, column="aligned_file"):
    con = sqlite3.connect(ws / "faces.sqlite")
    with con:
        con.execute(f"UPDATE faces SET {column}=? WHERE set_name='dst' AND frame_index=?", (value, frame))
    con.close()


@pytest.mark.parametrize("column", ["aligned_file", "mask_file"])
def test_a_name_in_the_index_never_reaches_outside_the_workspace(small_ws, tmp_path, column):
    victim = tmp_path / "victim.txt"
    victim.write_text("the artist's notes")
    # small_ws is tmp_path/small_ws: from data_dst/aligned/ three levels up is tmp_path
    _set_aligned_file(small_ws, 3, "../../../victim.txt", column)
    before = snapshot(small_ws)
    for args in (("extract", "--input", CLIP6, "--size", "128", "--force"), ("train", "--iterations", "1"),
                 ("convert",), ("info",)):
        res = run_cli(*args, "--workspace", small_ws)
        clean_error(res, "faces.sqlite row", column, "outside")
        assert victim.read_text() == "the artist's notes", args
        assert snapshot(small_ws) == before, args


def test_an_invalid_value_in_the_index_is_one_clear_line(small_ws):
    _set_aligned_file(small_ws, 2, "xseg", "mask_origin")     # an origin nothing writes
    before = snapshot(small_ws)
    for args in (("info",), ("convert",)):
        res = run_cli(*args, "--workspace", small_ws)
        clean_error(res, "faces.sqlite row", "invalid value", "'xseg'")
        assert snapshot(small_ws) == before, args


def test_a_symlink_in_a_set_folder_is_not_followed_out(small_ws, tmp_path):
    victim = tmp_path / "victim.png"
    victim.write_bytes(b"not yours")
    aligned = small_ws / "data_dst" / "aligned" / "000003_0.png"
    aligned.unlink()
    aligned.symlink_to(victim)
    res = run_cli("extract", "--input", CLIP6, "--size", "128", "--force", "--workspace", small_ws)
    clean_error(res, "faces.sqlite row", "aligned_file", "outside")
    assert victim.read_bytes() == b"not yours"


def test_a_damaged_index_is_one_clear_line(small_ws):
    index = small_ws / "faces.sqlite"
    index.write_bytes(index.read_bytes()[:3000])
    before = snapshot(small_ws)
    for args in (("info",), ("extract", "--input", CLIP6, "--size", "128"), ("train", "--iterations", "1"),
                 ("convert",), ("evaluate", "--video", CLIP6)):
        res = run_cli(*args, "--workspace", small_ws)
        clean_error(res, "faces.sqlite is damaged", "move it aside", "extract again")
        assert snapshot(small_ws) == before, args


def test_a_deleted_index_is_reported_then_rebuilt_with_the_artists_work(small_ws):
    masks, aligned = small_ws / "data_dst" / "masks", small_ws / "data_dst" / "aligned"
    painted = cv2.imread(str(masks / "000004_0.png"), cv2.IMREAD_GRAYSCALE)
    painted[:, :50] = 0
    cv2.imwrite(str(masks / "000004_0.png"), painted)
    (aligned / "000002_0.png").unlink()
    painted_bytes = (masks / "000004_0.png").read_bytes()
    (small_ws / "faces.sqlite").unlink()
    before = snapshot(small_ws)
    for args in (("info",), ("train", "--iterations", "1"), ("convert",)):
        res = run_cli(*args, "--workspace", small_ws)
        clean_error(res, "faces.sqlite is missing", "extract again")
        assert snapshot(small_ws) == before, args
    res = run_cli("extract", "--input", CLIP6, "--size", "128", "--workspace", small_ws)
    assert res.returncode == 0, res.stderr
    assert "building them again" in res.stderr
    assert (masks / "000004_0.png").read_bytes() == painted_bytes          # the painted mask is kept
    assert not (aligned / "000002_0.png").exists()                          # the deleted face stays deleted
    # the src set lost its rows too: the one line says so and how to get them back
    clean_error(run_cli("info", "--workspace", small_ws), "no faces of set(s) src", "extract again")
    photos = json.loads((small_ws / "workspace.json").read_text())["sets"]["src"]["input"]
    res = run_cli("extract", "--input", photos, "--size", "128", "--workspace", small_ws)
    assert res.returncode == 0, res.stderr
    res = run_cli("info", "--json", "--workspace", small_ws)
    sets = json.loads(res.stdout)["sets"]
    dst = sets["dst"]
    assert dst["dropped_by_reason"] == {"deleted": 1} and dst["masks"]["hand"] == 1 and dst["faces"] == 5
    assert sets["src"]["faces"] == 2


def _hold_lock(ws, command="train"):
    code = ("import sys, time; from pipeline.workspace.lock import WorkspaceLock; "
            f"WorkspaceLock(sys.argv[1], {command!r}).acquire(); print('held', flush=True); time.sleep(120)")
    proc = subprocess.Popen([sys.executable, "-c", code, str(ws)], cwd=ROOT, stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "held"
    return proc


def test_a_second_writer_is_refused_and_a_stale_lock_is_cleared(small_ws):
    holder = _hold_lock(small_ws)
    try:
        before = snapshot(small_ws)
        for args in (("extract", "--input", CLIP6, "--size", "128"), ("train", "--iterations", "1"),
                     ("migrate",)):
            res = run_cli(*args, "--workspace", small_ws)
            clean_error(res, "is being written by 'train'", f"pid {holder.pid}")
            assert snapshot(small_ws) == before, args
        # readers do not wait for the writer
        assert run_cli("info", "--workspace", small_ws).returncode == 0
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    assert (small_ws / ".lock").exists()        # a killed writer leaves its lock behind ...
    res = run_cli("extract", "--input", CLIP6, "--size", "128", "--workspace", small_ws)
    assert res.returncode == 0, res.stderr      # ... which the next writer sees is stale and takes
    assert not (small_ws / ".lock").exists()


def test_two_extracts_at_once_one_is_refused(small_ws):
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    procs = [subprocess.Popen([sys.executable, str(ROOT / "main.py"), "extract", "--input", str(CLIP6), "--size",
                               "128", "--force", "--workspace", str(small_ws)], cwd=ROOT, env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    results = [(p.wait(timeout=300), p.stderr.read()) for p in procs]
    codes = sorted(code for code, _ in results)
    assert codes[0] == 0 and codes[1] != 0, results
    err = next(text for code, text in results if code != 0)
    assert "is being written by 'extract'" in err and "Traceback" not in err and "locked" not in err.lower()


def test_a_stale_temp_video_of_a_killed_convert_is_removed(small_ws):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    stale = small_ws / f".result.{dead.pid}.tmp.mp4"
    stale.write_bytes(b"half a video")
    alive = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        live = small_ws / f".result.{alive.pid}.tmp.mp4"
        live.write_bytes(b"another convert at work")
        res = run_cli("convert", "--workspace", small_ws)
        assert res.returncode == 0, res.stderr
        assert not stale.exists() and live.exists()
        assert (small_ws / "result.mp4").is_file()
    finally:
        alive.kill()
        alive.wait()
