"""Learned masks: masks train / apply / export / import, and what they never touch.

Most tests use the small workspace in tests/data (6 frames of the Katie Hill clip at 128 px,
two src photos, two masks painted by the artist), so a mask model trains in seconds.
"""
import json
import shutil
import sqlite3

import cv2
import numpy as np
import pytest

from convert.renderer import plan_faces
from info.summary import InfoOptions, run_info
from masks.apply import run_apply
from masks.augment import add_occluders, augment
from masks.exchange import run_export, run_import
from masks.options import MaskApplyOptions, MaskExportOptions, MaskImportOptions, MaskTrainOptions
from masks.training import run_mask_train
from pipeline.core import geometry
from pipeline.core.errors import UserError
from pipeline.models.interface import count_parameters
from pipeline.models.segmenter import SegmenterModel, SegmenterNet, weights_hash
from pipeline.training.data import load_set
from pipeline.workspace.store import Workspace, mask_hash
from tests.conftest import CLIP6, PHOTOS, ROOT, clean_error, copy_v1_workspace, run_cli, snapshot

CLIP = CLIP6
HAND = ("000001_0.png", "000004_0.png")          # the artist's painted masks in the test workspace
TINY = dict(resolution=64, width=4, batch_size=2, save_every=2, preview_every=2)


@pytest.fixture
def ws(tmp_path):
    return copy_v1_workspace(tmp_path)


def _bytes(folder):
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def _rows(ws):
    db = sqlite3.connect(ws / "faces.sqlite")
    try:
        return {(s, f): (o, m) for s, f, o, m in db.execute(
            "SELECT set_name, mask_file, mask_origin, mask_model FROM faces WHERE dropped=0")}
    finally:
        db.close()


def _masks_info(ws, set_name="dst"):
    return run_info(InfoOptions(workspace=ws))["sets"][set_name]["masks"]


# ---------------------------------------------------------------------- train and apply


def test_apply_writes_learned_masks_keeps_hand_ones_and_a_retrain_replaces_only_learned(ws):
    dst_masks = ws / "data_dst" / "masks"
    hand_before = {name: (dst_masks / name).read_bytes() for name in HAND}
    summary = run_mask_train(MaskTrainOptions(workspace=ws, iterations=4, **TINY))
    assert summary.iterations_done == 4
    model = ws / "mask_model"
    assert (model / "weights.pt").is_file() and (model / "preview.jpg").is_file()
    options = json.loads((model / "options.json").read_text())
    assert options["model_type"] == "segmenter" and options["face_type"] == "full" and options["hand_masks"] == 2
    assert len((model / "log.jsonl").read_text().splitlines()) == 4

    first = run_apply(MaskApplyOptions(workspace=ws))
    h1 = weights_hash(model)
    assert first.written == {"dst": 3, "src": 2} and first.hand_kept == {"dst": 2, "src": 0}
    assert {name: (dst_masks / name).read_bytes() for name in HAND} == hand_before
    rows = _rows(ws)
    learned = {k for k, (origin, _) in rows.items() if origin == "learned"}
    assert learned == {("dst", "000000_0.png"), ("dst", "000003_0.png"), ("dst", "000005_0.png"),
                       ("src", "obama2_0.png"), ("src", "obama3_0.png")}
    assert {rows[k][1] for k in learned} == {h1}
    assert {rows[("dst", n)][0] for n in HAND} == {"hand"}
    for set_name, name in learned:
        pixels = cv2.imread(str(ws / f"data_{set_name}" / "masks" / name), cv2.IMREAD_GRAYSCALE)
        assert pixels.shape == (128, 128) and set(np.unique(pixels)) <= {0, 255}
    assert _masks_info(ws)["learned"] == 3 and _masks_info(ws)["hand"] == 2 and _masks_info(ws)["hull"] == 0

    again = run_apply(MaskApplyOptions(workspace=ws))        # the same model again: nothing left to do
    assert again.written == {"dst": 0, "src": 0} and again.current == {"dst": 3, "src": 2}

    # the artist repaints one learned mask: from now on it is hand work
    painted = dst_masks / "000000_0.png"
    pixels = cv2.imread(str(painted), cv2.IMREAD_GRAYSCALE)
    pixels[:, :40] = 0
    cv2.imwrite(str(painted), pixels)
    painted_bytes = painted.read_bytes()
    learned_before = {n: (dst_masks / n).stat().st_mtime_ns for n in ("000003_0.png", "000005_0.png")}

    run_mask_train(MaskTrainOptions(workspace=ws, iterations=8, **TINY))     # resumes: new weights
    h2 = weights_hash(model)
    assert h2 != h1
    second = run_apply(MaskApplyOptions(workspace=ws, set_name="dst"))
    assert second.written == {"dst": 2} and second.hand_kept == {"dst": 3}
    rows = _rows(ws)
    assert rows[("dst", "000000_0.png")][0] == "hand" and painted.read_bytes() == painted_bytes
    assert {name: (dst_masks / name).read_bytes() for name in HAND} == hand_before
    assert {rows[("dst", n)] for n in ("000003_0.png", "000005_0.png")} == {("learned", h2)}
    assert rows[("src", "obama2_0.png")] == ("learned", h1)                 # --set dst left src alone
    rewritten = {n: (dst_masks / n).stat().st_mtime_ns for n in ("000003_0.png", "000005_0.png")}
    assert all(rewritten[n] > learned_before[n] for n in rewritten)


