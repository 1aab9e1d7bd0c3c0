"""Putting a face back (convert/blending.py) on a real frame, and the writer's frame-rate string.

The frame is frame 0 of the Katie Hill clip (512x512), decoded by ffmpeg; its 68 face
landmarks come from the default dlib detector and landmarker, as extract finds them.
Figures quoted in comments were measured on this frame (OpenCV 5.0, numpy 2).
"""
from __future__ import annotations

import subprocess

import cv2
import numpy as np
import pytest

from convert.blending import _clone_mask, _poisson_dst, blend_face, face_region, poisson_clone, shape_mask, sharpen
from pipeline.core import geometry
from pipeline.core.video import frame_rate_arg
from tests.conftest import KATIE, ffmpeg

# The face's region of frame 0: rows 150:470, cols 100:420 (the face spans x 126..386,
# y 194..467); 320 px a side, so poisson_clone's default work_size (128) shrinks it 3x.
Y0, Y1, X0, X1 = 150, 470, 100, 420


@pytest.fixture(scope="module")
def frame() -> np.ndarray:
    raw = subprocess.run([ffmpeg(), "-v", "error", "-i", str(KATIE), "-vframes", "1", "-f", "rawvideo",
                          "-pix_fmt", "rgb24", "pipe:"], check=True, capture_output=True).stdout
    return np.frombuffer(raw, np.uint8).reshape(512, 512, 3).copy()


@pytest.fixture(scope="module")
def landmarks(frame) -> np.ndarray:
    from tests.conftest import detector, landmarker
    faces = detector().detect(frame)
    assert len(faces) == 1, faces
    return landmarker().landmarks(frame, faces[0].box).astype(np.float64)


@pytest.fixture(scope="module")
def region(frame, landmarks):
    """(face region of the frame, its 0..1 face mask: the landmark hull, feathered)."""
    target = frame[Y0:Y1, X0:X1].copy()
    hull = geometry.hull_mask(landmarks - (X0, Y0), (Y1 - Y0, X1 - X0))
    return target, hull


def _redness(image: np.ndarray) -> np.ndarray:
    img = image.astype(np.float32)
    return img[..., 0] - 0.5 * (img[..., 1] + img[..., 2])


def _with_marker(image: np.ndarray, x: int, y: int) -> np.ndarray:
    out = image.copy()
    out[y - 1:y + 2, x - 1:x + 2] = (255, 0, 0)
    return out


# ---------------------------------------------------------------------- poisson_clone


# Regions of frame 0 around the face, (y0, y1, x0, x1): the main one and a few more sizes,
# because what the cloning does at the last bit depends on the size of the mask's box.
REGIONS = [(Y0, Y1, X0, X1), (174, 470, 104, 390), (170, 470, 100, 394), (166, 470, 96, 398)]


def _region(frame, landmarks, box):
    y0, y1, x0, x1 = box
    return frame[y0:y1, x0:x1].copy(), geometry.hull_mask(landmarks - (x0, y0), (y1 - y0, x1 - x0))


@pytest.mark.parametrize("work_size", [128, 1024], ids=["downscaled", "full-resolution"])
def test_cloning_the_target_onto_itself_is_within_one_grey_level(frame, landmarks, work_size):
    for box in REGIONS:
        target, hull = _region(frame, landmarks, box)
        out = poisson_clone(target.copy(), target, hull.astype(np.float32) / 255.0, work_size=work_size)
        diff = np.abs(out.astype(np.int16) - target)
        assert diff.max() <= 1, (box, diff.max())


@pytest.mark.parametrize("solver, work_size", [
    ("opencv", 128),
    pytest.param("opencv", 1024, marks=pytest.mark.xfail(strict=True, reason=(
        "full-resolution path only (not used by convert at these sizes): cv2.seamlessClone truncates "
        "its float solution, and at this size the offset measured on a flat probe image (subtracted "
        "by _seamless) does not match the textured image's, so cloning onto itself still darkens "
        "the first region by 0.91 grey level"))),
    ("dst", 128), ("dst", 1024), ("floored", 128),
], ids=["opencv-downscaled", "opencv-full-resolution", "dst-downscaled", "dst-full-resolution",
        "floored-downscaled"])
