"""Bad input: a one-line error naming the file, a non-zero exit, the workspace untouched."""
import json
import subprocess

import cv2
import numpy as np
import pytest

from tests.conftest import KATIE, PHOTOS, ffmpeg, run_cli, snapshot

pytestmark = pytest.mark.slow      # runs commands end to end: not in the quick selection


def _assert_clean_error(res, *needles):
    assert res.returncode != 0
    err = [ln for ln in res.stderr.splitlines() if ln.startswith("error:")]
    assert len(err) == 1, res.stderr
    assert "Traceback" not in res.stderr
    for needle in needles:
        assert needle in err[0], err[0]


@pytest.fixture
def populated(tmp_path, short_clip):
    """A workspace that already holds a dst set: bad input must not change a byte of it."""
    ws = tmp_path / "ws"
    assert run_cli("extract", "--input", short_clip, "--workspace", ws).returncode == 0
    return ws


def _run_bad(ws, *args):
    before = snapshot(ws)
    res = run_cli("extract", *args, "--workspace", ws)
    assert snapshot(ws) == before
    return res


def test_missing_path(populated, tmp_path):
    res = _run_bad(populated, "--input", tmp_path / "nope.mp4")
    _assert_clean_error(res, "nope.mp4", "does not exist")


def test_not_a_video(populated, tmp_path):
    fake = tmp_path / "notes.mp4"
    fake.write_text("these are my notes, not a video\n" * 50)
    _assert_clean_error(_run_bad(populated, "--input", fake, "--set", "src"), "notes.mp4", "cannot read")


def test_truncated_video_without_index_is_refused(populated, tmp_path):
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(KATIE.read_bytes()[:1_000_000])   # index (moov) is at the end: lost
    _assert_clean_error(_run_bad(populated, "--input", cut, "--set", "src"), "cut.mp4")


def test_truncated_video_extracts_what_decodes_and_warns(tmp_path):
    fast = tmp_path / "fast.mp4"
    subprocess.run([ffmpeg(), "-v", "error", "-i", str(KATIE), "-c", "copy", "-movflags", "+faststart",
                    str(fast)], check=True)
    data = fast.read_bytes()
    cut = tmp_path / "half.mp4"
    cut.write_bytes(data[: len(data) // 2])
    res = run_cli("extract", "--input", cut, "--workspace", tmp_path / "ws")
    assert res.returncode == 0, res.stderr
    assert "warning:" in res.stderr and "truncated" in res.stderr and "half.mp4" in res.stderr
    info = json.loads(run_cli("info", "--json", "--workspace", tmp_path / "ws").stdout)["sets"]["dst"]
    assert 60 <= info["frames"] < 200 and info["faces"] >= info["frames"] - 1
    assert info["video"]["frames"] == info["frames"] and info["video"]["frames_expected"] == 200


def test_folder_with_no_images(populated, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "readme.txt").write_text("no images here")
    _assert_clean_error(_run_bad(populated, "--input", empty), "empty", "holds no images")


def test_images_with_no_face(populated, tmp_path):
    folder = tmp_path / "noface"
    folder.mkdir()
    rng = np.random.default_rng(1)
    cv2.imwrite(str(folder / "noise.png"), rng.integers(0, 255, (300, 400, 3), dtype=np.uint8))
    img = cv2.imread(str(PHOTOS / "obama.jpg"))
    cv2.imwrite(str(folder / "wall.jpg"), img[-200:, :200])   # a corner with no face
    res = _run_bad(populated, "--input", folder)
    _assert_clean_error(res, "no face found", "noface")
    assert res.returncode == 1
    # and into a new workspace: nothing is created at all
    fresh = tmp_path / "fresh"
    res = run_cli("extract", "--input", folder, "--workspace", fresh)
    _assert_clean_error(res, "no face found")
    assert not fresh.exists()


def test_dense_masker_without_dense_points_is_refused(populated, short_clip, tmp_path):
    res = _run_bad(populated, "--input", short_clip, "--masker", "dense", "--landmarker", "dlib", "--set", "src")
    _assert_clean_error(res, "--masker dense needs a landmark model with dense points", "--landmarker mediapipe")
    fresh = tmp_path / "fresh"
    res = run_cli("extract", "--input", short_clip, "--workspace", fresh, "--masker", "dense", "--landmarker", "dlib")
    _assert_clean_error(res, "--masker dense")
    assert not fresh.exists()


def test_a_set_keeps_its_backends_when_extract_runs_again(populated, short_clip):
    """A re-run without --detector/--landmarker goes on with the set's own, whatever the defaults are now."""
    meta = json.loads((populated / "workspace.json").read_text())
    meta["sets"]["dst"]["extract"].update(detector="dlib", landmarker="dlib")    # as a workspace of the old default
    (populated / "workspace.json").write_text(json.dumps(meta))
    res = run_cli("extract", "--input", short_clip, "--workspace", populated)
    assert res.returncode == 0, res.stderr
    assert "detector: dlib:" in res.stderr and "landmarks: dlib:" in res.stderr
    res = _run_bad(populated, "--input", short_clip, "--detector", "retinaface")
    _assert_clean_error(res, "extracted with other settings (detector dlib -> retinaface)", "--force")


def test_workspace_from_a_newer_schema(populated, short_clip):
    meta_path = populated / "workspace.json"
    meta = json.loads(meta_path.read_text())
    meta["schema_version"] = 99
    meta_path.write_text(json.dumps(meta))
    res = _run_bad(populated, "--input", short_clip)
    _assert_clean_error(res, "newer version", "schema 99")
    res = run_cli("info", "--workspace", populated)
    _assert_clean_error(res, "newer version")


def test_info_on_a_folder_that_is_not_a_workspace(tmp_path):
    _assert_clean_error(run_cli("info", "--workspace", tmp_path), "not a workspace")