def test_convert_and_train_read_the_learned_masks(ws):
    run_mask_train(MaskTrainOptions(workspace=ws, iterations=2, **TINY))
    run_apply(MaskApplyOptions(workspace=ws, set_name="dst"))
    learned = ws / "data_dst" / "masks" / "000003_0.png"
    pixels = np.zeros((128, 128), np.uint8)
    pixels[30:90, 40:100] = 255                      # stand in for a prediction: a mask no hull draws
    cv2.imwrite(str(learned), pixels)
    with Workspace(ws, write=True) as w:            # recorded as the model's own output, not an edit
        row = next(r for r in w.faces("dst") if r.mask_file == "000003_0.png")
        w.put_masks([(row, "learned", mask_hash(pixels), row.mask_model)])
        plans, _ = plan_faces(w, w.faces("dst"), 128, 128, "full", 0.0)
        plan = next(p for p in plans[3])
        assert plan.hand_mask == learned             # convert reads the file (moved onto its smoothed crop)
        faces = load_set(w, "dst", 64, writer=True)
    assert _rows(ws)[("dst", "000003_0.png")][0] == "learned"
    i = faces.names.index("000003_0.png")
    expected = cv2.resize(pixels, (64, 64), interpolation=cv2.INTER_AREA)
    assert np.array_equal(faces.masks[i], expected)   # train learns inside the learned mask


def test_masks_train_without_hand_masks_says_how_many_and_how_to_make_them(ws):
    for name in HAND:                       # the artist's masks gone: no hand-painted mask left
        (ws / "data_dst" / "masks" / name).unlink()
    assert run_cli("migrate", "--workspace", ws).returncode == 0      # a writer would migrate it first
    before = snapshot(ws)
    res = run_cli("masks", "train", "--workspace", ws, "--iterations", "2")
    err = clean_error(res, "0 hand-painted mask(s); masks train needs at least 2")
    assert "data_dst/masks/" in err and "masks import" in err
    assert not (ws / "mask_model").exists()
    after = snapshot(ws)
    assert after is not None and before is not None
    assert {k: v for k, v in after.items() if k != "faces.sqlite"} == \
        {k: v for k, v in before.items() if k != "faces.sqlite"}


def test_masks_apply_without_a_model_and_with_a_model_of_another_face_type(ws):
    before = snapshot(ws)
    clean_error(run_cli("masks", "apply", "--workspace", ws),
                "no trained model in", "mask_model", "run 'python main.py masks train' first")
    assert snapshot(ws) == before
    run_mask_train(MaskTrainOptions(workspace=ws, iterations=2, **TINY))
    options = ws / "mask_model" / "options.json"
    meta = json.loads(options.read_text())
    options.write_text(json.dumps({**meta, "face_type": "head"}))
    masks_before = _bytes(ws / "data_dst" / "masks")
    with pytest.raises(UserError, match="learned 'head' faces but the dst set holds 'full' faces"):
        run_apply(MaskApplyOptions(workspace=ws))
    assert _bytes(ws / "data_dst" / "masks") == masks_before
    options.write_text(json.dumps({**meta, "model_type": "transform"}))
    with pytest.raises(UserError, match="describes a 'transform' model, not a 'segmenter' model"):
        run_apply(MaskApplyOptions(workspace=ws))
    options.write_text(json.dumps(meta))
    # resuming with another size is refused, the model is kept
    weights = (ws / "mask_model" / "weights.pt").read_bytes()
    with pytest.raises(UserError, match="resolution 64 -> 96"):
        run_mask_train(MaskTrainOptions(workspace=ws, iterations=4, **{**TINY, "resolution": 96}))
    assert (ws / "mask_model" / "weights.pt").read_bytes() == weights
    with pytest.raises(UserError, match="multiple of 16"):
        run_mask_train(MaskTrainOptions(workspace=ws, iterations=4, **{**TINY, "resolution": 100}))


# ---------------------------------------------------------------------- export and import


