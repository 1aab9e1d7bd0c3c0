"""What the eye sees in a swapped face, measured against the original face at the same place.

Three per-frame figures, each output against reference over the same face region, so a
clip's own softness, noise or colour cast cancels out:

- ``sharpness``: high-frequency energy (mean squared Laplacian of the luminance) inside the
  face, output over reference. A 128 px network output stretched over a 300 px face reads
  about 0.2; an untouched face reads 1.
- ``fringing``: colour a face does not have, output over reference. Skin, lips, brown
  irises, brows and hair all lie on the warm side of neutral (a* and b* >= 0); the green,
  blue and purple fringes a network paints along eyelids and brows lie on the cool side.
  Per pixel, the distance of the colour into the cool side (green: a* < 0, blue: b* < 0),
  smoothed over 3x3 pixels; the figure is its 99th percentile inside the face. A
  percentile, not a mean, because fringes are thin lines on a percent or two of the face:
  an average over the face hides them (on the README's main job a plain average of chroma
  detail reads 0.72 of the reference while the fringes are plain to see). The reference's
  own cool pixels (a blue iris, a cold light) are in its figure, so the ratio asks only
  for colour the reference does not have. Chroma-detail measures (high-pass a*, b*, damped
  where the luminance has an edge) were tried first and rated that fringed output at
  0.8-1.3 of the reference: the reference's red lips and dark irises dominate them.
- ``tone_delta_e``: CIE76 distance between the mean L*a*b* colour of the skin (the face
  interior without eyes, brows and mouth) of output and reference. A face can meet the
  frame at its border and still be the wrong tone in the middle.
"""
from __future__ import annotations

import cv2
import numpy as np

from pipeline.core.images import to_lab
from pipeline.faces.regions import face_interior, skin_region

#: Percentile of the fringe map inside the face.
FRINGE_PERCENTILE = 99.0
#: Floors (figures below these are treated as these) so a flat, noiseless or wholly warm
#: face cannot blow a ratio up: 2 L*a*b* units of cool colour are invisible.
SHARPNESS_FLOOR = 1.0
FRINGE_FLOOR = 2.0



def _box(mask: np.ndarray, margin: int) -> tuple[slice, slice] | None:
    ys, xs = np.nonzero(mask)
    if len(xs) == 0:
        return None
    h, w = mask.shape
    return (slice(max(int(ys.min()) - margin, 0), min(int(ys.max()) + margin + 1, h)),
            slice(max(int(xs.min()) - margin, 0), min(int(xs.max()) + margin + 1, w)))


def high_frequency_energy(image: np.ndarray, mask: np.ndarray) -> float | None:
    """Mean squared Laplacian of the luminance (grey levels) inside ``mask``."""
    box = _box(mask, 3)
    if box is None:
        return None
    grey = cv2.cvtColor(image[box], cv2.COLOR_RGB2GRAY).astype(np.float32)
    lap = cv2.Laplacian(grey, cv2.CV_32F, ksize=1)
    return float((lap[mask[box] > 0] ** 2).mean())


def fringe_map(image: np.ndarray) -> np.ndarray:
    """Per pixel: how far the colour lies on the cool side of neutral (L*a*b* units), 3x3 smoothed."""
    lab = to_lab(image)
    cool = np.sqrt(np.minimum(lab[..., 1], 0.0) ** 2 + np.minimum(lab[..., 2], 0.0) ** 2)
    return cv2.blur(cool, (3, 3))


def fringe_level(image: np.ndarray, mask: np.ndarray) -> float | None:
    """The ``FRINGE_PERCENTILE`` of the fringe map inside ``mask``."""
    box = _box(mask, 8)
    if box is None:
        return None
    values = fringe_map(image[box])[mask[box] > 0]
    return float(np.percentile(values, FRINGE_PERCENTILE))


def mean_lab(image: np.ndarray, mask: np.ndarray) -> np.ndarray | None:
    box = _box(mask, 0)
    if box is None:
        return None
    return to_lab(image[box])[mask[box] > 0].mean(axis=0)


def measure(output: np.ndarray, reference: np.ndarray, landmarks: np.ndarray) -> dict[str, float | None]:
    """Sharpness and fringing ratios and the skin tone's delta E of one face (reference landmarks)."""
    inside = face_interior(landmarks, reference.shape)
    out: dict[str, float | None] = {"sharpness": None, "fringing": None, "tone_delta_e": None}
    e_out, e_ref = high_frequency_energy(output, inside), high_frequency_energy(reference, inside)
    if e_out is not None and e_ref is not None:
        out["sharpness"] = e_out / max(e_ref, SHARPNESS_FLOOR)
    f_out, f_ref = fringe_level(output, inside), fringe_level(reference, inside)
    if f_out is not None and f_ref is not None:
        out["fringing"] = max(f_out, FRINGE_FLOOR) / max(f_ref, FRINGE_FLOOR)
    skin = skin_region(landmarks, reference.shape, inside)
    t_out, t_ref = mean_lab(output, skin), mean_lab(reference, skin)
    if t_out is not None and t_ref is not None:
        out["tone_delta_e"] = float(np.linalg.norm(t_out - t_ref))
    return out
