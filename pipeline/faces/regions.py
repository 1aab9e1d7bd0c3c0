"""The parts of a face (brows, eyes, nose, lips, cheeks) and its skin as masks cut from its 68 landmarks.

Shared: evaluate measures each part's colour against the src person's and the skin's tone
against the original's; convert moves the swapped face's parts toward the src person's
colour relative to the skin, and its skin onto the dst skin's tone.
"""
from __future__ import annotations

from collections.abc import Mapping

import cv2
import numpy as np

from pipeline.core import geometry
from pipeline.core.geometry import eye_distance

REGIONS = ("brows", "eyes", "nose", "lips", "cheeks")
#: Plain skin in the same light: the region the other parts are measured against.
SKIN = "cheeks"
#: Brows are a line of 5 points each; they are drawn this thick (in eye distances).
BROW_THICKNESS = 0.12
#: Cheek polygons: jaw side, lower eye lid, nose side (iBUG-68 indices).
_CHEEKS = ((1, 2, 3, 4, 48, 31, 40, 41, 36), (15, 14, 13, 12, 54, 35, 47, 46, 45))


def region_masks(landmarks: np.ndarray, shape: tuple[int, ...]) -> dict[str, np.ndarray]:
    """A uint8 mask (0/255) of each region in an image of ``shape``."""
    p = np.asarray(landmarks, dtype=np.float64)
    h, w = shape[:2]

    def poly(*groups: tuple[int, ...] | range) -> np.ndarray:
        mask = np.zeros((h, w), np.uint8)
        for idx in groups:
            cv2.fillPoly(mask, [np.round(p[list(idx)] * 16).astype(np.int32)], 255, cv2.LINE_8, shift=4)
        return mask

    brows = np.zeros((h, w), np.uint8)
    thick = max(2, int(round(BROW_THICKNESS * eye_distance(p))))
    for idx in (range(17, 22), range(22, 27)):
        cv2.polylines(brows, [np.round(p[list(idx)]).astype(np.int32)], False, 255, thick)
    lips = cv2.subtract(poly(range(48, 60)), poly(range(60, 68)))
    nose = np.zeros((h, w), np.uint8)
    cv2.fillConvexPoly(nose, cv2.convexHull(np.round(p[27:36] * 16).astype(np.int32)), 255, cv2.LINE_8, shift=4)
    return {"brows": brows, "eyes": poly(range(36, 42), range(42, 48)), "nose": nose, "lips": lips,
            "cheeks": poly(*_CHEEKS)}


def against_skin(colours: Mapping[str, np.ndarray | None], parts: tuple[str, ...]) -> dict[str, np.ndarray | None]:
    """Each of ``parts``' colour minus the skin's (None where either is missing).

    A change of light moves part and skin together, so the difference is the part's own look:
    evaluate measures it against the src person's, convert moves the swap's parts to it.
    """
    skin = colours.get(SKIN)
    return {name: (colours[name] - skin if skin is not None and colours.get(name) is not None else None)
            for name in parts}


_MOUTH = range(48, 68)


def face_interior(landmarks: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """The landmark hull shrunk by a tenth of the eye distance: the face without its border (uint8 0/255)."""
    mask = geometry.hull_mask(landmarks, (shape[0], shape[1]))
    band = max(1, int(round(0.1 * geometry.eye_distance(landmarks))))
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * band + 1, 2 * band + 1))
    return cv2.erode(mask, kernel)


def skin_region(landmarks: np.ndarray, shape: tuple[int, ...], interior: np.ndarray | None = None) -> np.ndarray:
    """The face interior (``face_interior``'s, when already made) without eyes, brows and mouth, each grown
    by a tenth of the eye distance (uint8 0/255): cheeks, nose, chin and the skin under the eyes."""
    skin = (face_interior(landmarks, shape) if interior is None else interior).copy()
    grow = max(1, int(round(0.1 * geometry.eye_distance(landmarks))))
    parts = np.zeros(shape[:2], np.uint8)
    pts = np.asarray(landmarks, np.float64)
    for group in ((36, 37, 38, 39, 40, 41), (42, 43, 44, 45, 46, 47), tuple(_MOUTH), tuple(range(17, 22)),
                  tuple(range(22, 27))):
        hull = cv2.convexHull(np.round(pts[list(group)]).astype(np.int32))
        cv2.fillConvexPoly(parts, hull, 255)
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * grow + 1, 2 * grow + 1))
    skin[cv2.dilate(parts, kernel) > 0] = 0
    return skin