def test_export_import_round_trip_marks_only_edited_frames_as_hand(ws, tmp_path):
    out = tmp_path / "mattes"
    summary = run_export(MaskExportOptions(to=out, workspace=ws))
    files = sorted(p.name for p in out.iterdir())
    assert files == [f"{i:06d}.png" for i in range(6)] and summary.files == 6
    matte = cv2.imread(str(out / "000003.png"), cv2.IMREAD_GRAYSCALE)
    assert matte.shape == (512, 512)
    black = cv2.imread(str(out / "000002.png"), cv2.IMREAD_GRAYSCALE)
    assert black.max() == 0                                  # the face of frame 2 was deleted by the artist
    # the matte covers the face: its aligned mask warped back has the same area (scaled) as the matte
    mask3 = cv2.imread(str(ws / "data_dst" / "masks" / "000003_0.png"), cv2.IMREAD_GRAYSCALE)
    db = sqlite3.connect(ws / "faces.sqlite")
    transform = np.array(json.loads(db.execute("SELECT transform FROM faces WHERE frame_index=3").fetchone()[0]))
    db.close()
    scale = geometry.similarity_scale(transform)
    assert abs((matte > 127).sum() * scale ** 2 / (mask3 > 127).sum() - 1) < 0.05

    with pytest.raises(UserError, match="already holds 6 of the files"):
        run_export(MaskExportOptions(to=out, workspace=ws))

    masks_before = _bytes(ws / "data_dst" / "masks")
    result = run_import(MaskImportOptions(folder=out, workspace=ws))
    assert "0 face masks written" in result.line() and "5 mattes unchanged" in result.line()
    assert _bytes(ws / "data_dst" / "masks") == masks_before and _masks_info(ws)["hand"] == 2

    # the compositor paints the lower half of frame 3's face out
    ys, xs = np.nonzero(matte > 127)
    cut = int(np.median(ys))
    matte[cut:] = 0
    cv2.imwrite(str(out / "000003.png"), matte)
    result = run_import(MaskImportOptions(folder=out, workspace=ws))
    assert "1 face masks written, 1 newly hand-made" in result.line()
    info = _masks_info(ws)
    assert info["hand"] == 3 and info["hull"] == 2
    new3 = cv2.imread(str(ws / "data_dst" / "masks" / "000003_0.png"), cv2.IMREAD_GRAYSCALE)
    below = geometry.transform_points(np.array([[xs.mean(), cut + 5.0]]), transform)[0]
    above = geometry.transform_points(np.array([[xs.mean(), cut - 25.0]]), transform)[0]
    assert new3[int(below[1]), int(below[0])] == 0 and new3[int(above[1]), int(above[0])] == 255
    assert mask3[int(below[1]), int(below[0])] == 255


def test_aligned_export_and_import_errors(ws, tmp_path):
    out = tmp_path / "aligned"
    run_export(MaskExportOptions(to=out, workspace=ws, space="aligned"))
    names = sorted(p.name for p in out.iterdir())
    assert names == ["000000_0.png", "000001_0.png", "000003_0.png", "000004_0.png", "000005_0.png"]
    for name in names:
        a = cv2.imread(str(out / name), cv2.IMREAD_GRAYSCALE)
        b = cv2.imread(str(ws / "data_dst" / "masks" / name), cv2.IMREAD_GRAYSCALE)
        assert np.array_equal(a, b)
    stray = tmp_path / "stray"
    stray.mkdir()
    cv2.imwrite(str(stray / "holiday.png"), np.zeros((8, 8), np.uint8))
    before = snapshot(ws)
    clean_error(run_cli("masks", "import", stray, "--workspace", ws), "none of the 1 PNG files", "holiday.png")
    clean_error(run_cli("masks", "import", tmp_path / "nope", "--workspace", ws), "is not a folder")
    assert snapshot(ws) == before


def test_photo_set_mattes_are_each_photo_s_size(ws, tmp_path):
    with pytest.raises(UserError, match="put it back, or use --space aligned"):
        run_export(MaskExportOptions(to=tmp_path / "none", workspace=ws, set_name="src"))
    (tmp_path / "photos").mkdir()                   # the folder the src set was extracted from
    for name in ("obama2.jpg", "obama3.jpg"):
        shutil.copy(PHOTOS / name, tmp_path / "photos" / name)
    out = tmp_path / "src_mattes"
    run_export(MaskExportOptions(to=out, workspace=ws, set_name="src"))
    assert sorted(p.name for p in out.iterdir()) == ["obama2.png", "obama3.png"]
    photo = cv2.imread(str(PHOTOS / "obama2.jpg"))
    matte = cv2.imread(str(out / "obama2.png"), cv2.IMREAD_GRAYSCALE)
    assert matte.shape == photo.shape[:2] and 0.005 < (matte > 127).mean() < 0.5


# ---------------------------------------------------------------------- extract --force keeps learned masks


