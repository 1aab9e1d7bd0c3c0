"""The interfaces of the face backends: detector, landmark model, masker."""
from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass

import numpy as np


@dataclass
class Detection:
    box: tuple[float, float, float, float]  # x0, y0, x1, y1 in image pixels
    score: float
    #: (5, 2) eye centres (image left first), nose tip, mouth corners, when the detector
    #: gives them (RetinaFace, BlazeFace): a dense landmarker takes the face's roll from them.
    points: np.ndarray | None = None


@dataclass
class FaceShape:
    """What a landmark model puts into one face box."""

    landmarks: np.ndarray                 # (68, 2) iBUG points, image pixels
    dense: np.ndarray | None = None       # (N, 2) the model's own dense points (478 for MediaPipe), or None
    confidence: float | None = None       # the model's "this is a face" probability, when it gives one


class FaceDetector(ABC):
    """Finds face boxes in an RGB image. Instances may be used from several threads."""

    name: str = ""
    description: str = ""

    @abstractmethod
    def detect(self, image: np.ndarray, thorough: bool = True) -> list[Detection]:
        """Faces in an (H, W, 3) uint8 RGB image, largest first.

        ``thorough=False`` runs only the detector's first, cheap pass (it may miss small
        faces); extract's video loop decides, frame by frame, when the slow passes are
        worth running (``extract.search.SlowPassGate``).
        """


class Landmarker(ABC):
    """Puts 68 iBUG landmarks (and, for dense models, their own points) into a face box."""

    name: str = ""
    description: str = ""
    #: How many dense points ``shape`` gives besides the 68 (0: none; the ``dense`` masker needs them).
    dense_points: int = 0

    @abstractmethod
    def landmarks(self, image: np.ndarray, box: tuple[float, float, float, float]) -> np.ndarray:
        """(68, 2) float landmarks in image pixels for the face in ``box``."""

    def shape(self, image: np.ndarray, box: tuple[float, float, float, float],
              points: np.ndarray | None = None) -> FaceShape:
        """The 68 points, plus dense points and a face probability where the model has them.

        ``points`` are the detector's five keypoints when it gives them (see ``Detection``).
        """
        return FaceShape(self.landmarks(image, box))


class Masker(ABC):
    """Makes the automatic face mask of an aligned face (white = face)."""

    name: str = ""
    description: str = ""

    #: True when the masker needs a landmarker's dense points (``Landmarker.dense_points``).
    needs_dense: bool = False

    @abstractmethod
    def mask(self, aligned: np.ndarray | None, landmarks: np.ndarray, size: int,
             dense: np.ndarray | None = None) -> np.ndarray:
        """(size, size) uint8 mask, 0 or 255, for the aligned crop (RGB, may be None for
        landmark-only maskers) whose landmarks are ``landmarks`` (crop pixels); ``dense``
        are the landmarker's dense points in crop pixels, when it has them."""


def parse_upsample(value: str) -> tuple[int, bool]:
    """'auto' -> (0, retry) ; '1' -> (1, no retry). Retry means: once more at 1 when empty."""
    if value == "auto":
        return 0, True
    return int(value), False


def by_area(dets: list[Detection]) -> list[Detection]:
    return sorted(dets, key=lambda d: -(d.box[2] - d.box[0]) * (d.box[3] - d.box[1]))
