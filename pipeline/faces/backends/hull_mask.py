"""The automatic face mask from landmarks: union of convex hulls, forehead included."""
from __future__ import annotations

import numpy as np

from pipeline.core import geometry
from pipeline.faces.backends.base import Masker


class HullMasker(Masker):
    name = "hull"
    description = "landmark hull (jaw halves, eyes and nose, brows raised over the forehead)"

    def mask(self, aligned: np.ndarray | None, landmarks: np.ndarray, size: int,
             dense: np.ndarray | None = None) -> np.ndarray:
        return geometry.hull_mask(landmarks, size)
