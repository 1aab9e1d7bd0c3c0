"""dlib's 68-point shape predictor (ensemble of regression trees, iBUG 300-W)."""
from __future__ import annotations

import numpy as np

from pipeline.core.weights import model_path
from pipeline.faces.backends.base import Landmarker


class DlibLandmarker(Landmarker):
    name = "dlib"

    def __init__(self) -> None:
        import dlib
        self._dlib = dlib
        path = model_path("landmarks-68")
        self._predictor = dlib.shape_predictor(str(path))  # thread-safe: prediction is const
        self.description = f"dlib 68-point shape predictor, weights {path}"

    def landmarks(self, image: np.ndarray, box: tuple[float, float, float, float]) -> np.ndarray:
        x0, y0, x1, y1 = (int(round(v)) for v in box)
        shape = self._predictor(image, self._dlib.rectangle(x0, y0, x1 - 1, y1 - 1))
        return np.array([(p.x, p.y) for p in shape.parts()], dtype=np.float64)
