"""The swapped face's brows, nose and lips in the src person's colours, lit as the dst frame is.

Colour transfer matches the whole generated face to the dst face, so the skin meets the
frame without a seam; but it also pulls every part toward the dst person: the dst's
lipstick, her lighter brows. Here each part (brows, nose, lips, cut from the 68 points)
is moved so that its colour against the face's own cheeks is the src person's: the
median over the src set of (part - cheeks) in CIELAB. A difference against the cheeks,
not an absolute colour, so the frame's light and the skin tone colour transfer found
stay as they are, and only what distinguishes the part from the skin changes.

Two guards make a difference safe to carry between people (issue 26, 2026-12-07):
- the feather leaves a thin part's middle short of the way, so each part's shift is divided
  by its feathered weight's mean over the part (``LEAST_FILL``): the part's mean arrives;
- no pixel is pushed past neutral into the cool side (a* or b* below 0): brows and lips are
  warm, and a difference carried from a warmer src skin onto a paler one would otherwise
  land blue-grey brows or purple lips (the main job's fringing went 1.18 -> 1.46 without it).
Before these, brows' chroma was carried as the src person's ratio to the skin's; carried as
a difference under the guards, brows came 4.80 -> 2.62 dE from the src person's on the main
job and 5.85 -> 4.21 on the reverse pair (docs/measurements.md).
"""
from __future__ import annotations

import logging

import cv2
import numpy as np

from pipeline.core.geometry import eye_distance
from pipeline.core.images import ImageReadError, read_rgb, to_lab
from pipeline.faces.regions import SKIN, against_skin, region_masks
from pipeline.workspace.store import Workspace

log = logging.getLogger("convert")

#: The parts moved (the eyes are left: their mean mixes iris, white and lashes).
PARTS = ("brows", "nose", "lips")
#: Largest shift of one part, in delta E: a part the landmarks missed is not repainted wholesale.
MOST = 20.0
#: The shift is divided by the feathered weight's mean over the part (at least this), so the part's mean colour
#: reaches its target although the feather leaves its middle short.
LEAST_FILL = 0.5
#: Feather of each part's mask, in eye distances.
FEATHER = 0.04
#: Src faces read for the relations (evenly spaced over the set).
SRC_FACES = 64


def part_colours(image: np.ndarray, landmarks: np.ndarray) -> dict[str, np.ndarray]:
    """Mean CIELAB colour of each part and of the cheeks in an RGB ``image`` (parts with no pixels left out)."""
    lab = to_lab(image)
    out = {}
    for name, mask in region_masks(landmarks, image.shape).items():
        if name in PARTS + (SKIN,) and mask.any():
            out[name] = lab[mask > 0].mean(axis=0)
    return out


def relations(faces: list[tuple[np.ndarray, np.ndarray]]) -> dict[str, np.ndarray] | None:
    """Per part, the median of (part - cheeks) over ``faces`` (image, landmarks): the src person's look."""
    diffs: dict[str, list[np.ndarray]] = {name: [] for name in PARTS}
    for image, landmarks in faces:
        for name, diff in against_skin(part_colours(image, landmarks), PARTS).items():
            if diff is not None:
                diffs[name].append(diff)
    out = {name: np.median(np.stack(v), axis=0) for name, v in diffs.items() if v}
    return out or None


def src_faces(ws: Workspace, count: int = SRC_FACES) -> list[tuple[np.ndarray, np.ndarray]]:
    """Up to ``count`` kept src faces (aligned image, its landmarks), evenly spaced over the set: the src
    person's look, which this module's relations and ``convert.grain``'s texture are read from."""
    rows = ws.faces("src", kept=True)
    if not rows:
        return []
    picks = [rows[i] for i in np.unique(np.linspace(0, len(rows) - 1, min(count, len(rows))).round().astype(int))]
    faces = []
    for r in picks:
        try:
            faces.append((read_rgb(ws.aligned_path(r)), r.aligned_landmarks))
        except (ImageReadError, ValueError, OSError):
            continue
    return faces


