"""evaluate.surround: the face's tone against the neck beside it, checked on real frames.

Hill's frames as they are (and through a JPEG coder) must read no change; the same frames
with the face's colour moved by a known CIELAB vector (feathered at the face's edge, as a
swap is blended) must read that vector's length; the whole frame moved by it (a grade)
must read no change, which the older face-against-original tone cannot tell apart.
"""
import cv2
import numpy as np
import pytest

from evaluate import realism, surround
from pipeline.core import geometry
from pipeline.core.video import FrameReader, probe
from tests.conftest import AOC, KATIE

FRAMES = (0, 25, 50, 75, 100, 125, 150, 175)


def _faces(video):
    from pipeline.faces.analyser import FaceAnalyser
    find = FaceAnalyser("retinaface", "mediapipe", "auto", 80)
    info = probe(video)
    out = []
    for i, frame in FrameReader(video, info.width, info.height):
        if i in FRAMES:
            found = find(frame)
            assert len(found) == 1
            out.append((frame, found[0].landmarks))
        if i >= max(FRAMES):
            break
    return out


@pytest.fixture(scope="module")
def hill():
    return _faces(KATIE)


def _shifted(frame: np.ndarray, weight: np.ndarray, delta: tuple[float, float, float]) -> np.ndarray:
    """``frame`` with ``delta`` (L*, a*, b*) added where ``weight`` (0..1) says, back in RGB uint8."""
    lab = cv2.cvtColor(frame.astype(np.float32) / 255.0, cv2.COLOR_RGB2Lab)
    lab += weight[..., None] * np.array(delta, np.float32)
    return np.clip(cv2.cvtColor(lab, cv2.COLOR_Lab2RGB) * 255.0 + 0.5, 0, 255).astype(np.uint8)


def _face_weight(frame: np.ndarray, landmarks: np.ndarray) -> np.ndarray:
    """The landmark hull, feathered over a few pixels: where a swap puts its face."""
    hull = geometry.hull_mask(landmarks, frame.shape[:2]).astype(np.float32) / 255.0
    return cv2.GaussianBlur(hull, (0, 0), 3)


def _jpeg(frame: np.ndarray) -> np.ndarray:
    ok, buf = cv2.imencode(".jpg", cv2.cvtColor(frame, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 85])
    return cv2.cvtColor(cv2.imdecode(buf, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)


def test_untouched_and_recompressed_frames_read_no_change_and_hair_is_no_skin(hill):
    for frame, lm in hill:
        same = surround.measure(frame, frame, lm)
        assert same["neck_change"] == pytest.approx(0.0, abs=1e-6)
        assert same["neck_output"] == pytest.approx(same["neck_original"])
        assert 0.5 < same["neck_original"] < 10          # her neck is a little darker than her cheeks
        assert surround.measure(_jpeg(frame), frame, lm)["neck_change"] < 1.0
        # beside her face is brown hair (its colour near the skin's, its texture not): nothing to measure
        assert same["sides_change"] is None


@pytest.mark.parametrize("delta", [(-4.0, 3.0, 5.0), (0.0, 0.0, 2.0), (6.0, -2.0, 0.0)])
def test_a_face_whose_colour_is_moved_reads_how_far(hill, delta):
    expected = float(np.linalg.norm(delta))
    for frame, lm in hill:
        moved = _shifted(frame, _face_weight(frame, lm), delta)
        got = surround.measure(moved, frame, lm)
        assert got["neck_change"] == pytest.approx(expected, abs=0.05 * expected + 0.3), (got, expected)


def test_a_frame_graded_as_a_whole_keeps_the_face_s_relation_to_the_neck(hill):
    delta = (-4.0, 3.0, 5.0)
    for frame, lm in hill:
        graded = _shifted(frame, np.ones(frame.shape[:2], np.float32), delta)
        assert surround.measure(graded, frame, lm)["neck_change"] < 0.7
        assert realism.measure(graded, frame, lm)["tone_delta_e"] > 6.0     # the face against the original moved


def test_another_clip_and_a_face_out_of_the_frame():
    aoc = _faces(AOC)
    readings = [surround.measure(f, f, lm) for f, lm in aoc]
    assert all(r["neck_original"] is not None for r in readings)      # her neck, partly in shadow, is found
    for frame, lm in aoc:
        moved = _shifted(frame, _face_weight(frame, lm), (-4.0, 3.0, 5.0))
        assert surround.measure(moved, frame, lm)["neck_change"] == pytest.approx(7.07, abs=0.65)
    frame, lm = aoc[0]
    low = lm + np.array([0.0, frame.shape[0] - lm[:, 1].min() - 20.0])     # only the brows still in the frame
    assert surround.measure(frame, frame, low) == {key: None for key in readings[0]}
