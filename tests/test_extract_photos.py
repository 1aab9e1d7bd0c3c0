"""Photos: every face found, odd formats handled, a corrupt file skipped with a warning."""
import json
import shutil

import cv2
import pytest

from pipeline.workspace.store import Workspace
from tests.conftest import PHOTOS, run_cli

pytestmark = pytest.mark.slow      # runs commands end to end: not in the quick selection

EXPECTED = {"32bit.png": 1, "biden.jpg": 1, "obama.jpg": 1, "obama2.jpg": 1, "obama3.jpg": 1,
            "obama_partial_face.jpg": 1, "obama_partial_face2.jpg": 1, "two_people.jpg": 2}


def test_every_face_in_the_photos_is_found(tmp_path):
    res = run_cli("extract", "--input", PHOTOS, "--workspace", tmp_path / "ws")
    assert res.returncode == 0, res.stderr
    assert "set src (default for images" in res.stderr
    rows = Workspace(tmp_path / "ws").faces("src")
    found: dict[str, int] = {}
    for r in rows:
        found[r.source] = found.get(r.source, 0) + 1
    assert found == EXPECTED
    two = [r for r in rows if r.source == "two_people.jpg"]
    assert sorted(r.face_index for r in two) == [0, 1]


def test_rgba_grayscale_and_a_corrupt_image_among_good_ones(tmp_path):
    folder = tmp_path / "photos"
    folder.mkdir()
    shutil.copy(PHOTOS / "32bit.png", folder / "rgba.png")
    gray = cv2.cvtColor(cv2.imread(str(PHOTOS / "obama.jpg")), cv2.COLOR_BGR2GRAY)
    cv2.imwrite(str(folder / "gray.png"), gray)
    (folder / "broken.jpg").write_bytes((PHOTOS / "biden.jpg").read_bytes()[:2000])
    assert cv2.imread(str(PHOTOS / "32bit.png"), cv2.IMREAD_UNCHANGED).shape[2] == 4
    res = run_cli("extract", "--input", folder, "--workspace", tmp_path / "ws")
    assert res.returncode == 0, res.stderr
    assert "warning: skipping" in res.stderr and "broken.jpg" in res.stderr
    assert "Traceback" not in res.stderr
    info = json.loads(run_cli("info", "--json", "--workspace", tmp_path / "ws").stdout)["sets"]["src"]
    assert info["faces"] == 2 and info["unreadable"] == ["broken.jpg"] and info["frames"] == 3
    rows = Workspace(tmp_path / "ws").faces("src")
    assert sorted(r.source for r in rows) == ["gray.png", "rgba.png"]


def test_one_image_and_a_video_into_src(tmp_path, short_clip):
    res = run_cli("extract", "--input", PHOTOS / "biden.jpg", "--workspace", tmp_path / "a")
    assert res.returncode == 0, res.stderr
    assert len(Workspace(tmp_path / "a").faces("src")) == 1
    res = run_cli("extract", "--input", short_clip, "--set", "src", "--workspace", tmp_path / "b")
    assert res.returncode == 0 and "set src (given by --set)" in res.stderr
    assert len(Workspace(tmp_path / "b").faces("src")) == 24
