"""Quality measures of a swapped face against the original one, frame by frame.

Pure functions on frames and landmarks, so each can be checked on its own: identical
inputs give 0 error (or SSIM 1), and the figures mean the same for any video size.
"""
from __future__ import annotations

import cv2
import numpy as np

from pipeline.core import geometry
from pipeline.core.geometry import eye_distance  # noqa: F401 - part of this module's vocabulary

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
