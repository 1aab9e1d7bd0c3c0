"""The automatic face mask from a dense landmarker's face outline (MediaPipe's 478-point mesh).

The mesh's outline runs over the forehead up to the hairline and follows the jaw and
cheeks closely, where dlib's 68 points stop at the brows (the ``hull`` masker has to
guess the forehead by pushing the brows up). So the swapped face gets its forehead, and
the mask edge follows the real face contour on turned heads.
"""
from __future__ import annotations

import logging

import cv2
import numpy as np

from pipeline.core import geometry
from pipeline.faces.backends.base import Masker
from pipeline.faces.mesh_ibug import FACE_OVAL

log = logging.getLogger(__name__)


class DenseMasker(Masker):
    name = "dense"
    description = "face outline of the 478-point mesh (forehead to chin, follows the contour of turned faces)"
    needs_dense = True

    def __init__(self) -> None:
        self._warned = False

    def mask(self, aligned: np.ndarray | None, landmarks: np.ndarray, size: int,
             dense: np.ndarray | None = None) -> np.ndarray:
        if dense is None or len(dense) <= max(FACE_OVAL):
            if not self._warned:
                self._warned = True
                log.warning("warning: a face has no dense points (extracted by a 68-point model); its automatic "
                            "mask is the landmark hull")
            return geometry.hull_mask(landmarks, size)
        out = np.zeros((size, size), np.uint8)
        outline = np.round(np.asarray(dense)[list(FACE_OVAL), :2] * 16).astype(np.int32)
        cv2.fillPoly(out, [outline], 255, lineType=cv2.LINE_8, shift=4)
        return out