def match(face: np.ndarray, landmarks: np.ndarray, src: dict[str, np.ndarray] | None, amount: float) -> np.ndarray:
    """``face`` (RGB uint8) with each part moved ``amount`` (0..1) of the way to the src person's colour
    against this face's cheeks; ``landmarks`` are the face's 68 points in its pixels.

    Each part's feathered shift is made only in the part's box widened by the feather's reach,
    and only the pixels a part reaches go back from CIELAB: the same result as over the whole
    crop (the blur's reach is cut at 4 sigma, as OpenCV's own kernel is), at a third of the cost.
    """
    if amount <= 0 or not src:
        return face
    masks = region_masks(landmarks, face.shape)
    cheeks = masks[SKIN]
    if not cheeks.any():
        return face
    lab = to_lab(face)
    skin = lab[cheeks > 0].mean(axis=0)
    sigma = max(FEATHER * eye_distance(landmarks), 0.5)
    reach = _blur_reach(sigma)
    h, w = face.shape[:2]
    shift = np.zeros_like(lab)
    touched = np.zeros((h, w), bool)
    for name in PARTS:
        part = masks[name]
        if name not in src:
            continue
        x, y, bw, bh = cv2.boundingRect(part)
        if bw == 0 or bh == 0:
            continue
        here = lab[part > 0].mean(axis=0)
        delta = (skin + src[name]) - here
        # feathered by a plain blur: a thin lip moves short of the full way at its middle. Growing the mask
        # first moved it all the way but tinted the skin around the mouth (main job: fringing 1.01 -> 1.58,
        # lips 7.1 -> 10.6 dE from the src person's)
        x0, y0 = max(x - reach, 0), max(y - reach, 0)
        x1, y1 = min(x + bw + reach, w), min(y + bh + reach, h)
        weight = _box_blur(part, (x0, y0, x1, y1), sigma, reach)
        inside = weight[part[y0:y1, x0:x1] > 0]
        if inside.size:        # the feather's shortfall made up: the part's mean moves the whole way
            delta = delta / max(float(inside.mean()), LEAST_FILL)
        size = float(np.linalg.norm(delta))
        if size > MOST:
            delta *= MOST / size
        shift[y0:y1, x0:x1] += weight[..., None] * (amount * delta)[None, None, :]
        touched[y0:y1, x0:x1] |= weight > 1e-3
    out = face.copy()         # pixels no part reaches keep their exact values (no Lab round trip)
    ys, xs = np.nonzero(touched)
    if len(ys) == 0:
        return out
    before = lab[ys, xs]
    after = before + shift[ys, xs]
    # a warm pixel is not pushed past neutral to the cool side (the module's docstring)
    after[:, 1:] = np.maximum(after[:, 1:], np.minimum(before[:, 1:], 0.0))
    moved = cv2.cvtColor(after[None], cv2.COLOR_Lab2RGB)[0]
    out[ys, xs] = np.clip(moved * 255.0, 0, 255).round().astype(np.uint8)
    return out


def _blur_reach(sigma: float) -> int:
    """Half the width of the kernel OpenCV's GaussianBlur takes for ``sigma`` on a float image (4 sigma a side)."""
    return (int(round(sigma * 8 + 1)) | 1) // 2


def _box_blur(part: np.ndarray, box: tuple[int, int, int, int], sigma: float, reach: int) -> np.ndarray:
    """The 0..1 Gaussian blur of ``part`` (0/255) over ``box`` (x0, y0, x1, y1), as blurring the whole mask and
    cutting the box out gives it.

    The mask is read a kernel's reach around the box, or up to the image's edge: there the
    window's own reflected border is the image's, and elsewhere its border effects fall
    outside the box, which is all that is kept.
    """
    x0, y0, x1, y1 = box
    h, w = part.shape
    top, left = min(reach, y0), min(reach, x0)
    bottom, right = min(reach, h - y1), min(reach, w - x1)
    window = part[y0 - top:y1 + bottom, x0 - left:x1 + right].astype(np.float32) / 255.0
    return cv2.GaussianBlur(window, (0, 0), sigma)[top:top + (y1 - y0), left:left + (x1 - x0)]
