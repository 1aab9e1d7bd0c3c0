"""Blinks carried from the dst: where the dst person's eyes close, the swap's eyes close too.

A model that learned the src person's face mostly from open eyes paints open eyes over a
blink (on the README's main job 9 of 11 closed-eye frames came out open). The dst frame
holds the blink as it happened, so on those frames the eye region of the dst crop
replaces the network's, in proportion to how far the eyes are shut: nothing while they
stand open, all of it when closed, a mix while the lids move. A compositor fixing a swap
does the same by hand with the plate.

How shut the eyes are comes from the dst's own landmarks (as extracted, not smoothed: a
blink lasts a few frames and smoothing would flatten it), as the eye aspect ratio against
the person's open level, the median over the faces being converted (a clip shows open
eyes most of the time). The patch is shifted in CIELAB so its mean colour in a ring
around the eyes equals the swapped face's there, then feathered in.
"""
from __future__ import annotations

import cv2
import numpy as np

from pipeline.core.geometry import EYE_CONTOURS, eye_openness

#: At or above this share of the open level the eyes count as open (the network's eyes stay).
OPEN_SHARE = 0.85
#: At or below this share they count as shut (the dst's eyes entirely).
SHUT_SHARE = 0.55
#: The eye patch: an ellipse around each eye, half-axes in eye widths (corner to corner),
#: wide enough for the lids of an open eye the network drew, short of the brows.
HALF_WIDTH, HALF_HEIGHT = 0.8, 0.6
#: Feather of the patch (Gaussian sigma), and the colour ring's width, in eye widths.
FEATHER = 0.15
RING = 0.25


def open_level(landmarks: list[np.ndarray]) -> float | None:
    """The eyes' open level of a person: median eye openness over their faces (None without faces)."""
    values = [eye_openness(p) for p in landmarks]
    return float(np.median(values)) if values else None


def closure(openness: float, level: float | None) -> float:
    """0 (open) .. 1 (shut): how far the eyes are closed against the person's open level."""
    if level is None or level <= 0:
        return 0.0
    share = openness / level
    return float(np.clip((OPEN_SHARE - share) / (OPEN_SHARE - SHUT_SHARE), 0.0, 1.0))


def eye_patch(landmarks: np.ndarray, size: int, grow: float = 0.0) -> np.ndarray:
    """Float 0..1 mask (``size`` square) of both eyes' ellipses, ``grow`` eye widths larger, unfeathered."""
    p = np.asarray(landmarks, dtype=np.float64)
    mask = np.zeros((size, size), np.uint8)
    for eye in EYE_CONTOURS:
        e = p[list(eye)]
        width = float(np.linalg.norm(e[3] - e[0]))
        if width < 1:
            continue
        centre = e.mean(axis=0)
        angle = float(np.degrees(np.arctan2(e[3, 1] - e[0, 1], e[3, 0] - e[0, 0])))
        axes = (max(1, int(round((HALF_WIDTH + grow) * width))), max(1, int(round((HALF_HEIGHT + grow) * width))))
        cv2.ellipse(mask, (int(round(centre[0])), int(round(centre[1]))), axes, angle, 0, 360, 255, -1)
    return mask.astype(np.float32) / 255.0


def _eye_width(landmarks: np.ndarray) -> float:
    p = np.asarray(landmarks, dtype=np.float64)
    return float(np.mean([np.linalg.norm(p[eye[3]] - p[eye[0]]) for eye in EYE_CONTOURS]))


def carry(face: np.ndarray, dst_crop: np.ndarray, landmarks: np.ndarray, amount: float) -> np.ndarray:
    """The swapped ``face`` with the dst crop's eyes mixed in by ``amount`` (0..1).

    Both images are the network's crop (same size, RGB uint8); ``landmarks`` are the dst
    face's 68 points in that crop.
    """
    if amount <= 0:
        return face
    size = face.shape[0]
    width = _eye_width(landmarks)
    core = eye_patch(landmarks, size)
    if width < 2 or not core.any():
        return face
    ring = np.clip(eye_patch(landmarks, size, RING) - core, 0, 1) > 0.5
    lab_face = cv2.cvtColor(face, cv2.COLOR_RGB2Lab).astype(np.float32)
    lab_dst = cv2.cvtColor(dst_crop, cv2.COLOR_RGB2Lab).astype(np.float32)
    if ring.any():
        lab_dst += lab_face[ring].mean(axis=0) - lab_dst[ring].mean(axis=0)
    patch = cv2.cvtColor(np.clip(lab_dst, 0, 255).round().astype(np.uint8), cv2.COLOR_Lab2RGB)
    alpha = cv2.GaussianBlur(core, (0, 0), max(FEATHER * width, 0.5)) * float(np.clip(amount, 0, 1))
    mixed = face.astype(np.float32) * (1 - alpha[..., None]) + patch.astype(np.float32) * alpha[..., None]
    return np.clip(mixed, 0, 255).round().astype(np.uint8)
