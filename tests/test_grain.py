"""The swapped skin's grain brought to the plate's (``convert.grain``), on a real face: frame 90 of the Hill clip."""
import cv2
import numpy as np
import pytest

from convert import grain
from pipeline.faces import texture_bands
from pipeline.faces.regions import skin_region

BOX = (130, 150, 440, 470)      # x0, y0, x1, y1 around the face of frame 90


def _ratio(image, landmarks):
    """The skin's texture as evaluate reads it (the face brought to an eye distance of 64 px)."""
    return texture_bands.face_texture(image, landmarks)


def _speckled(frame, landmarks, sigma=6.0):
    """``frame`` with fine noise on the face, as a painted network output pasted in would have."""
    rng = np.random.default_rng(0)
    out = frame.astype(np.float32)
    x0, y0, x1, y1 = BOX
    out[y0:y1, x0:x1] += rng.normal(0, sigma, (y1 - y0, x1 - x0, 1)).astype(np.float32)
    return np.clip(out.round(), 0, 255).astype(np.uint8)


def _solid():
    x0, y0, x1, y1 = BOX
    return np.ones((y1 - y0, x1 - x0), np.float32)


def test_a_speckled_swap_is_brought_to_the_plates_grain(hill_frame_90):
    frame, lm = hill_frame_90
    out = _speckled(frame, lm)
    plate, before = _ratio(frame, lm), _ratio(out, lm)
    assert before > 1.3 * plate                    # the noise made the skin far grainier than the plate
    cut = grain.match(out, frame, lm, _solid(), BOX, 1.0)
    assert 0.3 < cut < 1
    after = _ratio(out, lm)
    assert after == pytest.approx(plate * (1 + grain.TOLERANCE), rel=0.05)
    # only the skin (feathered) changed: the eyes' and mouth's pixels far from it are as they were
    x0, y0 = BOX[:2]
    changed = np.abs(out.astype(int) - _speckled(frame, lm).astype(int)).max(axis=2) > 0
    skin = skin_region(lm - (x0, y0), (BOX[3] - y0, BOX[2] - x0)) > 0
    assert changed[y0:BOX[3], x0:BOX[2]][skin].mean() > 0.5
    eye = np.round(lm[36:42].mean(axis=0)).astype(int)
    assert not changed[eye[1] - 2:eye[1] + 3, eye[0] - 2:eye[0] + 3].any()
    assert not changed[:y0].any() and not changed[:, :x0].any()    # outside the box: untouched


def test_half_the_amount_takes_half_the_excess(hill_frame_90):
    frame, lm = hill_frame_90
    full, half = _speckled(frame, lm), _speckled(frame, lm)
    cut = grain.match(full, frame, lm, _solid(), BOX, 1.0)
    assert grain.match(half, frame, lm, _solid(), BOX, 0.5) == pytest.approx(cut / 2)
    assert _ratio(full, lm) < _ratio(half, lm) < _ratio(_speckled(frame, lm), lm)


def test_a_swap_as_smooth_as_the_plate_or_smoother_is_left_alone(hill_frame_90):
    frame, lm = hill_frame_90
    soft = cv2.GaussianBlur(frame, (0, 0), 1.5)
    out = soft.copy()
    assert grain.match(out, frame, lm, _solid(), BOX, 1.0) == 0.0
    assert np.array_equal(out, soft)
    same = frame.copy()
    assert grain.match(same, frame, lm, _solid(), BOX, 1.0) == 0.0 and np.array_equal(same, frame)


def test_off_or_where_nothing_was_pasted_the_frame_is_kept(hill_frame_90):
    frame, lm = hill_frame_90
    out = _speckled(frame, lm)
    assert grain.match(out, frame, lm, _solid(), BOX, 0.0) == 0.0
    assert np.array_equal(out, _speckled(frame, lm))
    # a hand in front of the face: the mask left it out (alpha 0), so it is the plate's and must stay so
    assert grain.match(out, frame, lm, np.zeros_like(_solid()), BOX, 1.0) is None
    assert np.array_equal(out, _speckled(frame, lm))


def test_a_src_person_with_grainier_skin_than_the_plate_keeps_more(hill_frame_90):
    """The target is whichever is grainier, the plate or the src person's own skin: skin like the src person's is
    never smoothed toward a softer plate."""
    frame, lm = hill_frame_90
    plate = _ratio(frame, lm)
    to_plate, to_src = _speckled(frame, lm), _speckled(frame, lm)
    cut_plate = grain.match(to_plate, frame, lm, _solid(), BOX, 1.0, src_texture=0.5 * plate)
    cut_src = grain.match(to_src, frame, lm, _solid(), BOX, 1.0, src_texture=1.3 * plate)
    assert 0 < cut_src < cut_plate
    assert _ratio(to_plate, lm) == pytest.approx(plate * (1 + grain.TOLERANCE), rel=0.05)
    assert _ratio(to_src, lm) == pytest.approx(1.3 * plate * (1 + grain.TOLERANCE), rel=0.05)


def test_the_src_texture_is_the_median_of_the_src_faces(hill_frame_90):
    frame, lm = hill_frame_90
    soft = cv2.GaussianBlur(frame, (0, 0), 1.0)
    values = sorted(_ratio(img, lm) for img in (frame, soft, _speckled(frame, lm)))
    assert grain.src_texture([(frame, lm), (soft, lm), (_speckled(frame, lm), lm)]) == pytest.approx(values[1])
    assert grain.src_texture([]) is None
