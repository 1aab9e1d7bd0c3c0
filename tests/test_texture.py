"""evaluate.texture: a no-reference figure for painted, airbrushed or over-sharpened skin.

Checked on real frames of both shared clips: the Ocasio-Cortez faces give the range a real
face lies in (as the src person's faces do in evaluate), and the Hill faces, as they are
and then blurred, shrunk and enlarged back, or sharpened, must fall inside, below and above it.
"""
import cv2
import numpy as np
import pytest

from evaluate import texture
from pipeline.core.geometry import eye_distance
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


@pytest.fixture(scope="module")
def src_bounds():
    values = [texture.texture(f, lm) for f, lm in _faces(AOC)]
    assert all(v is not None for v in values)
    return min(values), max(values)


def _sharpened(frame):
    blur = cv2.GaussianBlur(frame, (0, 0), 2).astype(np.float32)
    return np.clip(frame + 1.5 * (frame - blur), 0, 255).astype(np.uint8)


def _shrunk_and_back(frame, factor=4):
    h, w = frame.shape[:2]
    small = cv2.resize(frame, (w // factor, h // factor), interpolation=cv2.INTER_AREA)
    return cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC)


def test_real_skin_of_another_person_reads_like_the_src_persons(hill, src_bounds):
    lo, hi = src_bounds
    real = [texture.texture(f, lm) for f, lm in hill]
    assert lo <= float(np.median(real)) <= hi


def test_blurred_and_upscaled_skin_reads_below_and_sharpened_above(hill, src_bounds):
    lo, hi = src_bounds
    for frame, lm in hill:
        real = texture.texture(frame, lm)
        blurred = texture.texture(cv2.GaussianBlur(frame, (0, 0), eye_distance(lm) / 60), lm)
        upscaled = texture.texture(_shrunk_and_back(frame), lm)
        sharp = texture.texture(_sharpened(frame), lm)
        assert blurred < lo and upscaled < lo and blurred < 0.8 * real and upscaled < 0.85 * real
        assert sharp > hi and sharp > 1.2 * real


def test_the_figure_does_not_depend_on_exposure_or_face_size(hill):
    frame, lm = hill[0]
    base = texture.texture(frame, lm)
    darker = texture.texture((frame.astype(np.float32) * 0.6).round().astype(np.uint8), lm)
    assert darker == pytest.approx(base, rel=0.05)
    scale = 0.75                                   # eye distance ~80 px: still above the working 64 px
    smaller = cv2.resize(frame, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
    assert texture.texture(smaller, lm * scale) == pytest.approx(base, rel=0.1)


def test_nothing_to_measure_gives_none_not_a_number(hill):
    frame, lm = hill[0]
    assert texture.texture(np.full_like(frame, 128), lm) is None          # flat: no structure
    assert texture.texture(frame, lm * 0.02) is None                      # a few pixels wide
    assert texture.summary([None], [None], [])["output"] is None


def test_summary_counts_frames_below_inside_and_above_the_src_range():
    src = list(np.linspace(0.3, 0.5, 101))
    s = texture.summary([0.2, 0.4, 0.45, 0.9, None], [0.4], src)
    assert s["src_range"] == pytest.approx([0.31, 0.49])
    assert (s["below"], s["above"], s["frames"]) == (1, 1, 4)
    assert s["inside_src_range"] == pytest.approx(0.5)
    assert texture.distance_from_range(0.2, s["src_range"]) == pytest.approx(0.11)
    assert texture.distance_from_range(0.4, s["src_range"]) == 0.0
