"""The swapped skin's finest detail brought down to the dst plate's own: no speckled, made-up skin.

A swap carries fine detail from three places: the network's own texture, the enhancer,
and the dst frame's detail that ``--detail`` and ``--sharpen-new`` put back. Together they
can leave the skin grainier than the shot itself (the reverse pair of the README's jobs:
fine-to-middle band ratio 0.47 against the plate's 0.38), which reads as painted or
made-up skin. A compositor matches the grain of an element to the plate's; here the
skin's ratio of fine to middle-scale luminance detail (``pipeline.faces.texture_bands``,
the figure ``evaluate``'s texture reads) is measured on the swapped face and on the
original frame at the same place, and where the swap's exceeds the plate's by more than
``TOLERANCE``, the swap's fine band is scaled down on the skin (eyes, brows and mouth, whose
edges are the face's sharpness, are left alone). A face already as smooth as the plate, or
smoother, is not touched: nothing is added.
"""
from __future__ import annotations

import cv2
import numpy as np

from pipeline.faces import texture_bands

#: How much grainier than the plate the swap's skin may be before it is smoothed.
TOLERANCE = 0.05
#: Feather of the skin's edge, in eye distances.
FEATHER = 0.05
#: Pasted alpha at or above this counts as the swapped face's own pixels when measuring.
SOLID = 0.99
#: Most steps of the search for the share of the fine band taken away, and when it is close enough (a share of
#: the target ratio).
SEARCH_STEPS = 4
SEARCH_TOLERANCE = 0.005


def match(out: np.ndarray, plate: np.ndarray, landmarks: np.ndarray, alpha: np.ndarray, box: tuple[int, int, int, int],
          amount: float, src_texture: float | None = None) -> float | None:
    """Smooth the fine band of the swapped skin in ``out`` (RGB uint8, the frame after blending; changed in place)
    inside ``box`` (x0, y0, x1, y1), where the face was pasted with ``alpha`` (0..1, the box's size), until the
    skin is no grainier than ``plate`` (the original frame) at the same place, or than the src person's own skin
    (``src_texture``: this module's ``src_texture`` of their faces), whichever is grainier, within
    ``TOLERANCE``; ``landmarks`` are the face's 68 points in frame pixels.

    Returns the share of the fine band taken away (0 when the skin is not grainier than that, None when
    there was too little skin to measure).
    """
    if amount <= 0:
        return 0.0
    x0, y0, x1, y1 = box
    points = np.asarray(landmarks, dtype=np.float64) - np.array([x0, y0], dtype=np.float64)
    region = out[y0:y1, x0:x1]
    where = texture_bands.face_scale(points, region.shape)
    if where is None:
        return None
    face_skin = where.skin(points)
    skin = face_skin & (where.shrink(np.asarray(alpha, np.float32)) >= SOLID)     # measured where the swap is whole
    if int(skin.sum()) < texture_bands.MIN_SKIN_PIXELS:
        return None
    bx0, by0, bx1, by1 = where.box
    face = region[by0:by1, bx0:bx1]            # the face's own box: nothing outside it is changed
    image = face.astype(np.float32)
    # measured on the luminance, shrunk after the conversion (both are linear: the same as evaluate's order)
    small = where.resize(cv2.cvtColor(image, cv2.COLOR_RGB2GRAY))
    swap = _ratio(small, skin)
    plate_grey = cv2.cvtColor(plate[y0:y1, x0:x1][by0:by1, bx0:bx1], cv2.COLOR_RGB2GRAY).astype(np.float32)
    plate_texture = _ratio(where.resize(plate_grey), skin)
    if swap is None or plate_texture is None:
        return None
    target = max(plate_texture, src_texture or 0.0) * (1 + TOLERANCE)
    if swap <= target:
        return 0.0
    # where to cut: the skin, feathered, made at the working scale and brought back to the frame's pixels
    feathered = cv2.GaussianBlur(face_skin.astype(np.float32), (0, 0), FEATHER * texture_bands.EYE_PIXELS)
    weight = cv2.resize(feathered, (bx1 - bx0, by1 - by0), interpolation=cv2.INTER_LINEAR)
    weight *= alpha[by0:by1, bx0:bx1]
    # the fine band at the working scale's sigma, in the frame's pixels
    fine = image - cv2.GaussianBlur(image, (0, 0), texture_bands.FINE_SIGMA / where.scale)
    weighted = weight[..., None] * fine
    # linear again: the cut face's luminance, shrunk, is small - cut * small_fine
    small_fine = where.resize(cv2.cvtColor(weighted, cv2.COLOR_RGB2GRAY))

    def after(cut: float) -> float:
        """The skin's ratio once ``cut`` of its fine band is taken away."""
        value = _ratio(small - cut * small_fine, skin)
        return 0.0 if value is None else value

    # taking a share away lowers the ratio by less than that share (the band's own blur stays), and the ratio
    # falls smoothly with the share: found by false position (regula falsi), a few ratios at the working scale
    low, high, f_low, f_high = 0.0, 1.0, swap, after(1.0)
    found = 1.0 if f_high > target else None
    for _ in range(SEARCH_STEPS if found is None else 0):
        found = low + (f_low - target) * (high - low) / max(f_low - f_high, 1e-9)
        value = after(found)
        if abs(value - target) <= SEARCH_TOLERANCE * target:
            break
        low, f_low, high, f_high = (found, value, high, f_high) if value > target else (low, f_low, found, value)
    cut = amount * float(found)
    face[...] = np.clip(image - cut * weighted + 0.5, 0, 255).astype(np.uint8)
    return cut


def src_texture(faces: list[tuple[np.ndarray, np.ndarray]]) -> float | None:
    """The median skin texture (``texture_bands.face_texture``) of the src person's ``faces`` (image, landmarks)."""
    values = [v for image, points in faces if (v := texture_bands.face_texture(image, points)) is not None]
    return float(np.median(values)) if values else None


def _ratio(grey: np.ndarray, skin: np.ndarray) -> float | None:
    return texture_bands.ratio(*texture_bands.bands(grey), skin)
