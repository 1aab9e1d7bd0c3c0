"""A face RetinaFace finds and HOG does not goes through extract, train and convert."""
from __future__ import annotations

import json
import shutil
import sqlite3
import subprocess

import numpy as np
import pytest

from pipeline.core.video import FrameReader, probe
from tests.conftest import CLIP6, PHOTOS, clean_error, ffmpeg, run_cli

pytestmark = pytest.mark.slow

TINY = ["--width", "4", "--batch-size", "2", "--n-best", "2", "--save-every", "2", "--preview-every", "2"]


@pytest.fixture(scope="module")
def rotated_clip(tmp_path_factory):
    """The 6-frame clip turned by 55 degrees counter-clockwise and shrunk: a tilted, smaller face."""
    out = tmp_path_factory.mktemp("rotated") / "rotated.mp4"
    subprocess.run([ffmpeg(), "-v", "error", "-i", str(CLIP6), "-vf",
                    "scale=320:320,pad=512:512:96:96:black,rotate=-55*PI/180:fillcolor=black",
                    "-c:v", "libx264", "-pix_fmt", "yuv420p", "-crf", "16", str(out)], check=True)
    return out


def frames_of(path):
    info = probe(path)
    return [f.astype(np.int16) for _, f in FrameReader(path, info.width, info.height)]


def test_rotated_face_goes_through_the_whole_chain(rotated_clip, tmp_path):
    hog = tmp_path / "hog"
    res = run_cli("extract", "--input", rotated_clip, "--workspace", hog, "--size", "128", "--detector", "dlib")
    clean_error(res, "no face found in any of the 6 frames", "try --detector retinaface")   # HOG finds none
    assert not (hog / "faces.sqlite").exists()

    ws = tmp_path / "ws"
    res = run_cli("extract", "--input", rotated_clip, "--workspace", ws, "--size", "128",
                  "--detector", "retinaface", "--landmarker", "mediapipe", "--masker", "dense")
    assert res.returncode == 0, res.stderr
    assert "6 faces (6 detected" in res.stdout
    info = json.loads(run_cli("info", "--json", "--workspace", ws).stdout)
    dst = info["sets"]["dst"]
    assert dst["faces"] == 6 and dst["masks"]["dense"] == 6
    assert dst["backends"] == {"detector": "retinaface", "landmarker": "mediapipe", "masker": "dense"}
    con = sqlite3.connect(ws / "faces.sqlite")
    rolls, dense = zip(*con.execute("SELECT roll, length(dense_landmarks) FROM faces"))
    con.close()
    assert all(n == 478 * 2 * 4 for n in dense)           # the 478 points kept, as float32 pairs
    assert np.ptp(rolls) < 8 and abs(abs(np.mean(rolls)) - 55) < 15, rolls   # the turn is found, steadily

    photos = tmp_path / "photos"
    photos.mkdir()
    for name in ("obama2.jpg", "obama3.jpg"):
        shutil.copy(PHOTOS / name, photos / name)
    assert run_cli("extract", "--input", photos, "--workspace", ws, "--size", "128").returncode == 0
    res = run_cli("train", "--workspace", ws, *TINY, "--iterations", "2")
    assert res.returncode == 0, res.stderr
    res = run_cli("convert", "--workspace", ws)
    assert res.returncode == 0, res.stderr
    assert "6 frames, 6 faces swapped" in res.stdout

    before, after = frames_of(rotated_clip), frames_of(ws / "result.mp4")
    assert len(after) == 6
    con = sqlite3.connect(ws / "faces.sqlite")
    boxes = [json.loads(b) for (b,) in con.execute("SELECT bbox FROM faces WHERE set_name='dst' ORDER BY frame_index")]
    con.close()
    for frame_before, frame_after, box in zip(before, after, boxes):
        changed = np.abs(frame_after - frame_before).max(axis=2) > 3
        ys, xs = np.nonzero(changed)
        side = box[2] - box[0]
        centre = np.array([(box[0] + box[2]) / 2, (box[1] + box[3]) / 2])
        # the swap changed a face-sized region where the face is, and nothing far from it
        assert changed.sum() > 0.25 * side * side, changed.sum()
        assert np.linalg.norm(np.array([xs.mean(), ys.mean()]) - centre) < 0.25 * side
        assert np.all(np.hypot(xs - centre[0], ys - centre[1]) < 1.2 * side)
