"""The swapped face on the dst skin's tone (``convert.skin_tone``) and Poisson's correction kept to the mask's
edge (``--poisson-reach``), on a real face: frame 90 of the Hill clip."""
import cv2
import numpy as np
import pytest

from convert import skin_tone
from convert.blending import edge_weight, poisson_clone
from pipeline.core import geometry
from pipeline.faces.regions import skin_region

BOX = (150, 470, 130, 440)      # y0, y1, x0, x1 around the face of frame 90


@pytest.fixture(scope="module")
def face(hill_frame_90):
    """The face's crop of frame 90 and its 68 landmarks in the crop's pixels."""
    frame, landmarks = hill_frame_90
    y0, y1, x0, x1 = BOX
    return frame[y0:y1, x0:x1].copy(), landmarks - (x0, y0)


def _lab(image):
    return cv2.cvtColor(image.astype(np.float32) / 255.0, cv2.COLOR_RGB2Lab)


def _cast(image, shift):
    """``image`` moved by the CIELAB vector ``shift`` (as a warmer, darker network output would be)."""
    rgb = cv2.cvtColor(_lab(image) + np.float32(shift), cv2.COLOR_Lab2RGB)
    return np.clip(rgb * 255.0, 0, 255).round().astype(np.uint8)


def _skin_median(image, landmarks):
    skin = skin_region(landmarks, image.shape) > 0
    return np.median(_lab(image)[skin], axis=0)


def test_a_warm_dark_face_is_put_on_the_dst_skin(face):
    crop, lm = face
    generated = _cast(crop, (-6.0, 4.0, 7.0))
    before = np.linalg.norm(_skin_median(generated, lm) - _skin_median(crop, lm))
    assert before > 8
    out = skin_tone.match(generated, crop, lm, None, 1.0)
    assert np.linalg.norm(_skin_median(out, lm) - _skin_median(crop, lm)) < 0.8
    half = skin_tone.match(generated, crop, lm, None, 0.5)
    assert np.linalg.norm(_skin_median(half, lm) - _skin_median(crop, lm)) == pytest.approx(before / 2, abs=0.8)


def test_off_or_no_skin_in_the_mask_leaves_the_face(face):
    crop, lm = face
    generated = _cast(crop, (-6.0, 4.0, 7.0))
    assert np.array_equal(skin_tone.match(generated, crop, lm, None, 0.0), generated)
    no_skin = np.zeros(crop.shape[:2], np.uint8)            # a hand over the whole face, left out by the mask
    assert np.array_equal(skin_tone.match(generated, crop, lm, no_skin, 1.0), generated)


def test_poisson_correction_whole_at_the_edge_and_gone_inside_with_a_reach(face):
    crop, lm = face
    mask = geometry.hull_mask(lm, crop.shape[:2]).astype(np.float32) / 255.0
    brighter = np.clip(crop.astype(np.int16) + 25, 0, 255).astype(np.uint8)    # the whole face 25 levels off
    inside = edge_weight(mask, 0.3) < 0.05               # the middle of the face, past the reach from the edge
    assert inside.sum() > 2000
    ring = (mask > 0.5) & (cv2.erode((mask > 0.5).astype(np.uint8), np.ones((3, 3), np.uint8), iterations=4) == 0)

    def off(out, where):
        return float(np.median(np.abs(out.astype(np.int16) - crop)[where]))

    classic = poisson_clone(brighter, crop, mask)
    assert off(classic, inside) <= 1 and off(classic, ring) <= 1          # the border's colour everywhere
    reached = poisson_clone(brighter, crop, mask, reach=0.3)
    assert off(reached, ring) <= 3                                        # still seamless at the edge
    assert off(reached, inside) >= 23                                     # the face's own colour in the middle


def test_edge_weight_falls_from_the_edge_to_nothing():
    mask = np.zeros((101, 101), np.float32)
    cv2.circle(mask, (50, 50), 40, 1.0, -1)
    w = edge_weight(mask, 0.3)
    assert w[0, 0] == 1.0 and w[50, 10] > 0.9                  # outside and at the edge
    assert w[50, 50] == 0.0                                     # 40 px deep: past 0.3 of the mask's 71 px size
    row = w[50, 10:51]
    assert np.all(np.diff(row) <= 1e-6)                         # falling monotonically inward
