"""Finding faces in an image: a detector and a landmark model, chosen by registry name.

Extract and evaluate both find faces through this one class, so evaluate can analyse a
video exactly the way its dst set was extracted (the names are in workspace.json).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from pipeline.faces.backends.base import FaceDetector, Landmarker
from pipeline.registries import DETECTORS, LANDMARKERS


@dataclass
class FoundFace:
    box: tuple[float, float, float, float]
    landmarks: np.ndarray          # (68, 2) image pixels
    score: float | None
    origin: str = "detected"       # 'detected' or 'bridged'
    track: int | None = None


class FaceAnalyser:
    """Faces in an RGB image, largest first, with 68 landmarks each. Thread-safe."""

    def __init__(self, detector: str = "dlib", landmarker: str = "dlib", upsample: str = "auto",
                 min_face: int = 80) -> None:
        self.detector_name, self.landmarker_name = detector, landmarker
        self.detector: FaceDetector = DETECTORS.load(detector)(upsample=upsample, min_face=min_face)
        self.landmarker: Landmarker = LANDMARKERS.load(landmarker)()

    @property
    def description(self) -> str:
        return f"detector {self.detector_name}: {self.detector.description}; landmarks {self.landmarker_name}: " \
               f"{self.landmarker.description}"

    def __call__(self, image: np.ndarray, thorough: bool = True) -> list[FoundFace]:
        """``thorough=False``: the detector's cheap first pass only (see ``FaceDetector.detect``)."""
        return [FoundFace(d.box, self.landmarker.landmarks(image, d.box), d.score, "detected")
                for d in self.detector.detect(image, thorough)]
