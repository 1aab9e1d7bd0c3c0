"""Temporal smoothing of a face track's landmarks before any warp.

Detector landmarks shake by a pixel or two from frame to frame although the face moves
smoothly; warping with them makes the swapped face shimmer. Convert knows the whole
track in advance, so it can smooth without looking only backwards (which would lag):
each frame's landmarks are replaced by a local quadratic fit, Gaussian-weighted over
the neighbouring frames (a Savitzky-Golay-like filter with soft weights). A quadratic
follows constant velocity and constant acceleration exactly, so a fast head turn is not
dragged behind; only the frame-to-frame wobble, which a quadratic cannot follow, goes.

Smoothing never crosses a segment boundary: a gap in the track (frames where the face
was not found), a change of track, or a change no head makes in one frame (a scene cut
where the next shot's face happens to continue the track): a jump of the face's centre or
size, or a roll of the head. Issue 27's clip cuts from Hill to Hill mirrored and rolled at
the same place and size; the track ran on, and smoothing drew the first frames after the cut
toward the last shot's geometry. (A change of the face's rigid shape was tried as a cut test
too: a blink frame of the Hill clip moves the jaw and nose points 0.071-0.091 eye distances
after the best similarity, a cut 0.103-0.207, too close to draw a line between.)
"""
from __future__ import annotations

import numpy as np

from pipeline.core.geometry import eye_distance

#: Largest move of the face centre between consecutive frames, in eye distances, that
#: still counts as motion; a larger one is a cut.
MAX_JUMP = 1.0
#: Largest change of face size between consecutive frames (ratio) that is still motion.
MAX_SCALE_STEP = 1.25
#: Largest roll of the head between consecutive frames, in degrees, that is still motion. The shared
#: clips' heads roll at most 2.2 degrees a frame; issue 27's clip's cuts 2.8 and 7.1.
MAX_ROLL_STEP = 5.0


def _roll(points: np.ndarray) -> float:
    """The head's roll in degrees: the angle of the line from the left eye's centre to the right's."""
    d = points[42:48].mean(axis=0) - points[36:42].mean(axis=0)
    return float(np.degrees(np.arctan2(d[1], d[0])))


def is_cut(prev: np.ndarray, cur: np.ndarray) -> bool:
    """True when the face's landmarks change between consecutive frames more than a moving head can."""
    e_prev, e_cur = eye_distance(prev), eye_distance(cur)
    jump = np.linalg.norm(cur.mean(axis=0) - prev.mean(axis=0)) / max(e_prev, 1e-6)
    ratio = max(e_cur, 1e-6) / max(e_prev, 1e-6)
    roll = abs((_roll(cur) - _roll(prev) + 180.0) % 360.0 - 180.0)
    return bool(jump > MAX_JUMP or not 1.0 / MAX_SCALE_STEP <= ratio <= MAX_SCALE_STEP or roll > MAX_ROLL_STEP)


def segment_bounds(frames: np.ndarray, landmarks: np.ndarray) -> list[tuple[int, int]]:
    """[start, stop) index ranges of one track's faces (sorted by frame) that may be smoothed together."""
    n = len(frames)
    if n == 0:
        return []
    cuts = [0]
    for i in range(1, n):
        if frames[i] != frames[i - 1] + 1 or is_cut(np.asarray(landmarks[i - 1], dtype=np.float64),
                                                     np.asarray(landmarks[i], dtype=np.float64)):
            cuts.append(i)
    cuts.append(n)
    return [(a, b) for a, b in zip(cuts[:-1], cuts[1:])]


def _local_quadratic_weights(n: int, t: int, sigma: float, radius: int) -> tuple[int, np.ndarray]:
    """Weights h over frames [lo, lo + len(h)) such that sum(h * x) is the fit's value at t."""
    lo, hi = max(0, t - radius), min(n, t + radius + 1)
    offsets = np.arange(lo, hi, dtype=np.float64) - t
    w = np.exp(-0.5 * (offsets / sigma) ** 2)
    degree = min(2, len(offsets) - 1)
    design = np.vander(offsets, degree + 1, increasing=True)       # 1, d, d^2
    gram = design.T @ (w[:, None] * design)
    coef = np.linalg.solve(gram + 1e-9 * np.eye(degree + 1), (design * w[:, None]).T)
    return lo, coef[0]


def smooth_segment(landmarks: np.ndarray, sigma: float) -> np.ndarray:
    """Local-quadratic smoothing of (T, 68, 2) landmarks; sigma in frames (0 = unchanged)."""
    pts = np.asarray(landmarks, dtype=np.float64)
    n = len(pts)
    if sigma <= 0 or n < 3:
        return pts.copy()
    radius = max(1, int(np.ceil(3.0 * sigma)))
    flat = pts.reshape(n, -1)
    out = np.empty_like(flat)
    for t in range(n):
        lo, h = _local_quadratic_weights(n, t, sigma, radius)
        out[t] = h @ flat[lo:lo + len(h)]
    return out.reshape(pts.shape)


def smooth_track(frames: np.ndarray, landmarks: np.ndarray, sigma: float) -> np.ndarray:
    """Smoothed landmarks for one track (faces sorted by frame), segment by segment."""
    pts = np.asarray(landmarks, dtype=np.float64)
    out = pts.copy()
    for a, b in segment_bounds(np.asarray(frames), pts):
        out[a:b] = smooth_segment(pts[a:b], sigma)
    return out
