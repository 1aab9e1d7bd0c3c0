"""Colour of the face's parts against the src person's own: white brows and an orange nose as numbers.

A swap can match the frame's skin tone at its border (``tone_delta_e``) and still paint
the wrong colour inside: brows gone whitish, a nose with an orange-brown cast, lips of
the dst person. Each region (brows, eyes, nose, lips, cheeks) is cut from the 68
landmarks; its mean CIELAB colour in the output is compared with the median of the same
region over the src person's own faces (CIE76 delta E). The original dst face is
measured the same way, so the report shows where the swap started from.

Lighting differs between the src footage and the dst shot, so some distance remains even
for a perfect swap (``benchmarks.region_floor``: the src person's own faces, recoloured to
the dst shot as convert does, stay 6-10 delta E away). So each part is also measured
*against the face's own skin* (``contrast_delta_e``): the part's colour minus the cheeks'
colour, compared with the same difference in the src person's faces. A change of light
moves part and cheeks together and mostly cancels; white brows on dark skin, a nose
redder than the cheeks, or the dst person's lip colour do not.
"""
from __future__ import annotations

import numpy as np

from evaluate.realism import mean_lab
from pipeline.core.geometry import eye_distance
from pipeline.faces.regions import BROW_THICKNESS, REGIONS, SKIN, against_skin, region_masks

__all__ = ["REGIONS", "PARTS", "SKIN", "region_masks", "region_colours", "src_medians", "delta_e", "contrasts",
           "src_contrast_medians", "contrast_delta_e"]

#: The parts measured against the skin.
PARTS = tuple(name for name in REGIONS if name != SKIN)


def region_colours(image: np.ndarray, landmarks: np.ndarray) -> dict[str, np.ndarray | None]:
    """Mean CIELAB colour of each region of the face in an RGB ``image`` (None where a region is empty).

    The masks are drawn in the face's box only (shifted by whole pixels, so the same pixels),
    not over the whole frame: evaluate does this twice a frame.
    """
    p = np.asarray(landmarks, dtype=np.float64)
    h, w = image.shape[:2]
    pad = max(2, int(round(BROW_THICKNESS * eye_distance(p)))) + 2
    x0, y0 = (max(int(np.floor(v)) - pad, 0) for v in p.min(axis=0))
    x1, y1 = min(int(np.ceil(p[:, 0].max())) + pad, w), min(int(np.ceil(p[:, 1].max())) + pad, h)
    if x1 <= x0 or y1 <= y0:
        return {name: None for name in REGIONS}
    crop = image[y0:y1, x0:x1]
    masks = region_masks(p - np.array([x0, y0], dtype=np.float64), crop.shape)
    return {name: mean_lab(crop, mask) for name, mask in masks.items()}


def src_medians(colours: list[dict[str, np.ndarray | None]]) -> dict[str, np.ndarray] | None:
    """Per region, the median colour over the src person's faces (per channel)."""
    out = {}
    for name in REGIONS:
        values = [c[name] for c in colours if c.get(name) is not None]
        if values:
            out[name] = np.median(np.stack(values), axis=0)
    return out or None


def delta_e(colours: dict[str, np.ndarray | None], src: dict[str, np.ndarray]) -> dict[str, float | None]:
    """CIE76 distance of each region's colour from the src person's median of it."""
    return {name: (float(np.linalg.norm(colours[name] - src[name]))
                   if colours.get(name) is not None and name in src else None) for name in REGIONS}


def contrasts(colours: dict[str, np.ndarray | None]) -> dict[str, np.ndarray | None]:
    """Each part's CIELAB colour minus the cheeks' (None where either is missing)."""
    return against_skin(colours, PARTS)


def src_contrast_medians(colours: list[dict[str, np.ndarray | None]]) -> dict[str, np.ndarray] | None:
    """Per part, the median over the src person's faces of its colour minus the cheeks' (per channel)."""
    return src_medians([contrasts(c) for c in colours])


def contrast_delta_e(colours: dict[str, np.ndarray | None], src: dict[str, np.ndarray]) -> dict[str, float | None]:
    """CIE76 distance between a face's part-against-skin difference and the src person's median one."""
    own = contrasts(colours)
    return {name: (float(np.linalg.norm(own[name] - src[name]))
                   if own.get(name) is not None and name in src else None) for name in PARTS}
