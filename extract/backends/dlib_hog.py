"""dlib's HOG + linear SVM frontal face detector (ships inside dlib: no weight file)."""
from __future__ import annotations

import threading

import numpy as np

from extract.backends.base import Detection, FaceDetector, by_area, parse_upsample

#: Upsampling doubles the image side; beyond this size one retry costs too much per frame.
RETRY_MAX_SIDE = 1200


class DlibHogDetector(FaceDetector):
    name = "dlib"

    def __init__(self, upsample: str = "auto") -> None:
        import dlib
        self._dlib = dlib
        self.upsample, self.retry = parse_upsample(upsample)
        self._local = threading.local()
        self.description = f"dlib {dlib.__version__} HOG frontal detector (upsample {upsample})"

    def _detector(self):
        det = getattr(self._local, "det", None)
        if det is None:
            det = self._local.det = self._dlib.get_frontal_face_detector()
        return det

    def _run(self, image: np.ndarray, upsample: int) -> list[Detection]:
        rects, scores, _ = self._detector().run(image, upsample, 0.0)
        return [Detection((r.left(), r.top(), r.right() + 1, r.bottom() + 1), float(s))
                for r, s in zip(rects, scores)]

    def detect(self, image: np.ndarray) -> list[Detection]:
        found = self._run(image, self.upsample)
        if not found and self.retry and max(image.shape[:2]) <= RETRY_MAX_SIDE:
            found = self._run(image, self.upsample + 1)
        return by_area(found)
