"""Issue 25's hostile cases on the workspace: nothing the artist made is lost, nothing outside is touched.

Each test stages what a bad day does (a studio save while ``masks apply`` runs, photos whose
names collide, links that lead out of the workspace, a tampered ``source`` column, writers
racing for a stale lock) and checks the artist's files and everything outside the
workspace are as they were, with one clear line where a command refuses.
"""
import json
import multiprocessing
import shutil
import sqlite3
import subprocess
import sys
import time

import cv2
import numpy as np
import pytest

from pipeline.core.errors import UserError
from pipeline.workspace import lock as lock_module
from pipeline.workspace.store import Workspace
from tests.conftest import CLIP6, PHOTOS, ROOT, clean_error, copy_v1_workspace, run_cli, snapshot

pytestmark = pytest.mark.slow


def _outside(tmp_path, name="outside"):
    folder = tmp_path / name
    folder.mkdir()
    (folder / "keep.png").write_bytes(b"someone else's file")
    return folder


def _link_out(ws, relative, outside):
    """Replace the workspace folder ``relative`` by a link to ``outside`` (its files copied there first)."""
    folder = ws / relative
    if folder.is_dir():
        for f in folder.iterdir():
            shutil.copy(f, outside / f.name)
        shutil.rmtree(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    folder.symlink_to(outside, target_is_directory=True)
    return snapshot(outside)


# ---------------------------------------------------------------------- 1. studio save during masks apply

def test_a_mask_the_studio_saves_while_masks_apply_runs_is_kept_and_recorded_as_hand(tmp_path, monkeypatch):
    from masks.apply import run_apply
    from masks.options import MaskApplyOptions, MaskTrainOptions
    from masks.training import run_mask_train
    from pipeline.faces.backends import learned_mask
    ws = copy_v1_workspace(tmp_path)
    run_mask_train(MaskTrainOptions(workspace=ws, iterations=2, resolution=64, width=4, batch_size=2, save_every=2,
                                    preview_every=2))
    target = ws / "data_dst" / "masks" / "000003_0.png"
    painted = np.zeros((128, 128), np.uint8)
    painted[20:100, 30:90] = 255
    # the artist saves in the studio (another process, so apply's write lock is really held elsewhere)
    save = ("import sys, json, numpy as np, cv2; from pathlib import Path; "
            "from studio.masks import MaskEdit, save_masks, version_of; from pipeline.core.images import read_gray; "
            "from pipeline.workspace.store import Workspace; root = Path(sys.argv[1]); "
            "ws = Workspace(root); row = [r for r in ws.faces('dst') if r.mask_file == '000003_0.png'][0]; "
            "ws.close(); mask = cv2.imread(sys.argv[2], cv2.IMREAD_GRAYSCALE); "
            "base = version_of(read_gray(root / 'data_dst' / 'masks' / '000003_0.png')); "
            "print(json.dumps(save_masks(root, 'dst', [MaskEdit(row.id, mask, base)])))")
    painted_file = tmp_path / "painted.png"
    cv2.imwrite(str(painted_file), painted)
    real_masks = learned_mask.LearnedMasker.masks
    said = []

    def masks_then_the_artist_saves(self, faces):
        out = real_masks(self, faces)             # the network has run; apply is about to write the batch
        if not said:
            res = subprocess.run([sys.executable, "-c", save, str(ws), str(painted_file)], cwd=ROOT,
                                 capture_output=True, text=True, timeout=120)
            assert res.returncode == 0, res.stderr
            said.append(json.loads(res.stdout))
        return out
    monkeypatch.setattr(learned_mask.LearnedMasker, "masks", masks_then_the_artist_saves)
    summary = run_apply(MaskApplyOptions(workspace=ws, set_name="dst"))
    assert said and said[0]["saved"] == 1 and said[0]["recorded"] is False     # apply held the lock
    assert np.array_equal(cv2.imread(str(target), cv2.IMREAD_GRAYSCALE), painted)
    with Workspace(ws) as w:
        row = next(r for r in w.faces("dst") if r.mask_file == "000003_0.png")
        assert row.mask_origin == "hand"
    assert summary.written["dst"] == 2          # the other two automatic masks were replaced


# ---------------------------------------------------------------------- 2. photo names that collide

def test_photos_whose_names_share_a_stem_never_overwrite_each_other(tmp_path):
    photos, ws = tmp_path / "photos", tmp_path / "ws"
    photos.mkdir()
    cv2.imwrite(str(photos / "a.png"), cv2.imread(str(PHOTOS / "obama2.jpg")))
    assert run_cli("extract", "--input", photos, "--workspace", ws, "--size", "128").returncode == 0
    masks = ws / "data_src" / "masks"
    (mask_file,) = list(masks.iterdir())
    painted = np.zeros((128, 128), np.uint8)
    painted[10:60, 10:60] = 255
    cv2.imwrite(str(mask_file), painted)
    painted_bytes = mask_file.read_bytes()
    aligned_before = {p.name: p.read_bytes() for p in (ws / "data_src" / "aligned").iterdir()}
    shutil.copy(PHOTOS / "obama3.jpg", photos / "a.jpg")           # a second 'a', added later
    assert run_cli("extract", "--input", photos, "--workspace", ws, "--size", "128").returncode == 0
    assert mask_file.read_bytes() == painted_bytes
    for name, data in aligned_before.items():
        assert (ws / "data_src" / "aligned" / name).read_bytes() == data
    with Workspace(ws) as w:
        rows = w.faces("src")
    assert len(rows) == 2 and len({r.aligned_file for r in rows}) == 2 and len({r.mask_file for r in rows}) == 2
    assert {r.source: r.mask_origin for r in rows}["a.png"] == "hand"

    # three names in one run that the old '-ext' suffix mapped onto each other
    third, ws3 = tmp_path / "three", tmp_path / "ws3"
    third.mkdir()
    for name, src in (("a-png.jpg", "obama.jpg"), ("a.jpg", "obama2.jpg"), ("a.png", "obama3.jpg")):
        cv2.imwrite(str(third / name), cv2.imread(str(PHOTOS / src)))
    assert run_cli("extract", "--input", third, "--workspace", ws3, "--size", "128").returncode == 0
    with Workspace(ws3) as w:
        rows = w.faces("src")
    assert len(rows) == 3 and len({r.aligned_file for r in rows}) == 3 and len({r.mask_file for r in rows}) == 3
    assert len(list((ws3 / "data_src" / "aligned").iterdir())) == 3


# ---------------------------------------------------------------------- 3. migrate through a link

def test_migrate_refuses_a_backup_name_that_links_to_another_workspace(tmp_path):
    ws = copy_v1_workspace(tmp_path / "mine")
    victim = copy_v1_workspace(tmp_path / "theirs")
    (ws / "faces.sqlite.v1.bak").symlink_to(victim / "faces.sqlite")
    theirs, mine = snapshot(victim), snapshot(ws)
    res = run_cli("migrate", "--workspace", ws)
    clean_error(res, "faces.sqlite.v1.bak", "leads outside the workspace")
    assert snapshot(victim) == theirs
    assert snapshot(ws) == mine


# ---------------------------------------------------------------------- 4. linked folders

@pytest.mark.parametrize("folder", ["data_dst/aligned", "data_dst/masks"])
def test_a_set_folder_that_links_out_is_refused_before_anything_is_written(tmp_path, folder):
    ws = copy_v1_workspace(tmp_path)
    outside = _outside(tmp_path)
    before = _link_out(ws, folder, outside)
    for args in (("extract", "--input", CLIP6, "--size", "128", "--force"), ("info",), ("convert",)):
        res = run_cli(*args, "--workspace", ws)
        clean_error(res, folder, "leads outside the workspace")
        assert snapshot(outside) == before, args


def test_the_studio_trash_linked_out_is_refused_for_delete_and_restore(tmp_path):
    from studio import faces
    ws = copy_v1_workspace(tmp_path)
    with Workspace(ws) as w:
        face_id = w.faces("dst", kept=True)[0].id
    outside = _outside(tmp_path)
    before = _link_out(ws, ".studio/trash/dst", outside)
    aligned = snapshot(ws / "data_dst" / "aligned")
    for act in (faces.delete_faces, faces.restore_faces):
        with pytest.raises(UserError, match="leads outside the workspace"):
            act(ws, "dst", [face_id])
    assert snapshot(outside) == before
    assert snapshot(ws / "data_dst" / "aligned") == aligned


# ---------------------------------------------------------------------- 5. the source column

def test_a_photo_source_that_names_a_file_outside_the_input_folder_is_not_read(tmp_path):
    from studio import frames
    ws = copy_v1_workspace(tmp_path)
    (tmp_path / "photos").mkdir()
    for name in ("obama2.jpg", "obama3.jpg"):                    # the src set's input, where extract read it
        shutil.copy(PHOTOS / name, tmp_path / "photos" / name)
    secret = tmp_path / "secret.jpg"
    shutil.copy(PHOTOS / "biden.jpg", secret)
    con = sqlite3.connect(ws / "faces.sqlite")
    face_id = con.execute("SELECT id FROM faces WHERE set_name='src' LIMIT 1").fetchone()[0]
    for value in ("../../secret.jpg", str(secret)):
        with con:
            con.execute("UPDATE faces SET source=? WHERE id=?", (value, face_id))
        with pytest.raises(UserError, match="outside"):
            frames.source_frame(ws, "src", face_id)
    con.close()
    out = tmp_path / "mattes"
    res = run_cli("masks", "export", "--set", "src", "--to", out, "--workspace", ws)
    clean_error(res, "source", "outside")


# ---------------------------------------------------------------------- 8. writers racing for a stale lock

def _contend(root, barrier, log, slow_judge):
    if slow_judge:                              # widen any window between judging a lock stale and taking it
        real = lock_module._stale

        def slow(info, path):
            result = real(info, path)
            time.sleep(0.05)
            return result
        lock_module._stale = slow
    barrier.wait()
    try:
        lk = lock_module.WorkspaceLock(root, "racer").acquire()
    except UserError:
        return
    log.put(("in", time.monotonic()))
    time.sleep(0.15)
    log.put(("out", time.monotonic()))
    lk.release()


def test_writers_racing_for_a_stale_lock_never_hold_it_together(tmp_path):
    ctx = multiprocessing.get_context("fork")
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    for round_ in range(12):
        root = tmp_path / f"ws{round_}"
        root.mkdir()
        (root / ".lock").write_text(json.dumps({"pid": dead.pid, "host": __import__("socket").gethostname(),
                                                "command": "killed", "started": "earlier"}))
        barrier, log = ctx.Barrier(6), ctx.Queue()
        procs = [ctx.Process(target=_contend, args=(root, barrier, log, True)) for _ in range(6)]
        for p in procs:
            p.start()
        for p in procs:
            p.join(30)
        events = []
        while not log.empty():
            events.append(log.get())
        events.sort(key=lambda e: e[1])
        inside = most = 0
        for kind, _ in events:
            inside += 1 if kind == "in" else -1
            most = max(most, inside)
        assert most <= 1, (round_, events)
        assert any(kind == "in" for kind, _ in events)          # one of them did take the stale lock
        assert not (root / ".lock").exists()


def test_a_new_photo_never_takes_the_file_of_a_face_an_older_version_named(tmp_path):
    """An older version named a face of 'b.png.jpg' by its stem, 'b.png_0.png'; the photo 'b.png' added
    now would get that very name: it must get another one, and the old face's files stay."""
    photos, ws = tmp_path / "photos", tmp_path / "ws"
    photos.mkdir()
    shutil.copy(PHOTOS / "obama2.jpg", photos / "b.png.jpg")
    assert run_cli("extract", "--input", photos, "--workspace", ws, "--size", "128").returncode == 0
    aligned, masks = ws / "data_src" / "aligned", ws / "data_src" / "masks"
    (aligned / "b.png.jpg_0.png").rename(aligned / "b.png_0.png")      # as the older version named it
    (masks / "b.png.jpg_0.png").rename(masks / "b.png_0.png")
    con = sqlite3.connect(ws / "faces.sqlite")
    with con:
        con.execute("UPDATE faces SET aligned_file='b.png_0.png', mask_file='b.png_0.png'")
    con.close()
    old_face = (aligned / "b.png_0.png").read_bytes()
    cv2.imwrite(str(photos / "b.png"), cv2.imread(str(PHOTOS / "obama3.jpg")))
    assert run_cli("extract", "--input", photos, "--workspace", ws, "--size", "128").returncode == 0
    assert (aligned / "b.png_0.png").read_bytes() == old_face
    with Workspace(ws) as w:
        names = {r.source: (r.aligned_file, r.mask_file) for r in w.faces("src")}
    assert names["b.png.jpg"] == ("b.png_0.png", "b.png_0.png")
    assert names["b.png"] == ("b.png~2_0.png", "b.png~2_0.png")
    assert (aligned / "b.png~2_0.png").is_file() and (masks / "b.png~2_0.png").is_file()