@pytest.mark.slow
def test_extract_force_keeps_learned_masks_unless_asked(ws):
    run_mask_train(MaskTrainOptions(workspace=ws, iterations=2, **TINY))
    run_apply(MaskApplyOptions(workspace=ws, set_name="dst"))
    masks = ws / "data_dst" / "masks"
    learned = {n: cv2.imread(str(masks / n), cv2.IMREAD_GRAYSCALE) for n in ("000000_0.png", "000003_0.png")}
    hand = {n: (masks / n).read_bytes() for n in HAND}
    res = run_cli("extract", "--input", CLIP, "--size", "128", "--workspace", ws, "--force")
    assert res.returncode == 0, res.stderr
    assert "learned masks kept" in res.stdout
    rows = _rows(ws)
    assert {rows[("dst", n)][0] for n in learned} == {"learned"}
    for n, before in learned.items():        # the same crop (same landmarks): the same mask, or moved < 1 px
        after = cv2.imread(str(masks / n), cv2.IMREAD_GRAYSCALE)
        assert np.mean((after > 127) != (before > 127)) < 0.02
    assert {n: (masks / n).read_bytes() for n in HAND} == hand
    res = run_cli("extract", "--input", CLIP, "--size", "128", "--workspace", ws, "--force", "--replace-learned-masks")
    assert res.returncode == 0, res.stderr
    rows = _rows(ws)
    assert {rows[("dst", n)][0] for n in learned} == {"hull"}
    assert {n: (masks / n).read_bytes() for n in HAND} == hand


# ---------------------------------------------------------------------- pieces


def test_occluders_are_cut_out_of_the_target_mask():
    rng = np.random.default_rng(3)
    face = np.full((96, 96, 3), 180, np.float32)
    mask = np.zeros((96, 96), np.float32)
    mask[16:80, 20:76] = 1.0
    image, target = add_occluders(face.copy(), mask.copy(), rng, None, 3)
    changed = np.abs(image - face).max(axis=2) > 1
    assert target.max() <= 1.0 and np.all(target <= mask + 1e-6)
    assert 0.02 < 1 - target.sum() / mask.sum() < 0.9              # something covered, not everything
    # wherever the target lost face, the image shows the occluder (changed pixels)
    lost = (mask - target) > 0.5
    assert changed[lost].mean() > 0.9
    out, t = augment(face.astype(np.uint8), (mask * 255).astype(np.uint8), np.random.default_rng(1))
    out2, t2 = augment(face.astype(np.uint8), (mask * 255).astype(np.uint8), np.random.default_rng(1))
    assert out.dtype == np.uint8 and t.dtype == np.float32 and np.array_equal(out, out2) and np.array_equal(t, t2)


def test_segmenter_shapes_size_and_options():
    import torch
    net = SegmenterNet(96, 16)
    assert net(torch.rand(2, 3, 96, 96)).shape == (2, 1, 96, 96)
    assert 1.0e6 < count_parameters(net) < 1.4e6
    with pytest.raises(UserError, match="invalid resolution"):
        SegmenterModel.from_options({"resolution": 100, "width": 16})


def test_a_mask_moves_with_its_crop():
    mask = np.zeros((64, 64), np.uint8)
    mask[20:40, 20:40] = 255
    old = np.array([[1.0, 0, 0], [0, 1.0, 0]])
    assert geometry.move_between_crops(mask, old, old.copy(), 64) is mask
    new = np.array([[1.0, 0, 5], [0, 1.0, -3]])
    moved = geometry.move_between_crops(mask, old, new, 64)
    ys, xs = np.nonzero(moved > 127)
    assert (xs.min(), ys.min(), xs.max(), ys.max()) == (25, 17, 44, 36)


def test_masks_help_lists_the_actions_and_their_defaults():
    res = run_cli("masks", "train", "--help")
    assert res.returncode == 0
    text = " ".join(res.stdout.split())
    assert "(default: 4000)" in text and "(default: 128)" in text and "synthetic occluders" in text
    res = run_cli("masks", "--help")
    assert all(a in res.stdout for a in ("train", "apply", "export", "import"))


@pytest.mark.slow
def test_masks_train_under_torchrun_on_gloo(ws):
    import os
    import socket
    import subprocess
    import sys
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    res = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_addr",
                          "127.0.0.1", "--master_port", str(port), str(ROOT / "main.py"), "masks", "train",
                          "--workspace", str(ws), "--resolution", "64", "--width", "4", "--batch-size", "2",
                          "--iterations", "3"], capture_output=True, text=True, timeout=600,
                         env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert res.returncode == 0, res.stderr[-2000:]
    log = [json.loads(line) for line in (ws / "mask_model" / "log.jsonl").read_text().splitlines()]
    assert [r["iteration"] for r in log if "loss" in r] == [1, 2, 3]
    assert log[-1] == {"iteration": 3, "world_size": 2, "ranks_in_sync": True}
