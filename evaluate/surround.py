"""The swapped face's tone against the skin around it: the neck below the jaw and the skin beside the face.

A viewer judges a face's colour against the skin next to it: a face that is right in
itself but paler than its own neck reads as a mask. ``tone_delta_e`` compares the face with
the original face; it cannot tell a swap that put the wrong tone on the face from a whole
frame graded differently (both move the face). This compares, within one frame, the face's
skin with the skin just outside it, and then that relation in the output with the same
relation in the original frame:

- face: the median CIELAB colour of the cheeks (``pipeline.faces.regions``: the part of the
  face a swap repaints that is plain skin, without brows, eyes, nose shadow or lips);
- ``neck``: a band below the jaw (jaw points 5-11 moved down by 0.15 to 0.75 eye distances),
  ``sides``: bands beside the jaw (points 0-4 and 12-16 moved outwards by 0.1 to 0.45 eye
  distances: ears, temples, the side of the neck). Both stay out of the landmark hull grown by
  a tenth of the eye distance, so they lie outside the mask convert blends the face with.
  Of a band, only the pixels that are skin in the original frame count: chroma within
  ``CHROMA_RADIUS`` of the original cheeks', lightness within a range of theirs, and as smooth
  as skin (brown hair passes the colour test, not this one), which leaves out hair, collars
  and background. The same pixels are read in the output.
- per area, the relation is the Lab vector face minus area (medians). The figures are
  ``change``, the CIE76 length of (output relation - original relation): how much the swap
  moved the face against its surroundings, in delta E (0 for an untouched frame and for a
  frame graded as a whole); ``output`` and ``original``, the lengths of each relation: how far
  the face's tone lies from the neck's in each (a face lit differently from its neck reads
  some delta E in the original too, so the original is the yardstick).

Hands are not looked for: they are rarely next to the face, and the bands here are skin
only where the original frame says so.
"""
from __future__ import annotations

import cv2
import numpy as np

from pipeline.core import geometry
from pipeline.core.images import to_lab
from pipeline.faces.regions import region_masks

AREAS = ("neck", "sides")
#: Of a band, pixels whose a*, b* lie within this distance of the original cheeks' are skin.
CHROMA_RADIUS = 10.0
#: ... and whose lightness is this much below the cheeks' at most (the neck is often in shadow: under
#: Ocasio-Cortez's chin about 28 L* darker; at 20 only a lit fringe of it was left) or above them at most.
DARKER, LIGHTER = 30.0, 20.0
#: ... and whose lightness is smooth: the standard deviation of L* over 7x7 pixels at most SMOOTH times the
#: cheeks' own median of it (and at least SMOOTH_FLOOR). Skin reads about 1 L* unit, hair strands 6-8,
#: and lit strands of brown hair pass the colour test (measured on both shared clips).
SMOOTH, SMOOTH_FLOOR = 2.5, 2.5
#: Fewer skin pixels than this share of a band (or than MIN_PIXELS) and the area is not measured.
MIN_SHARE, MIN_PIXELS = 0.1, 25
#: Bands in eye distances: the neck from 0.15 to 0.75 below the jaw, the sides 0.1 to 0.45 beside it;
#: the face's hull grown by FACE_MARGIN is never part of a band.
NECK = (0.15, 0.75)
SIDES = (0.1, 0.45)
FACE_MARGIN = 0.1


def _frame_axes(p: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
    """(unit vector from the image-left eye to the other, unit vector down the face, eye distance)."""
    left, right = p[36:42].mean(axis=0), p[42:48].mean(axis=0)
    across = right - left
    e = float(np.linalg.norm(across))
    u = across / max(e, 1e-9)
    v = np.array([-u[1], u[0]])
    if float(np.dot(p[8] - (left + right) / 2, v)) < 0:      # the chin is down the face
        v = -v
    return u, v, e


def band_polygons(landmarks: np.ndarray) -> dict[str, list[np.ndarray]]:
    """The bands around the face (frame coordinates), before the face's hull is taken out of them."""
    p = np.asarray(landmarks, dtype=np.float64)
    u, v, e = _frame_axes(p)

    def band(points: np.ndarray, direction: np.ndarray, near: float, far: float) -> np.ndarray:
        return np.concatenate([points + near * e * direction, (points + far * e * direction)[::-1]])

    return {"neck": [band(p[5:12], v, *NECK)],
            "sides": [band(p[0:5], -u, *SIDES), band(p[12:17], u, *SIDES)]}


def area_masks(landmarks: np.ndarray, shape: tuple[int, ...]) -> dict[str, np.ndarray]:
    """Each band as a uint8 mask (0/255) of an image of ``shape``, the grown face hull cut out."""
    h, w = shape[:2]
    p = np.asarray(landmarks, dtype=np.float64)
    face = geometry.hull_mask(p, (h, w))
    grow = max(1, int(round(FACE_MARGIN * geometry.eye_distance(p))))
    face = cv2.dilate(face, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * grow + 1, 2 * grow + 1)))
    out = {}
    for name, polygons in band_polygons(p).items():
        mask = np.zeros((h, w), np.uint8)
        for poly in polygons:
            cv2.fillPoly(mask, [np.round(poly * 16).astype(np.int32)], 255, cv2.LINE_8, shift=4)
        mask[face > 0] = 0
        out[name] = mask
    return out


