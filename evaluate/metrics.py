"""Quality measures of a swapped face against the original one, frame by frame.

Pure functions on frames and landmarks, so each can be checked on its own: identical
inputs give 0 error (or SSIM 1), and the figures mean the same for any video size.
"""
from __future__ import annotations

import cv2
import numpy as np

from pipeline.core import geometry
from pipeline.core.geometry import eye_distance, eye_openness  # noqa: F401 - part of this module's vocabulary

SSIM_C1 = (0.01 * 255) ** 2
SSIM_C2 = (0.03 * 255) ** 2
SEAM_SECTORS = 24


def expression_error(output: np.ndarray, reference: np.ndarray) -> float:
    """Mean 68-point distance between two faces, in units of the reference's eye distance."""
    diff = np.linalg.norm(np.asarray(output, float) - np.asarray(reference, float), axis=1)
    return float(diff.mean() / max(eye_distance(reference), 1e-6))


def pose_error(output: np.ndarray, reference: np.ndarray) -> tuple[float, tuple[float, float, float]]:
    """Euclidean norm of the yaw/pitch/roll differences in degrees, and the three differences."""
    a, b = np.array(geometry.head_pose(output)), np.array(geometry.head_pose(reference))
    d = a - b
    return float(np.linalg.norm(d)), (float(d[0]), float(d[1]), float(d[2]))


def face_mask(landmarks: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """The landmark-hull face mask (the region a swap replaces) in frame pixels."""
    return geometry.hull_mask(landmarks, shape[:2])


def _bbox(mask: np.ndarray, margin: int) -> tuple[slice, slice] | None:
    ys, xs = np.nonzero(mask)
    if len(xs) == 0:
        return None
    h, w = mask.shape
    return (slice(max(ys.min() - margin, 0), min(ys.max() + margin + 1, h)),
            slice(max(xs.min() - margin, 0), min(xs.max() + margin + 1, w)))


def ssim_in_mask(a: np.ndarray, b: np.ndarray, mask: np.ndarray) -> float | None:
    """Mean SSIM (Wang et al. 2004, Gaussian window sigma 1.5, luminance) over the mask."""
    box = _bbox(mask, 8)
    if box is None:
        return None
    ga = cv2.cvtColor(a[box], cv2.COLOR_RGB2GRAY).astype(np.float64)
    gb = cv2.cvtColor(b[box], cv2.COLOR_RGB2GRAY).astype(np.float64)
    blur = lambda x: cv2.GaussianBlur(x, (11, 11), 1.5)  # noqa: E731
    mu_a, mu_b = blur(ga), blur(gb)
    var_a = blur(ga * ga) - mu_a ** 2
    var_b = blur(gb * gb) - mu_b ** 2
    cov = blur(ga * gb) - mu_a * mu_b
    ssim = ((2 * mu_a * mu_b + SSIM_C1) * (2 * cov + SSIM_C2)) / (
        (mu_a ** 2 + mu_b ** 2 + SSIM_C1) * (var_a + var_b + SSIM_C2))
    inside = mask[box] > 0
    return float(ssim[inside].mean())


def seam_delta_e(frame: np.ndarray, mask: np.ndarray, band: int) -> float | None:
    """Colour step across the mask border: CIE76 delta E between thin bands inside and out.

    The border is cut into sectors around the face so that a seam on one side is not
    averaged away by the other; the figure is the mean over sectors. On an untouched
    frame it is the natural contrast at the face outline (jaw, hairline), which is what
    a swap's figure should stay close to.
    """
    box = _bbox(mask, band + 2)
    if box is None:
        return None
    m = mask[box] > 0
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * band + 1, 2 * band + 1))
    inner = m & ~(cv2.erode(m.astype(np.uint8), kernel) > 0)
    outer = (cv2.dilate(m.astype(np.uint8), kernel) > 0) & ~m
    lab = cv2.cvtColor(frame[box].astype(np.float32) / 255.0, cv2.COLOR_RGB2Lab)
    ys, xs = np.nonzero(m)
    cy, cx = ys.mean(), xs.mean()
    yy, xx = np.mgrid[0:m.shape[0], 0:m.shape[1]]
    sector = ((np.arctan2(yy - cy, xx - cx) + np.pi) / (2 * np.pi) * SEAM_SECTORS).astype(int) % SEAM_SECTORS
    steps = []
    for s in range(SEAM_SECTORS):
        i, o = inner & (sector == s), outer & (sector == s)
        if i.sum() >= 5 and o.sum() >= 5:
            steps.append(float(np.linalg.norm(lab[i].mean(axis=0) - lab[o].mean(axis=0))))
    return float(np.mean(steps)) if steps else None


