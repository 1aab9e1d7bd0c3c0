"""Finding faces in an image: a detector and a landmark model, chosen by registry name.

Extract and evaluate both find faces through this one class, so evaluate can analyse a
video exactly the way its dst set was extracted (the names are in workspace.json).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from pipeline.core.profile import StepTimes
from pipeline.faces.backends.base import FaceDetector, Landmarker
from pipeline.registries import DETECTORS, LANDMARKERS


@dataclass
class FoundFace:
    box: tuple[float, float, float, float]
    landmarks: np.ndarray          # (68, 2) image pixels
    score: float | None
    origin: str = "detected"       # 'detected' or 'bridged'
    track: int | None = None
    dense: np.ndarray | None = None   # (N, 2) the landmarker's dense points, image pixels (MediaPipe: 478)


#: A dense landmarker's face probability below which a detection is taken for a false one.
MIN_FACE_PROBABILITY = 0.5


class FaceAnalyser:
    """Faces in an RGB image, largest first, with 68 landmarks each. Thread-safe."""

    def __init__(self, detector: str = "dlib", landmarker: str = "dlib", upsample: str = "auto",
                 min_face: int = 80, landmark_passes: int | None = None) -> None:
        self.detector_name, self.landmarker_name = detector, landmarker
        self.detector: FaceDetector = DETECTORS.load(detector)(upsample=upsample, min_face=min_face)
        options = {}
        if landmark_passes is not None and "--landmark-passes" in LANDMARKERS.get(landmarker).options:
            options["passes"] = landmark_passes
        self.landmarker: Landmarker = LANDMARKERS.load(landmarker)(**options)
        self.times = StepTimes()       # 'detect' and 'landmarks', from every thread (``pipeline.core.profile``)

    @property
    def description(self) -> str:
        return f"detector {self.detector_name}: {self.detector.description}; landmarks {self.landmarker_name}: " \
               f"{self.landmarker.description}"

    def __call__(self, image: np.ndarray, thorough: bool = True) -> list[FoundFace]:
        """``thorough=False``: the detector's cheap first pass only (see ``FaceDetector.detect``).

        A landmark model that says how sure it is that the box holds a face (MediaPipe's)
        vetoes detections it rejects: hands, ears and patterns a detector takes for faces.
        """
        faces = []
        with self.times.step("detect"):
            found = self.detector.detect(image, thorough)
        for d in found:
            with self.times.step("landmarks"):
                shape = self.landmarker.shape(image, d.box, d.points)
            if shape.confidence is not None and shape.confidence < MIN_FACE_PROBABILITY:
                continue
            faces.append(FoundFace(d.box, shape.landmarks, d.score, "detected", dense=shape.dense))
        return faces
