"""Per-face work after landmarks: aligned crop, hull mask, quality figures, encoded files.

Runs in the worker threads (OpenCV releases the GIL), so both cores share it.
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from extract.bridging import FoundFace
from pipeline.core import geometry
from pipeline.faces.face_chip import extract_chip
from pipeline.core.images import encode
from pipeline.workspace.store import dumps, mask_hash


@dataclass(frozen=True)
class AlignSettings:
    face_type: str = "full"
    size: int = 256
    image_format: str = "png"   # of the aligned images; masks are always png


@dataclass
class FaceRecord:
    """One face ready to store: the index row (minus file names) and the encoded files."""

    row: dict
    aligned_png: bytes
    mask_png: bytes
    mask_pixels_hash: str
    chip: np.ndarray              # 150x150 identity chip, cut from the source image
    dropped_reason: str | None = None


def blur_score(aligned: np.ndarray, mask: np.ndarray) -> float:
    """Variance of the Laplacian inside the face: higher is sharper (size dependent)."""
    gray = cv2.cvtColor(aligned, cv2.COLOR_RGB2GRAY)
    lap = cv2.Laplacian(gray, cv2.CV_32F, ksize=3)
    inside = cv2.erode(mask, np.ones((5, 5), np.uint8)) > 0
    return float(lap[inside].var()) if inside.any() else 0.0


def build_face(image: np.ndarray, face: FoundFace, settings: AlignSettings) -> FaceRecord:
    """Everything extract stores for one face found in ``image`` (RGB)."""
    matrix = geometry.face_transform(face.landmarks, settings.face_type, settings.size)
    aligned = geometry.warp_to_aligned(image, matrix, settings.size)
    aligned_points = geometry.transform_points(face.landmarks, matrix)
    mask = geometry.hull_mask(aligned_points, settings.size)
    yaw, pitch, roll = geometry.head_pose(face.landmarks)
    row = {
        "track": face.track, "origin": face.origin, "score": face.score,
        "bbox": dumps(face.box), "landmarks": dumps(face.landmarks),
        "aligned_landmarks": dumps(aligned_points), "transform": json_matrix(matrix),
        "face_type": settings.face_type, "size": settings.size,
        "blur": blur_score(aligned, mask), "yaw": yaw, "pitch": pitch, "roll": roll,
    }
    ext = ".jpg" if settings.image_format == "jpg" else ".png"
    return FaceRecord(row, encode(aligned, ext), encode(mask, ".png", rgb=False), mask_hash(mask),
                      extract_chip(image, face.landmarks))


def json_matrix(matrix: np.ndarray) -> str:
    """Transforms keep full precision: convert's warp-back must hit the same pixels."""
    import json
    return json.dumps(np.asarray(matrix, dtype=np.float64).tolist())