def second_difference_jitter(track: list[np.ndarray]) -> list[float | None]:
    """Per frame of a face track: RMS of the second temporal difference of the landmarks,
    in units of the face's eye distance (None at the ends, where it is undefined).

    Smooth motion, however fast, has a small second difference; detector jitter a large one.
    """
    out: list[float | None] = [None] * len(track)
    for t in range(1, len(track) - 1):
        d2 = track[t + 1] - 2 * track[t] + track[t - 1]
        out[t] = float(np.sqrt((d2 ** 2).sum(axis=1).mean()) / max(eye_distance(track[t]), 1e-6))
    return out


def summary(values: list[float | None], worst: str = "max") -> dict:
    """mean / median / worst of the measured values; all None when nothing was measured."""
    vals = np.array([v for v in values if v is not None], dtype=np.float64)
    if vals.size == 0:
        return {"mean": None, "median": None, "worst": None, "count": 0}
    pick = vals.min() if worst == "min" else vals.max()
    return {"mean": float(vals.mean()), "median": float(np.median(vals)), "worst": float(pick),
            "count": int(vals.size)}


def rms(values: list[float | None]) -> float | None:
    vals = np.array([v for v in values if v is not None], dtype=np.float64)
    return float(np.sqrt((vals ** 2).mean())) if vals.size else None


# ---------------------------------------------------------------- blinks and mouth movement

#: iBUG-68 inner lips.
_INNER_LIPS = tuple(range(60, 68))
#: Eyes count as closed below this fraction of the reference's median openness over the clip.
#: Relative, because each landmark model draws lids its own way (dlib's usual 0.2 is about 0.6
#: of an open eye's 0.3); a clip is mostly open eyes, so its median is an open eye.
EYES_CLOSED_FRACTION = 0.6
#: The mouth counts as open when the inner lips are apart by more than this share of its width.
MOUTH_OPEN = 0.1


def mouth_openness(landmarks: np.ndarray) -> float:
    """Mean gap between the inner lips over the mouth's inner width (0 closed)."""
    p = np.asarray(landmarks, float)[list(_INNER_LIPS)]
    gap = (np.linalg.norm(p[1] - p[7]) + np.linalg.norm(p[2] - p[6]) + np.linalg.norm(p[3] - p[5])) / 3.0
    return float(gap / max(np.linalg.norm(p[0] - p[4]), 1e-6))


def agreement(reference: list[float | None], output: list[float | None], closed_below: float | None,
              what: str) -> dict:
    """How the output's openness (eyes or mouth) follows the reference's over the clip.

    ``correlation`` (1 = moves exactly with it), ``mean_abs_difference``, and the frames where
    the state flips: ``closed_in_original_open_in_result`` (a lost blink, or a mouth that
    stays open) and the reverse. ``closed_below`` is the openness under which a face counts
    as closed (None: ``EYES_CLOSED_FRACTION`` of the reference's median).
    """
    both = [(r, o) for r, o in zip(reference, output) if r is not None and o is not None]
    if not both:
        return {"what": what, "frames": 0, "correlation": None, "mean_abs_difference": None, "threshold": None,
                "closed_in_original": 0, "closed_in_original_open_in_result": 0,
                "open_in_original_closed_in_result": 0}
    ref, out = np.array([b[0] for b in both]), np.array([b[1] for b in both])
    limit = float(closed_below if closed_below is not None else EYES_CLOSED_FRACTION * np.median(ref))
    corr = float(np.corrcoef(ref, out)[0, 1]) if ref.std() > 1e-9 and out.std() > 1e-9 else None
    closed_ref, closed_out = ref < limit, out < limit
    return {"what": what, "frames": int(len(both)), "correlation": corr,
            "mean_abs_difference": float(np.abs(ref - out).mean()), "threshold": limit,
            "closed_in_original": int(closed_ref.sum()),
            "closed_in_original_open_in_result": int((closed_ref & ~closed_out).sum()),
            "open_in_original_closed_in_result": int((~closed_ref & closed_out).sum())}