def _crop_box(landmarks: np.ndarray, shape: tuple[int, ...]) -> tuple[int, int, int, int] | None:
    """(x0, y0, x1, y1) holding the face and its bands, inside the frame."""
    p = np.asarray(landmarks, dtype=np.float64)
    pts = np.concatenate([p] + [poly for polys in band_polygons(p).values() for poly in polys])
    h, w = shape[:2]
    x0, y0 = (max(int(np.floor(c)) - 2, 0) for c in pts.min(axis=0))
    x1, y1 = min(int(np.ceil(pts[:, 0].max())) + 3, w), min(int(np.ceil(pts[:, 1].max())) + 3, h)
    return (x0, y0, x1, y1) if x1 > x0 and y1 > y0 else None


def roughness(lab: np.ndarray) -> np.ndarray:
    """Per pixel, the standard deviation of L* over 7x7 pixels: low on skin, high on hair and edges."""
    light = lab[..., 0]
    mean = cv2.blur(light, (7, 7))
    return np.sqrt(np.maximum(cv2.blur(light * light, (7, 7)) - mean * mean, 0.0))


def skin(reference_lab: np.ndarray, band: np.ndarray, cheeks: np.ndarray, cheek_roughness: float) -> np.ndarray:
    """The pixels of ``band`` that are skin in the original frame: near the cheeks' chroma, not far darker
    or lighter, and as smooth as skin (bool mask). ``cheek_roughness``: the cheeks' median ``roughness``."""
    lab = reference_lab
    inside = band > 0
    chroma = np.hypot(lab[..., 1] - cheeks[1], lab[..., 2] - cheeks[2])
    light = (lab[..., 0] >= cheeks[0] - DARKER) & (lab[..., 0] <= cheeks[0] + LIGHTER)
    smooth = roughness(lab) <= max(SMOOTH * cheek_roughness, SMOOTH_FLOOR)
    return inside & (chroma <= CHROMA_RADIUS) & light & smooth


def relations(output: np.ndarray, reference: np.ndarray,
              landmarks: np.ndarray) -> dict[str, tuple[np.ndarray, np.ndarray] | None]:
    """Per area, (output's face minus area, original's face minus area) as Lab vectors; None where there is
    too little skin in the band (off the frame, hair, a collar) or no cheek to read."""
    box = _crop_box(landmarks, reference.shape)
    out: dict[str, tuple[np.ndarray, np.ndarray] | None] = {name: None for name in AREAS}
    if box is None:
        return out
    x0, y0, x1, y1 = box
    p = np.asarray(landmarks, dtype=np.float64) - np.array([x0, y0], dtype=np.float64)
    ref_lab, out_lab = to_lab(reference[y0:y1, x0:x1]), to_lab(output[y0:y1, x0:x1])
    cheeks = region_masks(p, ref_lab.shape)["cheeks"] > 0
    if int(cheeks.sum()) < MIN_PIXELS:
        return out
    face_ref, face_out = np.median(ref_lab[cheeks], axis=0), np.median(out_lab[cheeks], axis=0)
    cheek_roughness = float(np.median(roughness(ref_lab)[cheeks]))
    for name, band in area_masks(p, ref_lab.shape).items():
        area = skin(ref_lab, band, face_ref, cheek_roughness)
        count = int(area.sum())
        if count < max(MIN_PIXELS, MIN_SHARE * int((band > 0).sum())):
            continue
        out[name] = (face_out - np.median(out_lab[area], axis=0), face_ref - np.median(ref_lab[area], axis=0))
    return out


def measure(output: np.ndarray, reference: np.ndarray, landmarks: np.ndarray) -> dict[str, float | None]:
    """Per area: ``<area>_change`` (delta E between the output's and the original's face-to-area relation),
    ``<area>_output`` and ``<area>_original`` (delta E between face and area in each); None where not measured.

    ``landmarks`` are the original face's, so both frames are read at the same pixels.
    """
    found = relations(output, reference, landmarks)
    figures: dict[str, float | None] = {}
    for name in AREAS:
        pair = found[name]
        figures[f"{name}_change"] = None if pair is None else float(np.linalg.norm(pair[0] - pair[1]))
        figures[f"{name}_output"] = None if pair is None else float(np.linalg.norm(pair[0]))
        figures[f"{name}_original"] = None if pair is None else float(np.linalg.norm(pair[1]))
    return figures


def summary(per_frame: list[dict]) -> dict:
    """Per area over the frames: ``change`` (mean, median, worst = largest, count), the medians of
    ``output`` and ``original``, and ``frames`` measured."""
    from evaluate.metrics import summary as stats
    out = {}
    for name in AREAS:
        change = [f.get(f"surround_{name}_change") for f in per_frame]
        got = [v for f in per_frame if (v := f.get(f"surround_{name}_output")) is not None]
        ref = [v for f in per_frame if (v := f.get(f"surround_{name}_original")) is not None]
        out[name] = {"change": stats(change), "output": float(np.median(got)) if got else None,
                     "original": float(np.median(ref)) if ref else None, "frames": len(got)}
    return out
