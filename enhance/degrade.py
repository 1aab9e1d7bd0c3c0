"""What the enhancer learns to undo: the faults a face model's output has, made on the src person's real faces.

Each fault is one a face model makes at its own resolution (issue 26's stills): an
autoencoder's face is soft (a small code decoded: ``soften``), the transformation
network's skin is smooth like make-up (``plasticise``: an edge-keeping filter takes the
pores and keeps the features) with colour blotches over nose and cheeks (``blotch``: a
smooth random colour field a few delta E strong); encoding adds noise and blocks. A
sample gets one to three of them at random strengths, so the network learns to restore
the person's own face from any mix, and leaves a face with none of them nearly as it is
(every batch also holds untouched faces).
"""
from __future__ import annotations

import cv2
import numpy as np


def soften(face: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Shrunk by 1.3-2.5x and enlarged back (area down, linear or cubic up), maybe blurred a little."""
    side = face.shape[0]
    small = max(8, int(round(side / rng.uniform(1.3, 2.5))))
    out = cv2.resize(cv2.resize(face, (small, small), interpolation=cv2.INTER_AREA), (side, side),
                     interpolation=cv2.INTER_CUBIC if rng.random() < 0.5 else cv2.INTER_LINEAR)
    if rng.random() < 0.3:
        out = cv2.GaussianBlur(out, (0, 0), rng.uniform(0.4, 1.0))
    return out


def plasticise(face: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Skin texture smoothed away, edges kept (a bilateral filter of random strength)."""
    return cv2.bilateralFilter(face, 7, rng.uniform(15, 45), rng.uniform(2, 5))


def blotch(face: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A smooth colour field (a 3x3 to 6x6 grid of random offsets, enlarged) of up to about 12 levels added."""
    side = face.shape[0]
    cells = int(rng.integers(3, 7))
    field = rng.normal(0.0, rng.uniform(3.0, 8.0), (cells, cells, 3)).astype(np.float32)
    field = cv2.resize(field, (side, side), interpolation=cv2.INTER_CUBIC)
    return np.clip(face.astype(np.float32) + field, 0, 255).astype(np.uint8)


def noise(face: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Sensor-like noise (1-4 levels), or a JPEG round trip at quality 40-90."""
    if rng.random() < 0.5:
        noisy = face.astype(np.float32) + rng.normal(0.0, rng.uniform(1.0, 4.0), face.shape).astype(np.float32)
        return np.clip(noisy, 0, 255).astype(np.uint8)
    ok, data = cv2.imencode(".jpg", face, [cv2.IMWRITE_JPEG_QUALITY, int(rng.integers(40, 91))])
    return cv2.imdecode(data, cv2.IMREAD_UNCHANGED) if ok else face


FAULTS = (soften, plasticise, blotch, noise)
#: how likely each fault is in a degraded sample (soft and plastic skin are what the stills show most)
WEIGHTS = np.array([0.35, 0.3, 0.25, 0.1])


def degrade(face: np.ndarray, rng: np.random.Generator, clean_share: float = 0.1) -> np.ndarray:
    """``face`` (R x R RGB uint8) with 1-3 faults; untouched with probability ``clean_share``."""
    if rng.random() < clean_share:
        return face
    count = int(rng.integers(1, 4))
    picks = rng.choice(len(FAULTS), size=count, replace=False, p=WEIGHTS)
    out = face
    for i in sorted(picks):                 # soften before plastic before blotch before noise, as a model would
        out = FAULTS[i](out, rng)
    return out
