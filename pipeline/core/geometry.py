"""Face geometry shared by every stage: template, Umeyama alignment, face types, pose.

One transform function (``face_transform``) makes the aligned crop in extract, the
warp-back in convert and the metrics in evaluation, so the stages can never disagree
about where a face is.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass

import cv2
import numpy as np

from pipeline.core.weights import model_path

# iBUG 68-point index groups.
JAW = list(range(0, 17))
BROW_RIGHT = list(range(17, 22))   # subject's right = image left
BROW_LEFT = list(range(22, 27))
NOSE_BRIDGE = list(range(27, 31))
NOSE_BASE = list(range(31, 36))
EYE_RIGHT = list(range(36, 42))
EYE_LEFT = list(range(42, 48))
MOUTH = list(range(48, 68))

#: Points used for the similarity fit: brows, nose, eyes, mouth corners. The jaw is
#: left out because its contour slides along the cheek when the head turns.
ALIGN_POINTS = list(range(17, 49)) + [54]


@dataclass(frozen=True)
class FaceType:
    """How much of the head an aligned crop shows, in template units around the face."""

    name: str
    padding: float      # margin added on each side of the unit template square
    shift_up: float     # fraction of the crop side moved toward the forehead (< 0: chin)


FACE_TYPES: dict[str, FaceType] = {
    "full": FaceType("full", 0.2109375, -0.04),   # down a little: keep the chin
    "whole": FaceType("whole", 0.40, 0.07),
    "head": FaceType("head", 0.70, 0.12),
}


@functools.lru_cache(maxsize=1)
def mean_face() -> np.ndarray:
    """Canonical 68-point mean face, inner points (17..67) spanning the unit square.

    Taken from the mean shape stored in dlib's 68-point shape predictor (the average
    over its training faces), mirrored and averaged so the template is exactly
    symmetric, then scaled uniformly so the brows-to-mouth box fills [0, 1].
    """
    from pipeline.faces.dlib_format import read_shape_predictor_mean_shape

    shape = read_shape_predictor_mean_shape(model_path("landmarks-68"))
    mirrored = shape[MIRROR_68].copy()
    mirrored[:, 0] = 1.0 - mirrored[:, 0]
    shape = (shape + mirrored) / 2.0
    inner = shape[17:]
    lo, hi = inner.min(axis=0), inner.max(axis=0)
    scale = float((hi - lo).max())
    centre = (lo + hi) / 2.0
    return (shape - centre) / scale + 0.5


#: Index permutation that maps a 68-point shape onto its horizontal mirror image.
MIRROR_68 = np.array(
    list(range(16, -1, -1))                      # jaw
    + list(range(26, 16, -1))                    # brows
    + [27, 28, 29, 30] + [35, 34, 33, 32, 31]    # nose
    + [45, 44, 43, 42, 47, 46] + [39, 38, 37, 36, 41, 40]  # eyes
    + [54, 53, 52, 51, 50, 49, 48, 59, 58, 57, 56, 55]     # outer lips
    + [64, 63, 62, 61, 60, 67, 66, 65]           # inner lips
)


def eye_distance(landmarks: np.ndarray) -> float:
    """Distance between the two eye centres: the face's own length unit for every stage's figures."""
    pts = np.asarray(landmarks, dtype=np.float64)
    return float(np.linalg.norm(pts[EYE_RIGHT].mean(axis=0) - pts[EYE_LEFT].mean(axis=0)))


#: iBUG-68 eye contours (6 points each: corner, two upper, corner, two lower).
EYE_CONTOURS = (tuple(range(36, 42)), tuple(range(42, 48)))


def eye_openness(landmarks: np.ndarray) -> float:
    """Mean eye aspect ratio of both eyes: lid gap over eye width (about 0.3 open, under 0.15 closed).

    Here, not in evaluate, because convert carries blinks by it and evaluate measures them with it."""
    p = np.asarray(landmarks, float)
    ratios = []
    for eye in EYE_CONTOURS:
        e = p[list(eye)]
        gap = np.linalg.norm(e[1] - e[5]) + np.linalg.norm(e[2] - e[4])
        ratios.append(gap / max(2.0 * np.linalg.norm(e[0] - e[3]), 1e-6))
    return float(np.mean(ratios))


def umeyama(src: np.ndarray, dst: np.ndarray, estimate_scale: bool = True) -> np.ndarray:
    """Least-squares similarity (2x3) taking ``src`` points onto ``dst`` (Umeyama 1991)."""
    src = np.asarray(src, dtype=np.float64)
    dst = np.asarray(dst, dtype=np.float64)
    n, dim = src.shape
    mu_s, mu_d = src.mean(axis=0), dst.mean(axis=0)
    sc, dc = src - mu_s, dst - mu_d
    cov = dc.T @ sc / n
    u, s, vt = np.linalg.svd(cov)
    d = np.ones(dim)
    if np.linalg.det(cov) < 0:
        d[-1] = -1.0
    rot = u @ np.diag(d) @ vt
    var_s = (sc ** 2).sum() / n
    scale = float((s * d).sum() / var_s) if estimate_scale and var_s > 0 else 1.0
    out = np.zeros((2, 3))
    out[:, :2] = scale * rot
    out[:, 2] = mu_d - scale * rot @ mu_s
    return out


def transform_points(points: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    """Apply a 2x3 affine matrix to (N, 2) points."""
    pts = np.asarray(points, dtype=np.float64)
    return pts @ matrix[:, :2].T + matrix[:, 2]


def invert_affine(matrix: np.ndarray) -> np.ndarray:
    """Inverse of a 2x3 affine matrix (aligned -> source for convert's warp-back)."""
    return cv2.invertAffineTransform(np.asarray(matrix, dtype=np.float64))


def similarity_scale(matrix: np.ndarray) -> float:
    """Isotropic scale factor of a similarity matrix."""
    return float(np.sqrt(abs(np.linalg.det(matrix[:, :2]))))


def to_template(landmarks: np.ndarray) -> np.ndarray:
    """Similarity (2x3) from source coordinates onto the unit mean-face template."""
    landmarks = np.asarray(landmarks, dtype=np.float64)
    return umeyama(landmarks[ALIGN_POINTS], mean_face()[ALIGN_POINTS])


def crop_from_template(face_type: str, size: int) -> np.ndarray:
    """Similarity (2x3) from template units to the pixels of a ``size`` crop."""
    ft = FACE_TYPES[face_type]
    side = 1.0 + 2.0 * ft.padding
    scale = size / side
    x0 = 0.5 - side / 2.0
    y0 = 0.5 - side / 2.0 - ft.shift_up * side
    return np.array([[scale, 0.0, -x0 * scale], [0.0, scale, -y0 * scale]])


def resize_transform(from_size: int, to_size: int) -> np.ndarray:
    """2x3 matrix from pixel coordinates of a square image to those of its ``cv2.resize`` to ``to_size``.

    Pixel centres sit at integers, so the scale pivots on the image's edge at -0.5, not
    on pixel 0: ``x' = (x + 0.5) * s - 0.5``. Scaling the coordinates by ``s`` alone puts
    points half a source pixel off (a 256 crop resized to 128 moves by 0.5 px of 256).
    """
    s = to_size / from_size
    return np.array([[s, 0.0, 0.5 * s - 0.5], [0.0, s, 0.5 * s - 0.5]])


def compose(outer: np.ndarray, inner: np.ndarray) -> np.ndarray:
    """2x3 matrix of ``outer(inner(x))``."""
    a = np.vstack([outer, [0, 0, 1]])
    b = np.vstack([inner, [0, 0, 1]])
    return (a @ b)[:2]


def move_between_crops(image: np.ndarray, old: np.ndarray, new: np.ndarray, size: int,
                       tolerance: float = 0.01) -> np.ndarray:
    """An aligned image (a mask) cut with source->crop ``old``, as the crop ``new`` would cut it.

    Returned unchanged when no crop corner moves more than ``tolerance`` pixels, so a
    mask re-stored after an identical re-extract keeps its exact pixels.
    """
    move = compose(np.asarray(new, np.float64), invert_affine(old))
    corners = np.array([[0, 0], [size, 0], [0, size], [size, size]], dtype=np.float64)
    if image.shape[0] == size and np.abs(transform_points(corners, move) - corners).max() <= tolerance:
        return image
    return cv2.warpAffine(image, move, (size, size), flags=cv2.INTER_LINEAR)


def face_transform(landmarks: np.ndarray, face_type: str = "full", size: int = 256) -> np.ndarray:
    """Source -> aligned similarity (2x3) for a face of the given type and crop size."""
    if face_type not in FACE_TYPES:
        raise ValueError(f"unknown face type {face_type!r}; choose from {', '.join(FACE_TYPES)}")
    return compose(crop_from_template(face_type, size), to_template(landmarks))


def crop_corners(matrix: np.ndarray, size: int) -> np.ndarray:
    """(4, 2) source coordinates of the corners of the ``size`` crop made by ``matrix``."""
    square = np.array([[0, 0], [size, 0], [0, size], [size, size]], dtype=np.float64)
    return transform_points(square, invert_affine(matrix))


def warp_to_aligned(image: np.ndarray, matrix: np.ndarray, size: int) -> np.ndarray:
    """Aligned crop; pixels outside the source are black (honest about partial faces).

    A face shrunk more than 2x would alias (jagged hair and eyelashes the network then
    learns), so the face's region first goes down an image pyramid until the rest of the
    shrink is at most 2x; then one bicubic warp (as sharp as Lanczos here, 6x faster).
    """
    matrix = np.asarray(matrix, dtype=np.float64)
    scale = similarity_scale(matrix)
    if scale >= 0.5:
        return cv2.warpAffine(image, matrix, (size, size), flags=cv2.INTER_CUBIC,
                              borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    corners = crop_corners(matrix, size)
    h, w = image.shape[:2]
    margin = 4.0 / scale
    x0, y0 = np.maximum(np.floor(corners.min(axis=0) - margin), 0).astype(int)
    x1, y1 = np.minimum(np.ceil(corners.max(axis=0) + margin), [w, h]).astype(int)
    if x1 <= x0 or y1 <= y0:
        return np.zeros((size, size) + image.shape[2:], dtype=image.dtype)
    region = image[y0:y1, x0:x1]
    local = matrix.copy()
    local[:, 2] += local[:, :2] @ np.array([x0, y0], dtype=np.float64)
    while scale < 0.5 and min(region.shape[:2]) >= 4:
        region = cv2.pyrDown(region)   # output pixel i sits on input pixel 2i
        local[:, :2] *= 2.0
        scale *= 2.0
    return cv2.warpAffine(region, local, (size, size), flags=cv2.INTER_CUBIC,
                          borderMode=cv2.BORDER_CONSTANT, borderValue=0)


def template_residual(landmarks: np.ndarray) -> float:
    """RMS distance, in template units, between the fitted landmarks and the mean face.

    Small for anything face-shaped; used to reject landmark fits on non-faces.
    """
    m = to_template(landmarks)
    fitted = transform_points(np.asarray(landmarks)[ALIGN_POINTS], m)
    return float(np.sqrt(((fitted - mean_face()[ALIGN_POINTS]) ** 2).sum(axis=1).mean()))


def _mean_face_3d() -> np.ndarray:
    """Rough 3D mean face: the 2D template plus a depth profile per region.

    Depth (z, away from the camera, template units) follows the head's curvature:
    the nose tip is nearest, the jaw ends near the ears are furthest. Good enough for
    yaw/pitch/roll to within a few degrees, which is what sorting and metrics need.
    """
    face = mean_face()
    x = face[:, 0]
    side = ((x - 0.5) / 0.5) ** 2  # 0 on the midline, ~1 at the face edge
    z = np.zeros(68)
    z[JAW] = 0.05 + 0.45 * side[JAW]
    z[BROW_RIGHT + BROW_LEFT] = -0.02 + 0.20 * side[BROW_RIGHT + BROW_LEFT]
    z[NOSE_BRIDGE] = [-0.02, -0.09, -0.16, -0.23]
    z[NOSE_BASE] = [-0.06, -0.09, -0.11, -0.09, -0.06]
    z[EYE_RIGHT + EYE_LEFT] = 0.06 + 0.12 * side[EYE_RIGHT + EYE_LEFT]
    z[MOUTH] = -0.05 + 0.20 * side[MOUTH]
    return np.column_stack([face, z])


MEAN_FACE_3D_POINTS = list(range(17, 68)) + [8]


def head_pose(landmarks: np.ndarray) -> tuple[float, float, float]:
    """Yaw, pitch, roll in degrees from 68 landmarks (weak-perspective fit).

    0/0/0 is a face looking into the camera, upright. Yaw > 0: the face turns toward
    the image's right; pitch > 0: chin up (nostrils show); roll > 0: clockwise in the image.
    """
    model = _mean_face_3d()[MEAN_FACE_3D_POINTS]
    pts = np.asarray(landmarks, dtype=np.float64)[MEAN_FACE_3D_POINTS]
    model_c = model - model.mean(axis=0)
    pts_c = pts - pts.mean(axis=0)
    proj, *_ = np.linalg.lstsq(model_c, pts_c, rcond=None)  # (3, 2): pts ~ model @ proj
    rows = proj.T                                          # (2, 3) = s * R[:2]
    u, _, vt = np.linalg.svd(rows, full_matrices=False)
    r12 = u @ vt                                           # nearest orthonormal rows
    rot = np.vstack([r12, np.cross(r12[0], r12[1])])
    yaw = np.degrees(np.arcsin(np.clip(-rot[2, 0], -1.0, 1.0)))
    pitch = np.degrees(np.arctan2(rot[2, 1], rot[2, 2]))
    roll = np.degrees(np.arctan2(rot[1, 0], rot[0, 0]))
    return float(-yaw), float(-pitch), float(roll)


def mask_polygons(landmarks: np.ndarray) -> list[np.ndarray]:
    """Convex pieces whose union is the face mask, brows raised to cover the forehead.

    The face is not convex in profile, so the mask is the union of two half-face hulls
    (jaw half + raised brow + nose line) and a hull of the eyes and nose. The forehead
    reach is half the brow-to-nose-base distance, highest at the face's midline.
    """
    pts = np.asarray(landmarks, dtype=np.float64)
    brows = pts[17:27]
    up = pts[27] - pts[8]
    up /= max(np.linalg.norm(up), 1e-6)
    third = np.linalg.norm(brows.mean(axis=0) - pts[33])
    across = np.linspace(-1.0, 1.0, 10)
    reach = third * (0.35 + 0.25 * (1.0 - across ** 2))
    raised = brows + reach[:, None] * up[None, :]
    centre_line = pts[[27, 28, 29, 30, 33, 51, 57, 8]]
    left = np.vstack([pts[0:9], raised[0:5], raised[5:6], centre_line])
    right = np.vstack([pts[8:17], raised[5:10], raised[4:5], centre_line])
    middle = pts[27:48]
    return [left, right, middle]


def hull_mask(landmarks: np.ndarray, size: int | tuple[int, int]) -> np.ndarray:
    """Binary uint8 mask (0/255) of the face region: a ``size`` crop, or an (h, w) frame."""
    shape = (size, size) if isinstance(size, int) else tuple(size[:2])
    mask = np.zeros(shape, dtype=np.uint8)
    for poly in mask_polygons(landmarks):
        hull = cv2.convexHull(np.round(poly * 16).astype(np.int32))
        cv2.fillConvexPoly(mask, hull, 255, lineType=cv2.LINE_8, shift=4)
    return mask
