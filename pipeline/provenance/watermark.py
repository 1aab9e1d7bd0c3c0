"""An invisible, keyed watermark in the swapped face (convert puts it in) and the test that finds it again
(``main.py verify``); ``benchmarks/watermark.py`` measures how far it survives (issue 30).

Why this design: the mark has to survive what happens to a video after it leaves the
tool (re-encoding, resizing) and be found without the unmarked original. So it lives in
the face's own coordinates, not the frame's: +-1 cells (``CELLS`` a side) on the canonical
"full" face crop (``GRID`` px), drawn from the key and the frame's index (a new pattern
each frame, ``PERIOD`` of them in turn), warped onto the face with its alignment and added
to its luminance inside the landmark hull, ``AMPLITUDE`` grey levels strong (a face-region
PSNR of about 45 dB). Any detector's landmarks give the same canonical crop again, to
about a pixel of the grid.

Finding it: the crop's cell means, each minus the mean of its eight neighbours (the face's
own shading cancels at that scale), each cell weighed by how quiet the face is there, are
correlated with the key's signs for that frame. The signs are coin flips the face knows
nothing of, so without the mark the score is a standard normal variable. One frame's
score is weak against the face's own detail (a face is the same face in every frame); as
the pattern changes from frame to frame and the face does not, the scores of neighbouring
frames add up like independent evidence: ``window_scores`` sums ``WINDOW`` frames.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass

import cv2
import numpy as np

from pipeline.core import geometry

#: side of the canonical face crop the pattern lives on, and its cells a side
GRID = 126
CELLS = 42
#: grey levels added at a +1 cell (luminance: all three channels alike)
AMPLITUDE = 1.5
#: patterns used in turn, by frame index
PERIOD = 16
#: frames whose scores are summed for one frame's verdict, and the verdict's threshold (standard deviations)
WINDOW = 9
THRESHOLD = 5.0
_NEIGHBOURS = np.array([[1, 1, 1], [1, 0, 1], [1, 1, 1]], np.float32) / 8.0


def _hull_weight(landmarks_grid: np.ndarray) -> np.ndarray:
    """Where the mark goes, on the grid: the landmark hull shrunk a little and feathered (0..1)."""
    hull = geometry.hull_mask(landmarks_grid, GRID).astype(np.float32) / 255.0
    return cv2.GaussianBlur(cv2.erode(hull, np.ones((5, 5), np.uint8)), (0, 0), 2.0)


@dataclass(frozen=True)
class Watermark:
    """The mark of one key."""

    key: bytes

    @property
    def key_id(self) -> str:
        """A public name of the key (a hash of it): says which key made a mark, reveals nothing of the key."""
        return hashlib.sha256(b"face-watermark-id" + self.key).hexdigest()[:16]

    def cells(self, frame_index: int) -> np.ndarray:
        """The +-1 signs of frame ``frame_index`` (``CELLS`` a side)."""
        return _cells(self.key, frame_index % PERIOD)

    def embed(self, frame: np.ndarray, landmarks: np.ndarray, frame_index: int, amplitude: float = AMPLITUDE,
              pasted: tuple[np.ndarray, np.ndarray] | None = None) -> None:
        """Add the mark to the face with ``landmarks`` in ``frame`` (RGB uint8, changed in place).

        ``pasted``: (alpha, frame -> alpha transform), the share of each pixel the swap replaced; the mark
        goes only there (a face convert pasted nothing over stays as it was).
        """
        to_grid = geometry.face_transform(landmarks, "full", GRID)
        w = _hull_weight(geometry.transform_points(landmarks, to_grid))
        pattern = cv2.resize(self.cells(frame_index), (GRID, GRID), interpolation=cv2.INTER_NEAREST)
        signal = (pattern * w * amplitude).astype(np.float32)
        corners = geometry.crop_corners(to_grid, GRID)
        h, wd = frame.shape[:2]
        x0, y0 = np.maximum(np.floor(corners.min(axis=0)) - 2, 0).astype(int)
        x1, y1 = np.minimum(np.ceil(corners.max(axis=0)) + 2, [wd, h]).astype(int)
        if x1 <= x0 or y1 <= y0:
            return
        local = geometry.compose(to_grid, np.array([[1.0, 0.0, x0], [0.0, 1.0, y0]]))
        size = (int(x1 - x0), int(y1 - y0))
        field = cv2.warpAffine(signal, local, size, flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                               borderMode=cv2.BORDER_CONSTANT, borderValue=0)
        if pasted is not None:
            alpha, to_alpha = pasted
            share = alpha.astype(np.float32) / (255.0 if alpha.dtype == np.uint8 else 1.0)
            shift = geometry.compose(np.asarray(to_alpha, np.float64), np.array([[1.0, 0.0, x0], [0.0, 1.0, y0]]))
            field = field * cv2.warpAffine(share, shift, size, flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                                           borderMode=cv2.BORDER_CONSTANT, borderValue=0)
        roi = frame[y0:y1, x0:x1]
        roi[:] = np.clip(roi.astype(np.float32) + field[..., None], 0, 255).round().astype(np.uint8)

    def score(self, frame: np.ndarray, landmarks: np.ndarray, frame_index: int) -> float:
        """How strongly the face carries frame ``frame_index``'s mark, in standard deviations (normal without it)."""
        to_grid = geometry.face_transform(landmarks, "full", GRID)
        crop = geometry.warp_to_aligned(frame, to_grid, GRID)
        luma = cv2.cvtColor(crop, cv2.COLOR_RGB2GRAY).astype(np.float32)
        w = _hull_weight(geometry.transform_points(landmarks, to_grid))
        side = GRID // CELLS
        weight = w.reshape(CELLS, side, CELLS, side).sum(axis=(1, 3))
        means = (luma * w).reshape(CELLS, side, CELLS, side).sum(axis=(1, 3)) / np.maximum(weight, 1e-6)
        residual = means - cv2.filter2D(means.astype(np.float32), -1, _NEIGHBOURS, borderType=cv2.BORDER_REPLICATE)
        quiet = 1.0 / (cv2.medianBlur(np.abs(residual).astype(np.float32), 3) + 0.5)
        s = np.where(weight > 0.6 * side * side, residual * quiet, 0.0) * self.cells(frame_index)
        den = float(np.sqrt((s * s).sum()))
        return float(s.sum()) / den if den > 0 else 0.0


def window_scores(scores: dict[int, float], window: int = WINDOW) -> dict[int, float]:
    """Each frame's score summed with its neighbours' (``window`` consecutive frame indices that have a score),
    over the square root of their count: still a standard normal variable without the mark."""
    half = window // 2
    out = {}
    for index in scores:
        near = [scores[j] for j in range(index - half, index + half + 1) if j in scores]
        out[index] = float(sum(near) / np.sqrt(len(near)))
    return out


_CELLS: dict[tuple[bytes, int], np.ndarray] = {}


def _cells(key: bytes, phase: int) -> np.ndarray:
    if (key, phase) not in _CELLS:
        digest = hashlib.sha256(b"face-watermark-pattern" + key + phase.to_bytes(2, "little")).digest()
        rng = np.random.default_rng(int.from_bytes(digest[:8], "little"))
        _CELLS[(key, phase)] = rng.choice(np.array([-1.0, 1.0], np.float32), size=(CELLS, CELLS))
    return _CELLS[(key, phase)]
