"""The skin's fine and middle luminance bands: how grainy a face is, as one ratio.

Shared by ``evaluate.texture`` (the report's no-reference texture figure) and
``convert.grain`` (the swapped face's grain brought to the plate's): both split the
luminance at the same two Gaussian scales, given in pixels of a face whose eyes are
``EYE_PIXELS`` apart, so the ratio means the same at any face size.
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from pipeline.core.geometry import eye_distance
from pipeline.faces.regions import skin_region

#: Eye distance (pixels) the sigmas below are given at.
EYE_PIXELS = 64.0
#: Gaussian sigmas (pixels at that scale) splitting the fine and middle bands.
FINE_SIGMA = 0.7
MIDDLE_SIGMA = 2.0
#: Fewest skin pixels (at the working scale) worth measuring.
MIN_SKIN_PIXELS = 200
#: Pixels kept around the landmarks' box.
MARGIN = 4


def bands(grey: np.ndarray, fine_sigma: float = FINE_SIGMA, middle_sigma: float = MIDDLE_SIGMA
          ) -> tuple[np.ndarray, np.ndarray]:
    """(fine, middle) bands of a float32 luminance image: itself minus a blur of ``fine_sigma``, and that blur
    minus one of ``middle_sigma``."""
    fine_blur = cv2.GaussianBlur(grey, (0, 0), fine_sigma)
    middle_blur = cv2.GaussianBlur(grey, (0, 0), middle_sigma)
    return grey - fine_blur, fine_blur - middle_blur


def ratio(fine: np.ndarray, middle: np.ndarray, where: np.ndarray) -> float | None:
    """RMS of ``fine`` over RMS of ``middle`` at the pixels ``where`` is true (None for a flat patch)."""
    middle_rms = float(np.sqrt(np.mean(middle[where].astype(np.float64) ** 2)))
    if middle_rms < 1e-3:        # a flat patch: no structure to compare the fine band with
        return None
    return float(np.sqrt(np.mean(fine[where].astype(np.float64) ** 2)) / middle_rms)


@dataclass(frozen=True)
class FaceScale:
    """Where a face lies in an image and how it is brought to ``EYE_PIXELS``: the box (x0, y0, x1, y1) around its
    landmarks, the box's size at that scale, and the scale."""

    box: tuple[int, int, int, int]
    size: tuple[int, int]
    scale: float

    def shrink(self, image: np.ndarray) -> np.ndarray:
        """The box of ``image`` at the working scale (area-averaged when shrunk; linear, so sums shrink to sums)."""
        x0, y0, x1, y1 = self.box
        return self.resize(image[y0:y1, x0:x1])

    def resize(self, box_image: np.ndarray) -> np.ndarray:
        """An image of the box's own size brought to the working scale, as ``shrink`` does."""
        return cv2.resize(box_image, self.size, interpolation=cv2.INTER_AREA if self.scale < 1 else cv2.INTER_CUBIC)

    def skin(self, landmarks: np.ndarray) -> np.ndarray:
        """The skin (``skin_region``) of the face at the working scale, as a boolean mask."""
        points = (np.asarray(landmarks, dtype=np.float64) - np.array(self.box[:2], dtype=np.float64)) * self.scale
        return skin_region(points, (self.size[1], self.size[0])) > 0


def face_scale(landmarks: np.ndarray, shape: tuple[int, ...]) -> FaceScale | None:
    """The face's ``FaceScale`` in an image of ``shape`` (None when the face is too small or off the image)."""
    p = np.asarray(landmarks, dtype=np.float64)
    eyes = eye_distance(p)
    if eyes < 4:
        return None
    h, w = shape[:2]
    x0, y0 = (max(int(np.floor(v)) - MARGIN, 0) for v in p.min(axis=0))
    x1, y1 = min(int(np.ceil(p[:, 0].max())) + MARGIN, w), min(int(np.ceil(p[:, 1].max())) + MARGIN, h)
    if x1 - x0 < 8 or y1 - y0 < 8:
        return None
    scale = EYE_PIXELS / eyes
    size = (max(1, int(round((x1 - x0) * scale))), max(1, int(round((y1 - y0) * scale))))
    return FaceScale((x0, y0, x1, y1), size, scale)


def face_texture(image: np.ndarray, landmarks: np.ndarray) -> float | None:
    """Fine over middle-band RMS of the skin's luminance in an RGB ``image`` (68 landmarks in its pixels), the face
    brought to ``EYE_PIXELS`` first. None when the face is too small, off the image, or has too little skin."""
    where = face_scale(landmarks, image.shape)
    if where is None:
        return None
    skin = where.skin(landmarks)
    if int(skin.sum()) < MIN_SKIN_PIXELS:
        return None
    grey = cv2.cvtColor(where.shrink(image), cv2.COLOR_RGB2GRAY).astype(np.float32)
    return ratio(*bands(grey), skin)