def test_cloning_the_target_onto_itself_has_no_shift(frame, landmarks, solver, work_size):
    for box in REGIONS:
        target, hull = _region(frame, landmarks, box)
        out = poisson_clone(target.copy(), target, hull.astype(np.float32) / 255.0, work_size=work_size,
                            solver=solver)
        diff = out.astype(np.int16) - target
        # the sine solver is exact: 0.0 in every region at both sizes; inside the mask (outside it,
        # the caller's soft mask fades the result out)
        assert np.abs(diff[hull > 127]).mean() < 0.05, (box, diff[hull > 127].mean())


def _cast_and_stripes(target: np.ndarray) -> np.ndarray:
    """A face that differs from ``target``: a red cast and vertical stripes (12 px period)."""
    stripes = 20.0 * np.sin(2 * np.pi * np.arange(target.shape[1]) / 12.0)[None, :, None]
    return np.clip(target.astype(np.float32) * 0.9 + stripes + (30.0, 0.0, 5.0), 0, 255).round().astype(np.uint8)


@pytest.mark.parametrize("box", REGIONS)
def test_the_sine_solver_solves_seamlessclones_problem_without_its_truncation(frame, landmarks, box):
    """The same discrete problem as cv2.seamlessClone (box, eroded mask, guidance, fixed ring): OpenCV's
    answer is ours floored, so it lies 0..1 below ours wherever neither clips (a solver of another problem, such as
    one that eroded the mask without the box's edges, was off by -1.6..+0.9 near the box's top)."""
    target, hull = _region(frame, landmarks, box)
    face = _cast_and_stripes(target)
    mask = hull.astype(np.float32) / 255.0
    exact = _poisson_dst(face, target, mask)
    binary = _clone_mask(mask)
    x, y, w, h = cv2.boundingRect(binary)
    theirs = cv2.seamlessClone(face, target, binary, (x + w // 2, y + h // 2), cv2.NORMAL_CLONE)
    inner = (slice(y + 1, y + h - 1), slice(x + 1, x + w - 1))
    unclipped = (exact[inner] > 0) & (exact[inner] < 255)
    below = (theirs[inner].astype(np.float32) - exact[inner])[unclipped]
    # OpenCV solves in float32: its solution is off by up to 0.05 at these sizes (measured -1.051 .. 0)
    assert below.min() > -1.1 and below.max() < 0.1, (below.min(), below.max())
    assert np.array_equal(exact[:y], target[:y].astype(np.float32))      # outside the box: the target


def test_poisson_solvers_agree_within_a_grey_level(region):
    target, hull = region
    face = _cast_and_stripes(target)
    mask = hull.astype(np.float32) / 255.0
    ours = poisson_clone(face, target, mask, solver="dst").astype(np.int16)
    theirs = poisson_clone(face, target, mask, solver="opencv").astype(np.int16)
    inside = hull > 127
    # measured: OpenCV's 0.5 darker on average inside the mask (its truncation), never more than 1 apart
    assert np.abs(ours - theirs)[inside].max() <= 1
    assert 0.2 < (ours - theirs)[inside].mean() < 0.8
    with pytest.raises(ValueError, match="unknown Poisson solver"):
        poisson_clone(face, target, mask, solver="jacobi")


@pytest.mark.parametrize("box", REGIONS)
def test_the_default_solver_gives_opencvs_answer(frame, landmarks, box):
    """``floored`` (the default, the sine solver rounded as OpenCV rounds) against ``opencv`` (seamlessClone and
    its probe), on a face that differs from the frame: convert's output and evaluate's figures stay OpenCV's
    (issue 31: the exact ``dst`` answer alone lies 0.5 above it on average and moved fringing by 0.016)."""
    target, hull = _region(frame, landmarks, box)
    face = _cast_and_stripes(target)
    mask = hull.astype(np.float32) / 255.0
    ours = poisson_clone(face, target, mask).astype(np.int16)
    theirs = poisson_clone(face, target, mask, solver="opencv").astype(np.int16)
    exact = poisson_clone(face, target, mask, solver="dst").astype(np.int16)
    diff = (ours - theirs)[hull > 127]
    # measured on these regions: 1.6-2.0 % of the face's pixels one grey level apart, mean |0.016-0.020|
    # (the exact answer: 0.48-0.51 apart on average)
    assert np.abs(diff).max() <= 1 and (diff != 0).mean() < 0.03 and abs(diff.mean()) < 0.03, \
        ((diff != 0).mean(), diff.mean())
    assert abs((exact - theirs)[hull > 127].mean()) > 0.2           # the rounding is what makes the difference


@pytest.mark.parametrize("work_size", [128, 1024], ids=["downscaled", "full-resolution"])
@pytest.mark.parametrize("spot", [(160, 120), (110, 200), (215, 230)])   # between the eyes, cheeks
def test_a_marker_in_the_face_lands_on_the_same_pixel(region, work_size, spot):
    target, hull = region
    mask = hull.astype(np.float32) / 255.0
    face = _with_marker(target, *spot)
    out = poisson_clone(face, target, mask, work_size=work_size)
    red = _redness(out) - _redness(target)
    y, x = np.unravel_index(np.argmax(cv2.blur(red, (3, 3))), red.shape)
    assert abs(x - spot[0]) <= 1 and abs(y - spot[1]) <= 1, ((x, y), spot)
    assert red[spot[1], spot[0]] > 100       # still a strong red spot (measured 208-230)


@pytest.mark.parametrize("work_size", [128, 1024], ids=["downscaled", "full-resolution"])
def test_edge_colour_comes_from_the_target_and_gradients_from_the_face(region, work_size):
    target, hull = region
    mask = hull.astype(np.float32) / 255.0
    binary = (hull > 127).astype(np.uint8)
    depth = cv2.distanceTransform(binary, cv2.DIST_L2, 5)              # px in from the mask edge
    # The face: the target with a red cast of +30 everywhere and, deep inside only, a
    # pattern of its own (vertical stripes, 12 px period, 25 grey levels).
    envelope = np.clip((depth - 15.0) / 15.0, 0.0, 1.0)
    stripes = 25.0 * np.sin(2 * np.pi * np.arange(target.shape[1]) / 12.0)[None, :] * envelope
    face = target.astype(np.float32) + stripes[..., None] + np.array([30.0, 0.0, 0.0], np.float32)
    clipped = cv2.dilate(((face > 255) | (face < 0)).any(axis=-1).astype(np.uint8), np.ones((3, 3), np.uint8)) > 0
    assert clipped.mean() < 0.15                                      # highlights only (measured 8.9%)
    face = np.clip(np.round(face), 0, 255).astype(np.uint8)
    out = poisson_clone(face, target, mask, work_size=work_size).astype(np.float32)

    band = (binary > 0) & (depth <= 2.5)                              # 2 px just inside the edge
    edge_err = np.abs(out - target)[band].mean()
    face_err = np.abs(face.astype(np.float32) - target)[band].mean()
    # measured: 0.15 (downscaled), 0.52 (full resolution); the face itself is 10 off there
    assert edge_err < 6, edge_err
    assert face_err > 9, face_err

    deep = (depth > 30) & ~clipped
    deep = deep[:-1, :-1]
    def grads(img):
        g = img.astype(np.float32)
        return np.stack([np.diff(g, axis=1)[:-1], np.diff(g, axis=0)[:, :-1]], axis=-1)
    kept = np.abs(grads(out) - grads(face))[deep].mean()
    other = np.abs(grads(target) - grads(face))[deep].mean()
    # measured: 0.11 (downscaled), 0.07 (full resolution) against 4.2 between face and target
    assert kept < 0.15 * other, (kept, other)
    # and the cast is gone deep inside too: the colour follows the target, not the face
    shift = (out - face.astype(np.float32))[depth > 30].mean(axis=0)
    assert shift[0] < -20 and np.abs(shift[1:]).max() < 5, shift


def test_a_mask_without_interior_returns_the_target(region):
    target, _ = region
    face = np.full_like(target, 200)
    mask = np.zeros(target.shape[:2], np.float32)
    mask[10, 10] = 1.0
    assert np.array_equal(poisson_clone(face, target, mask), target)


# ---------------------------------------------------------------------- masks and sharpening


def test_shape_mask_erodes_dilates_and_feathers(region):
    _, hull = region
    area = (hull > 127).sum()
    shrunk = shape_mask(hull, 6, 0)
    grown = shape_mask(hull, -6, 0)
    plain = shape_mask(hull, 0, 0)
    assert shrunk.sum() < 0.95 * area and grown.sum() > 1.05 * area, (shrunk.sum(), area, grown.sum())
    border = np.zeros(hull.shape, bool)
    border[[0, -1], :] = border[:, [0, -1]] = True
    assert plain.sum() == area - ((hull > 127) & border).sum()   # nothing generated outside the crop
    for binary in (shrunk, grown, plain):
        assert set(np.unique(binary)) <= {0.0, 1.0}
    assert grown[shrunk > 0].min() == 1.0                  # nested: eroded inside dilated

    soft = shape_mask(hull, 0, 8)
    edge = (cv2.dilate((hull > 127).astype(np.uint8), np.ones((3, 3), np.uint8)) -
            cv2.erode((hull > 127).astype(np.uint8), np.ones((3, 3), np.uint8))) > 0
    edge[:12, :] = edge[-12:, :] = edge[:, :12] = edge[:, -12:] = False   # the crop's own edge fades to 0
    assert (soft[edge] > 0).all() and (soft[edge] < 1).all()
    deep = cv2.erode((hull > 127).astype(np.uint8), np.ones((41, 41), np.uint8),
                     borderType=cv2.BORDER_CONSTANT, borderValue=0) > 0   # deep inside mask and crop
    assert np.allclose(soft[deep], 1.0, atol=1e-6)
    far = cv2.dilate((hull > 127).astype(np.uint8), np.ones((41, 41), np.uint8)) == 0
    assert np.allclose(soft[far], 0.0, atol=1e-6)
    assert soft.dtype == np.float32 and soft.min() >= 0.0 and soft.max() <= 1.0


def _laplacian_variance(image: np.ndarray) -> float:
    gray = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
    return float(cv2.Laplacian(gray, cv2.CV_64F).var())


def test_sharpen(region):
    target, _ = region
    face = cv2.resize(target, (128, 128), interpolation=cv2.INTER_AREA)
    assert sharpen(face, 0) is face
    assert sharpen(face, -1.0) is face
    before = face.copy()
    sharp = sharpen(face, 1.0)
    assert np.array_equal(face, before)                   # input untouched
    assert sharp.dtype == np.uint8 and sharp.shape == face.shape
    # measured: Laplacian variance 1122 -> 3568, mean brightness change 0.001
    assert _laplacian_variance(sharp) > 1.5 * _laplacian_variance(face)
    assert abs(float(sharp.mean()) - float(face.mean())) < 2      # no brightness change


# ---------------------------------------------------------------------- blend_face


def test_alpha_blending_a_face_identical_to_the_crop_returns_the_frame(frame, landmarks):
    to_aligned = geometry.face_transform(landmarks, "full", 256)
    to_model = geometry.face_transform(landmarks, "full", 256)
    face = geometry.warp_to_aligned(frame, to_model, 256)
    mask = geometry.hull_mask(geometry.transform_points(landmarks, to_aligned), 256)
    alpha = shape_mask(mask, 4, 8)
    out = blend_face(frame.copy(), face, to_model, alpha, to_aligned, "alpha")
    diff = np.abs(out.astype(np.int16) - frame)
    box = face_region(to_aligned, 256, frame.shape)
    assert box is not None
    inside = diff[box.y0:box.y1, box.x0:box.x1]
    # measured: mean 0.39 over the face's box (max 38 on single pixels), outside the box untouched
    assert inside.mean() < 2, inside.mean()
    outside = diff.copy()
    outside[box.y0:box.y1, box.x0:box.x1] = 0
    assert outside.max() == 0


def test_blend_face_changes_only_the_face_and_rejects_unknown_modes(frame, landmarks):
    to_aligned = geometry.face_transform(landmarks, "full", 256)
    to_model = geometry.face_transform(landmarks, "full", 128)
    face = np.full((128, 128, 3), (40, 200, 40), np.uint8)            # a green face
    mask = geometry.hull_mask(geometry.transform_points(landmarks, to_aligned), 256)
    alpha = shape_mask(mask, 4, 8)
    out = blend_face(frame.copy(), face, to_model, alpha, to_aligned, "alpha")
    # in frame pixels: the aligned mask's core (10 px further in) and everything well outside it
    back = geometry.invert_affine(to_aligned)
    core = cv2.warpAffine(shape_mask(mask, 14, 0), back, (512, 512)) > 0.5
    reach = cv2.warpAffine(shape_mask(mask, -12, 0), back, (512, 512)) > 0
    assert core.sum() > 20000
    # measured: 0.05 off the green inside the core; 75 changed on average within reach
    assert np.abs(out[core].astype(np.int16) - (40, 200, 40)).mean() < 2
    far = ~reach
    assert np.array_equal(out[far], frame[far])
    assert np.abs(out[reach].astype(np.int16) - frame[reach]).mean() > 50
    assert np.array_equal(out[far], frame[far])
    with pytest.raises(ValueError, match="unknown blend mode"):
        blend_face(frame.copy(), face, to_model, alpha, to_aligned, "multiply")
    from convert.backends import BLEND_MODES
    assert "multiply" not in BLEND_MODES


def test_face_region_is_clipped_to_the_frame(landmarks):
    to_aligned = geometry.face_transform(landmarks, "full", 256)
    box = face_region(to_aligned, 256, (512, 512, 3))
    assert box is not None and 0 <= box.x0 < 126 and 386 < box.x1 <= 512 and 0 <= box.y0 < 194
    shifted = to_aligned.copy()
    shifted[0, 2] -= 10000              # the crop lies far right of the frame: nothing to blend
    assert face_region(shifted, 256, (512, 512, 3)) is None


# ---------------------------------------------------------------------- frame rates


@pytest.mark.parametrize("fps, arg", [(29.97, "30000/1001"), (25.0, "25"), (23.976, "24000/1001"),
                                      (59.94, "60000/1001"), (30.0, "30"), (12.5, "12.5")])
def test_frame_rate_arg(fps, arg):
    assert frame_rate_arg(fps) == arg


def test_a_mask_reaching_the_crop_edge_fades_out_inside_the_crop():
    """A 'full' crop cuts the forehead: the mask must not end in a hard line at the crop's edge."""
    full = np.full((256, 256), 255, np.uint8)
    soft = shape_mask(full, 4, 8)
    assert soft[0].max() == 0.0 and soft[:, 0].max() == 0.0 and soft[-1].max() == 0.0
    column = soft[:, 128]
    assert np.all(np.diff(column[:24]) >= 0) and column[3] < 0.5 and column[24] > 0.99   # a ramp, not a step


def test_the_flat_probe_depends_only_on_the_box_size():
    """_seamless reuses the flat probe per box size: the offset it gives equals a fresh probe's for
    masks of every shape (60 ellipses of random size, place and angle in frames of random size)."""
    from convert.blending import _flat_probe
    rng = np.random.default_rng(1)
    for _ in range(60):
        height, width = (int(v) for v in rng.integers(80, 130, 2))
        mask = np.zeros((height, width), np.float32)
        centre = (int(rng.integers(35, width - 35)), int(rng.integers(35, height - 35)))
        axes = (int(rng.integers(15, 33)), int(rng.integers(15, 33)))
        cv2.ellipse(mask, centre, axes, float(rng.uniform(0, 90)), 0, 360, 1.0, -1)
        binary = _clone_mask(mask)
        x, y, w, h = cv2.boundingRect(binary)
        flat = np.full((height, width, 3), 128, np.uint8)
        fresh = cv2.seamlessClone(flat, flat, binary.copy(), (x + w // 2, y + h // 2), cv2.NORMAL_CLONE)
        assert np.array_equal(fresh[y:y + h, x:x + w], _flat_probe(h, w))
