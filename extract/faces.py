"""Per-face work after landmarks: aligned crop, automatic mask, quality figures, encoded files.

Runs in the worker threads (OpenCV releases the GIL), so both cores share it.
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from pipeline.core import geometry
from pipeline.core.images import encode
from pipeline.core.profile import StepTimes
from pipeline.faces.analyser import FoundFace
from pipeline.faces.backends.base import Masker
from pipeline.faces.face_chip import extract_chip
from pipeline.workspace.store import mask_hash


@dataclass(frozen=True)
class AlignSettings:
    face_type: str = "full"
    size: int = 256
    image_format: str = "png"   # of the aligned images; masks are always png


@dataclass
class FaceRecord:
    """One face ready to store: its geometry and quality figures and the encoded files."""

    face: FoundFace
    aligned_points: np.ndarray    # (68, 2) in the aligned crop
    transform: np.ndarray         # (2, 3) source -> aligned
    blur: float
    pose: tuple[float, float, float]
    aligned_png: bytes
    mask_png: bytes
    mask_pixels_hash: str
    chip: np.ndarray              # 150x150 identity chip, cut from the source image
    descriptor: np.ndarray | None = None
    dropped_reason: str | None = None


def blur_score(aligned: np.ndarray, mask: np.ndarray) -> float:
    """Variance of the Laplacian inside the face: higher is sharper (size dependent)."""
    gray = cv2.cvtColor(aligned, cv2.COLOR_RGB2GRAY)
    lap = cv2.Laplacian(gray, cv2.CV_32F, ksize=3)
    inside = cv2.erode(mask, np.ones((5, 5), np.uint8)) > 0
    return float(lap[inside].var()) if inside.any() else 0.0


def build_face(image: np.ndarray, face: FoundFace, settings: AlignSettings, masker: Masker,
               times: StepTimes | None = None) -> FaceRecord:
    """Everything extract stores for one face found in ``image`` (RGB); ``times`` records its steps."""
    times = times or StepTimes()
    with times.step("crop/warp"):
        matrix = geometry.face_transform(face.landmarks, settings.face_type, settings.size)
        aligned = geometry.warp_to_aligned(image, matrix, settings.size)
        aligned_points = geometry.transform_points(face.landmarks, matrix)
    with times.step("mask"):
        dense = None if face.dense is None else geometry.transform_points(face.dense, matrix)
        mask = masker.mask(aligned, aligned_points, settings.size, dense)
    with times.step("quality"):
        quality = blur_score(aligned, mask), geometry.head_pose(face.landmarks)
    with times.step("image encode"):
        ext = ".jpg" if settings.image_format == "jpg" else ".png"
        files = encode(aligned, ext), encode(mask, ".png", rgb=False), mask_hash(mask)
    with times.step("identity chip"):
        chip = extract_chip(image, face.landmarks)
    return FaceRecord(face, aligned_points, matrix, *quality, *files, chip)
