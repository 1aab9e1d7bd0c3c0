"""Dark faces lifted to the light the network works in, and its face brought back down.

Why: a network trained on faces lit as the shared clips are (face median 140-160 grey
levels) draws a less definite face from a dim stage shot (median 60-70 on the Hill clip
darkened as ``benchmarks/small_faces.py`` does), and evaluate's landmarks on that face
shook x1.12-1.16 the footage's, with or without sensor noise and whatever the temporal
smoothing, while the same small faces at full light came out x0.93 (issue 27). So the
network's input is lifted by a gamma curve that takes the face's median luminance to the
target, and the inverse curve brings its output back down before colour transfer matches
it to the frame. A face at or above the target is left exactly as it is (the shared
clips' faces are). Convert lifts each face; the int8 calibration crops (train and convert
alike) are lifted the same way, so the activation ranges are those of what the network sees.
"""
from __future__ import annotations

import cv2
import numpy as np

#: Face median (grey levels) a darker face is lifted to: the shared clips' faces, on which
#: the default models are trained, lie at 138-162.
DEFAULT_TARGET = 140.0
#: Smallest exponent used (the strongest lift): a face median of 20 reaches about 110.
MIN_GAMMA = 0.33


def lift_gamma(crop: np.ndarray, mask: np.ndarray | None, target: float) -> float:
    """The exponent g (<= 1) of x -> 255 (x / 255) ** g that takes the face's median luminance to ``target``.

    ``crop``: H x W x 3 uint8; ``mask``: 0..255 (or float 0..1) marking the face, resized to the crop
    when it is another size (median over its upper half; the whole crop when None or empty). 1.0 (no
    change) when the face is at least as bright as the target or ``target`` is 0.
    """
    if target <= 0:
        return 1.0
    lum = crop.astype(np.float32).mean(axis=2)
    if mask is not None and mask.shape[:2] != lum.shape:     # a mask at the aligned size (--mask learned/both)
        mask = cv2.resize(mask, (lum.shape[1], lum.shape[0]), interpolation=cv2.INTER_AREA)
    half = 0.5 if mask is not None and mask.dtype.kind == "f" else 127
    inside = lum[mask > half] if mask is not None else lum.ravel()
    median = float(np.median(inside if inside.size else lum))
    if median >= target:
        return 1.0
    g = np.log(target / 255.0) / np.log(max(median, 1.0) / 255.0)
    return float(np.clip(g, MIN_GAMMA, 1.0))


def _curve(g: float) -> np.ndarray:
    x = np.arange(256, dtype=np.float64) / 255.0
    return np.clip(255.0 * x ** g + 0.5, 0, 255).astype(np.uint8)


def apply(image: np.ndarray, g: float) -> np.ndarray:
    """``image`` (uint8) through x -> 255 (x / 255) ** g; the same array when g is 1."""
    return image if g == 1.0 else _curve(g)[image]


def undo(image: np.ndarray, g: float) -> np.ndarray:
    """The inverse of ``apply(., g)``, for the network's output."""
    return image if g == 1.0 else _curve(1.0 / g)[image]


def lift(crop: np.ndarray, mask: np.ndarray | None, target: float) -> tuple[np.ndarray, float]:
    """(``crop`` lifted to ``target``, the exponent used); the crop itself when it needs no lift."""
    g = lift_gamma(crop, mask, target)
    return apply(crop, g), g
