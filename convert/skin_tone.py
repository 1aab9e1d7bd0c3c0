"""The swapped face's skin put on the dst face's skin tone, so the face sits on its own neck.

Colour transfer matches the generated face to the dst face as a whole (mean and spread
inside the mask). A whole face mixes skin with brows, eyes, lips and hair at its edge, and
two people mix them in other shares, so after the whole face is matched its skin can still
be lighter, darker or warmer than the dst's. The viewer compares the face with the neck,
ears and hands beside it, which are the dst's, so the skin is what must match. Here the
whole crop is shifted in CIELAB by (dst skin's median - swapped skin's median), the skin
being ``pipeline.faces.regions.skin_region`` (the face inside its border without eyes,
brows and mouth) inside the colour mask; parts move with the skin, so ``part_colour`` (run
after this) sets them against the skin the frame will show.

Measured (docs/measurements.md, "The face on its own neck"): with the Poisson correction
kept to the mask's edge (``--poisson-reach``) this brought the face-to-neck change on issue
27's real-footage clip from worst 3.85 to 2.78 dE; the cheeks alone as the skin gave a
worse tone over the rest of the face (main job 1.56 against 0.92 dE).
"""
from __future__ import annotations

import cv2
import numpy as np

from pipeline.core.images import to_lab
from pipeline.faces.regions import skin_region

#: Skin pixels (inside the mask) fewer than this and the face is left as it is.
MIN_PIXELS = 16
#: Largest shift, in delta E: a landmark miss that puts the "cheeks" on hair or background must not
#: repaint the face.
MOST = 15.0


def skin_shift(face: np.ndarray, crop: np.ndarray, landmarks: np.ndarray,
               mask: np.ndarray | None = None, face_lab: np.ndarray | None = None) -> np.ndarray | None:
    """The CIELAB vector (dst skin's median - ``face``'s skin's median), at most ``MOST`` long; None where
    too few skin pixels are inside ``mask`` (uint8, on above 127; a hand or hair the mask leaves out).
    ``face_lab``: ``face`` in CIELAB when the caller has it already."""
    skin = skin_region(landmarks, face.shape) > 0
    if mask is not None:
        skin &= mask > 127
    if int(skin.sum()) < MIN_PIXELS:
        return None
    ys, xs = np.nonzero(skin)
    here = np.median((to_lab(face) if face_lab is None else face_lab)[ys, xs], axis=0)
    there = np.median(to_lab(crop[ys, xs][None])[0], axis=0)
    delta = there - here
    size = float(np.linalg.norm(delta))
    return delta * (MOST / size) if size > MOST else delta


def match(face: np.ndarray, crop: np.ndarray, landmarks: np.ndarray, mask: np.ndarray | None,
          amount: float) -> np.ndarray:
    """``face`` (RGB uint8, the generated crop) shifted ``amount`` (0..1) of the way to the dst ``crop``'s
    skin tone; ``landmarks`` are the face's 68 points in the crop's pixels, ``mask`` its colour mask."""
    if amount <= 0:
        return face
    lab = to_lab(face)               # converted once: the skin's median is read from it, then it is shifted
    delta = skin_shift(face, crop, landmarks, mask, lab)
    if delta is None or not np.any(delta):
        return face
    lab += (amount * delta).astype(np.float32)
    out = cv2.cvtColor(lab, cv2.COLOR_Lab2RGB)
    return np.clip(out * 255.0, 0, 255).round().astype(np.uint8)
