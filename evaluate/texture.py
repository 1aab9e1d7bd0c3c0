"""Skin texture without a reference: painted, plastic or over-sharpened skin as a number.

``sharpness`` compares the output with the original face at the same place, so a swap
that keeps the original's fine detail reads well even when the skin between looks
airbrushed or speckled. ``texture`` asks instead whether the skin looks like skin of
the src person: the ratio of fine to middle-scale luminance detail on the skin.

Each face is first brought to one scale (eye distance ``EYE_PIXELS``, area-averaged when
shrunk), so the figure does not depend on how large the face is in the frame. On the skin
(``pipeline.faces.regions.skin_region``: the face without eyes, brows and mouth) the luminance is split
into a fine band (the image minus a Gaussian blur of sigma ``FINE_SIGMA``) and a middle
band (that blur minus one of sigma ``MIDDLE_SIGMA``); the figure is the ratio of their RMS.
A ratio is independent of contrast and exposure. Blurred, upscaled or airbrushed skin has
lost its fine band and reads low; sharpening halos and painted speckle add fine energy and
read high. The src person's own faces give the range a believable face lies in.

The scale and bands were chosen on the shared clips (every tenth frame): with eye distance
64 px and sigmas 0.7/2, real Hill faces read 0.43 (75 % of them inside the Ocasio-Cortez
faces' 5th-95th percentile range 0.32-0.45), and none of the same frames blurred (sigma
eye distance / 60), shrunk 4x and enlarged back, or unsharp-masked (amount 1.5) fell in
that range (0.25, 0.27, 0.58). ``tests/test_texture.py`` checks the same on real frames.

Faces smaller than ``EYE_PIXELS`` are enlarged and read lower, like their original: the
report gives the original's figure beside the output's for that reason.
"""
from __future__ import annotations

import numpy as np

from pipeline.faces import texture_bands

#: Eye distance (pixels) each face is brought to before measuring, and the bands' sigmas at that scale.
EYE_PIXELS, FINE_SIGMA, MIDDLE_SIGMA = texture_bands.EYE_PIXELS, texture_bands.FINE_SIGMA, texture_bands.MIDDLE_SIGMA
#: Percentiles of the src person's own faces that bound a believable texture.
SRC_RANGE = (5.0, 95.0)


def texture(image: np.ndarray, landmarks: np.ndarray) -> float | None:
    """Fine over middle-band RMS of the skin's luminance in an RGB ``image`` (68 landmarks in its pixels).

    None when the face is too small, off the frame, or has too little skin to measure.
    """
    return texture_bands.face_texture(image, landmarks)


def src_range(values: list[float | None]) -> tuple[float, float] | None:
    """The ``SRC_RANGE`` percentiles of the src person's own faces' textures (None if none measured)."""
    vals = [v for v in values if v is not None]
    if len(vals) < 2:
        return None
    lo, hi = np.percentile(vals, SRC_RANGE)
    return float(lo), float(hi)


def summary(output: list[float | None], original: list[float | None], src: list[float | None]) -> dict:
    """report.json's ``texture``: medians of output and original, the src range, and where the output falls.

    ``inside_src_range`` is the share of measured output frames inside the range; ``below`` (soft,
    airbrushed) and ``above`` (over-sharpened, speckled) count those outside it.
    """
    out = [v for v in output if v is not None]
    ref = [v for v in original if v is not None]
    bounds = src_range(src)
    result: dict = {"output": float(np.median(out)) if out else None,
                    "original": float(np.median(ref)) if ref else None,
                    "src_range": list(bounds) if bounds else None,
                    "src_faces": sum(1 for v in src if v is not None), "frames": len(out),
                    "inside_src_range": None, "below": None, "above": None}
    if bounds and out:
        arr = np.array(out)
        result["below"] = int((arr < bounds[0]).sum())
        result["above"] = int((arr > bounds[1]).sum())
        result["inside_src_range"] = float(np.mean((arr >= bounds[0]) & (arr <= bounds[1])))
    return result


def distance_from_range(value: float | None, bounds: tuple[float, float] | list[float] | None) -> float | None:
    """How far ``value`` lies outside ``bounds`` (0 inside): ranks the page's worst-texture frame."""
    if value is None or not bounds:
        return None
    lo, hi = bounds
    return float(max(lo - value, value - hi, 0.0))
