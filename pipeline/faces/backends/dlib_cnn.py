"""dlib's CNN (MMOD) face detector: finds turned and small faces HOG misses; slow on CPU."""
from __future__ import annotations

import numpy as np

from pipeline.core.weights import model_path
from pipeline.faces.backends.base import Detection, FaceDetector, by_area, parse_upsample


class DlibCnnDetector(FaceDetector):
    name = "dlib-cnn"

    def __init__(self, upsample: str = "auto", min_face: int = 80) -> None:  # noqa: ARG002 - full scan
        import dlib
        path = model_path("dlib-cnn-detector")
        self._net = dlib.cnn_face_detection_model_v1(str(path))
        self.upsample, self.retry = parse_upsample(upsample)
        self.description = f"dlib {dlib.__version__} CNN detector, weights {path}"

    def _run(self, image: np.ndarray, upsample: int) -> list[Detection]:
        out = []
        for d in self._net(image, upsample):
            r = d.rect
            out.append(Detection((r.left(), r.top(), r.right() + 1, r.bottom() + 1), float(d.confidence)))
        return out

    def detect(self, image: np.ndarray, thorough: bool = True) -> list[Detection]:
        found = self._run(image, self.upsample)
        if not found and thorough and self.retry and max(image.shape[:2]) <= 800:
            found = self._run(image, self.upsample + 1)
        return by_area(found)
