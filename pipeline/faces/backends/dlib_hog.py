"""dlib's HOG + linear SVM frontal face detector (ships inside dlib: no weight file)."""
from __future__ import annotations

import threading

import cv2
import numpy as np

from pipeline.faces.backends.base import Detection, FaceDetector, by_area, parse_upsample

#: Upsampling doubles the image side; beyond this size one retry costs too much per frame.
RETRY_MAX_SIDE = 1200
#: The detector's window: the smallest face it finds at a given scale, in pixels.
WINDOW = 80


class DlibHogDetector(FaceDetector):
    name = "dlib"

    def __init__(self, upsample: str = "auto", min_face: int = WINDOW) -> None:
        import dlib
        self._dlib = dlib
        self.upsample, self.retry = parse_upsample(upsample)
        self.min_face = max(WINDOW, int(min_face))
        self._local = threading.local()
        self.description = (f"dlib {dlib.__version__} HOG frontal detector (upsample {upsample}, "
                            f"first pass for faces >= {self.min_face} px)")

    def _detector(self):
        det = getattr(self._local, "det", None)
        if det is None:
            det = self._local.det = self._dlib.get_frontal_face_detector()
        return det

    def _run(self, image: np.ndarray, upsample: int, scale: float = 1.0) -> list[Detection]:
        if scale < 1.0:
            image = cv2.resize(image, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
        rects, scores, _ = self._detector().run(image, upsample, 0.0)
        inv = 1.0 / scale
        return [Detection((r.left() * inv, r.top() * inv, (r.right() + 1) * inv, (r.bottom() + 1) * inv), float(s))
                for r, s in zip(rects, scores)]

    def detect(self, image: np.ndarray, thorough: bool = True) -> list[Detection]:
        """Largest faces first; a cheap pass for faces >= min_face, then finer passes if empty.

        The HOG cost grows with the pixels scanned: looking for faces of at least
        ``min_face`` on an image shrunk so that size becomes the 80 px window is several
        times faster, and landmarks are still put on the full-resolution image.
        """
        found: list[Detection] = []
        scale = WINDOW / self.min_face
        if scale < 0.9:
            found = self._run(image, 0, scale)
            if not thorough:
                return by_area(found)
        if not found:
            found = self._run(image, self.upsample)
        if not thorough:
            return by_area(found)
        if not found and self.retry and max(image.shape[:2]) <= RETRY_MAX_SIDE:
            found = self._run(image, self.upsample + 1)
        return by_area(found)
