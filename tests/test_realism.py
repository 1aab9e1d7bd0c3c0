"""evaluate.realism and convert's fixes for what it measures: sharpness, colour fringes, skin tone."""
import cv2
import numpy as np
import pytest

from convert import blending
from evaluate import realism
from pipeline.core import geometry
from pipeline.faces.regions import face_interior


@pytest.fixture(scope="module")
def face(hill_frame_90):
    """Frame 90 of the dst clip and its 68 landmarks."""
    frame, landmarks = hill_frame_90
    return frame.copy(), landmarks.copy()


def _lines_along(image, points, colour, width=2):
    out = image.copy()
    pts = np.round(points).astype(np.int32)
    cv2.polylines(out, [pts], False, colour, width, lineType=cv2.LINE_AA)
    return out


def test_an_untouched_face_reads_as_the_reference(face):
    frame, lm = face
    m = realism.measure(frame, frame, lm)
    assert m["sharpness"] == pytest.approx(1.0) and m["fringing"] == pytest.approx(1.0)
    assert m["tone_delta_e"] == pytest.approx(0.0, abs=1e-6)


def test_a_face_stretched_from_128_px_reads_soft(face):
    frame, lm = face
    to_model = geometry.face_transform(lm, "full", 128)
    crop = cv2.warpAffine(frame, to_model, (128, 128), flags=cv2.INTER_AREA)
    back = cv2.warpAffine(crop, to_model, frame.shape[1::-1], flags=cv2.INTER_CUBIC | cv2.WARP_INVERSE_MAP,
                          borderMode=cv2.BORDER_REPLICATE)
    m = realism.measure(back, frame, lm)
    assert m["sharpness"] < 0.6                               # the face here is ~250 px wide
    assert m["tone_delta_e"] < 1.0 and m["fringing"] < 1.2


def test_thin_green_and_purple_lines_along_brows_and_eyelids_count_as_fringes(face):
    frame, lm = face
    fringed = frame
    for group, colour in ((range(17, 22), (60, 150, 90)), (range(22, 27), (60, 150, 90)),
                          (range(36, 40), (150, 60, 170)), (range(42, 46), (150, 60, 170))):
        fringed = _lines_along(fringed, lm[list(group)] - [0, 3], colour)
    m = realism.measure(fringed, frame, lm)
    assert m["fringing"] > 2.0
    # the same lines in the face's own brown are detail, not fringes
    brown = frame
    for group in (range(17, 22), range(22, 27), range(36, 40), range(42, 46)):
        brown = _lines_along(brown, lm[list(group)] - [0, 3], (120, 80, 60))
    assert realism.measure(brown, frame, lm)["fringing"] < 1.2


def test_a_paler_face_is_the_wrong_tone_even_with_a_matching_border(face):
    frame, lm = face
    inside = face_interior(lm, frame.shape) > 0
    paler = frame.copy()
    paler[inside] = np.clip(paler[inside].astype(np.float32) * 1.15 + 12, 0, 255).astype(np.uint8)
    m = realism.measure(paler, frame, lm)
    assert m["tone_delta_e"] > 3.0
    assert m["fringing"] < 1.2


# ---------------------------------------------------------------------- convert's fixes

def test_clean_chroma_keeps_the_brightness_change_and_smooths_only_its_colour():
    rng = np.random.default_rng(0)
    source = np.full((64, 64, 3), 128, np.uint8)
    face = source.copy()
    face[20:44, 20:44] = 90                                    # a darker patch: brightness change
    face[30, 10:54] = (90, 170, 90)                            # a one-pixel green line: colour detail
    face = np.clip(face.astype(int) + rng.integers(-1, 2, face.shape), 0, 255).astype(np.uint8)
    out = blending.clean_chroma(face, source, 4.0)
    luma = lambda im: im.astype(np.float32) @ blending.LUMA  # noqa: E731
    assert np.abs(luma(out) - luma(face)).max() < 1.0          # every brightness detail kept
    chroma = lambda im: im.astype(np.float32) - luma(im)[..., None]  # noqa: E731
    assert np.abs(chroma(face)[30, 10:54]).max() > 40
    assert np.abs(chroma(out)[30, 10:54]).max() < 12           # the line's colour is spread out
    assert blending.clean_chroma(face, source, 0) is face


def test_detail_gate_keeps_detail_where_structure_stays_and_drops_it_where_it_was_erased(face):
    frame, lm = face
    to_model = geometry.face_transform(lm, "full", 128)
    crop = cv2.warpAffine(frame, to_model, (128, 128), flags=cv2.INTER_AREA)
    brighter = np.clip(crop.astype(np.int16) + 25, 0, 255).astype(np.uint8)     # shading only
    assert blending.detail_gate(brighter, crop, 0.5)[32:96, 32:96].mean() > 0.9
    # the left brow erased (painted over with the forehead's colour above it): no old brow
    # detail may come back where it was
    brow = geometry.transform_points(lm[17:22], to_model)
    erased = crop.copy()
    skin = crop[int(brow[:, 1].min()) - 8, int(brow[:, 0].mean())].tolist()
    cv2.polylines(erased, [np.round(brow).astype(np.int32)], False, skin, 7)
    gate = blending.detail_gate(erased, crop, 0.5)
    luma = lambda im: im.astype(np.float32) @ blending.LUMA  # noqa: E731
    detail = np.abs(luma(crop) - cv2.GaussianBlur(luma(crop), (0, 0), 2.0))
    erased_detail = (np.abs(luma(erased) - luma(crop)) > 20) & (detail > 4)
    assert erased_detail.sum() > 30
    assert gate[erased_detail].mean() < 0.3


def test_a_network_that_changes_nothing_gives_back_the_frame_at_full_sharpness(face):
    frame, lm = face
    to_aligned = geometry.face_transform(lm, "full", 256)
    to_model = geometry.compose(geometry.resize_transform(256, 128), to_aligned)
    crop = cv2.warpAffine(frame, to_model, (128, 128), flags=cv2.INTER_AREA)
    alpha = blending.shape_mask(geometry.hull_mask(geometry.transform_points(lm, to_aligned), 256), 4, 8)
    stretched = blending.blend_face(frame.copy(), crop, to_model, alpha, to_aligned, "alpha")
    kept = blending.blend_face(frame.copy(), crop, to_model, alpha, to_aligned, "alpha", crop, 1.0, 0.5)
    assert realism.measure(stretched, frame, lm)["sharpness"] < 0.6
    assert realism.measure(kept, frame, lm)["sharpness"] > 0.97
    inside = face_interior(lm, frame.shape) > 0
    assert np.abs(kept.astype(int) - frame.astype(int))[inside].mean() < 1.0
