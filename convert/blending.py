"""Putting a generated face back into its frame: mask shaping, warp back, blending.

All work happens in a small region of the frame around the face (a few hundred pixels a
side), never on the whole frame, so the cost per face does not grow with the video size.

Poisson blending uses ``cv2.seamlessClone``, which places the source's mask bounding box
centred on a given point. We pass the warped face and mask already in frame coordinates
and derive that point from the same mask's bounding box, so the face lands exactly where
the (smoothed) transform put it: no half-pixel wobble from rounding a centre.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass

import cv2
import numpy as np

from convert.backends import BLEND_MODES
from pipeline.core import geometry
from pipeline.core.profile import StepTimes


def shape_mask(mask: np.ndarray, erode: int, blur: int) -> np.ndarray:
    """0..1 float mask from a 0..255 one: eroded (< 0 dilates) then feathered, in its own pixels.

    The feather is a Gaussian about ``blur`` pixels wide centred on the eroded edge.
    """
    m = (mask > 127).astype(np.uint8) * 255
    # Outside the crop there is nothing generated: the mask counts as 0 there, so a face
    # mask reaching the crop's edge (the forehead of a 'full' crop) fades out inside the
    # crop instead of ending in a hard line where the crop ends.
    m[[0, -1], :] = 0
    m[:, [0, -1]] = 0
    if erode:
        k = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * abs(erode) + 1, 2 * abs(erode) + 1))
        m = (cv2.erode(m, k, borderType=cv2.BORDER_CONSTANT, borderValue=0) if erode > 0
             else cv2.dilate(m, k, borderType=cv2.BORDER_CONSTANT, borderValue=0))
    return feather(m.astype(np.float32) / 255.0, blur)


def feather(core: np.ndarray, blur: int) -> np.ndarray:
    """Gaussian feather of a 0/1 float mask (``shape_mask`` with blur 0), 0 on the crop's border."""
    if blur <= 0:
        return core
    ksize = 2 * int(blur) + 1
    out = cv2.GaussianBlur(core, (ksize, ksize), blur / 2.0, borderType=cv2.BORDER_CONSTANT)
    return out * _border_ramp(out.shape, blur)


@functools.lru_cache(maxsize=8)
def _border_ramp(shape: tuple[int, ...], blur: int) -> np.ndarray:
    """0 on a crop's border rising to 1 over blur/2 pixels (the same for every face of a run)."""
    h, w = shape[:2]
    rows, cols = np.arange(h), np.arange(w)
    edge = np.minimum(np.minimum(rows, rows[::-1])[:, None], np.minimum(cols, cols[::-1])[None, :])
    return np.clip(edge / max(blur / 2.0, 1.0), 0.0, 1.0).astype(np.float32)


#: Luma weights (BT.601, as OpenCV's YCrCb): a change splits into luma times (1, 1, 1) plus
#: a colour part with no luma.
LUMA = np.array([0.299, 0.587, 0.114], np.float32)


#: Scale (pixels of the network's crop) below which a change counts as structure, not shading.
GATE_SCALE = 2.0
#: Fine structure (grey levels) below which a region counts as flat, and so as kept.
GATE_FLAT = 2.0


def clean_chroma(face: np.ndarray, source: np.ndarray, sigma: float) -> np.ndarray:
    """The network's change to ``source`` with its colour part smoothed over ``sigma`` pixels.

    The change splits into luminance and colour; the luminance keeps every detail the
    network made, the colour only its broad part (skin tone, lip colour). Green and purple
    lines along eyelids and brows are colour detail with no luminance under it, and the
    eye does not read colour at that scale anyway (why video stores it at half resolution).
    """
    if sigma <= 0:
        return face
    x = source.astype(np.float32)
    change = face.astype(np.float32) - x
    luma = change @ LUMA
    colour = change - luma[..., None]
    colour = cv2.GaussianBlur(colour, (0, 0), sigma, borderType=cv2.BORDER_REFLECT)
    return np.clip(x + luma[..., None] + colour + 0.5, 0, 255).astype(np.uint8)


def detail_gate(face: np.ndarray, source: np.ndarray, gate: float) -> np.ndarray:
    """Per pixel (network crop), how much of the frame's own fine detail to put back.

    The frame's detail continues the structure of the network's input. Where the output
    keeps that structure (the edges of an eyelid, a nostril, a brow in the same place),
    the detail fits and comes back in full; where the network erased or moved it, the old
    detail would be a ghost of the dst's features, so none comes back. "Keeps" is the local
    correlation of the fine structure (luminance minus its blur) of output and input; the
    detail returns in full at correlation ``gate`` and above, falling to none at 0. Flat
    skin on both sides counts as kept.
    """
    def structure(image: np.ndarray) -> np.ndarray:
        luma = image.astype(np.float32) @ LUMA
        return luma - cv2.GaussianBlur(luma, (0, 0), GATE_SCALE)

    a, b = structure(face), structure(source)
    window = lambda x: cv2.GaussianBlur(x, (0, 0), GATE_SCALE)  # noqa: E731
    flat = np.float32(GATE_FLAT ** 2)
    ncc = (window(a * b) + flat) / np.sqrt((window(a * a) + flat) * (window(b * b) + flat))
    return np.clip(ncc / max(gate, 1e-3), 0.0, 1.0)


#: Frame pixels per network-crop pixel at and above which the sharpening steps work in full,
#: and at and below which they do nothing (linear between). A 128 px network on a 250 px face
#: (the shared clips) is at 2.2-2.4: its 1 px structure is stretched over two frame pixels and
#: wants sharpening. A 60-120 px face is at 0.55-1.1: the crop is an enlargement of the frame,
#: the network's finest structure already lands on a frame pixel or less, and an unsharp mask
#: there draws halos (evaluate's sharpness 1.92 of the footage on 64-100 px faces).
SHARPEN_FULL_ZOOM = 2.0
SHARPEN_NONE_ZOOM = 1.0


def crop_zoom(to_crop: np.ndarray) -> float:
    """Frame pixels per crop pixel of a frame -> crop matrix (its mean linear scale, inverted).

    Why: how the face's size in the frame compares with the network's resolution decides
    whether the warp back stretches the network's face (> 1) or shrinks it (< 1), and so
    whether it needs sharpening or smoothing against aliasing.
    """
    det = abs(float(np.linalg.det(np.asarray(to_crop, np.float64)[:2, :2])))
    if not np.isfinite(det) or det <= 0:
        raise ValueError(f"crop_zoom: singular frame -> crop matrix {np.asarray(to_crop).tolist()}")
    return 1.0 / np.sqrt(det)


def sharpen_weight(zoom: float) -> float:
    """Share (0..1) of the sharpening amounts (``--sharpen``, ``--sharpen-new``) used at this zoom.

    Why: sharpening makes up for the network's crop being stretched over a larger face; a face
    no larger than the crop loses nothing in the stretch, and sharpening it only adds halos.
    """
    return float(np.clip((zoom - SHARPEN_NONE_ZOOM) / (SHARPEN_FULL_ZOOM - SHARPEN_NONE_ZOOM), 0.0, 1.0))


#: Width (frame pixels) of the frame's own finest band that ``--detail`` puts back on a face no
#: larger than the network's crop, where the network kept the structure.
DETAIL_BAND = 1.0


def detail_sigma(zoom: float) -> float:
    """Width (crop pixels) of the band of the frame's own detail put back in place of the network's: 0 on
    faces stretched over twice the crop or more, about one frame pixel on faces no larger than it.

    Why: on a large face the crop misses the frame's finest detail and ``frame - source``
    is exactly it. On a small face the crop holds all of the frame, so that difference is
    nothing, and the finest structure left in view is the network's own, crisper than the
    footage. The frame's own finest band there, kept wherever the network kept the
    structure, has the footage's sharpness and moves as the face does (64-100 px faces:
    sharpness 1.00 -> 0.87 of the footage, jitter x1.19 -> x1.14 against the steps without it).
    """
    return (1.0 - sharpen_weight(zoom)) * DETAIL_BAND / max(zoom, 1e-3)


def antialias_sigma(zoom: float) -> float:
    """Gaussian width (crop pixels) that keeps a crop shrunk by ``zoom`` < 1 from aliasing; 0 when not shrunk.

    Why: the warp back samples the crop with a cubic kernel and no prefilter; shrinking a
    128 px crop onto a 70 px face that way folds the network's finest structure into speckle
    and shimmer (skimage's ``(1 / zoom - 1) / 2`` rule, as its ``rescale``).
    """
    return 0.0 if zoom >= 1.0 else (1.0 / max(zoom, 1e-3) - 1.0) / 2.0


def antialias(image: np.ndarray, zoom: float) -> np.ndarray:
    """``image`` (a crop, any channels, float or uint8) smoothed by ``antialias_sigma(zoom)``; as is at zoom >= 1."""
    sigma = antialias_sigma(zoom)
    if sigma < 0.05:
        return image
    return cv2.GaussianBlur(image, (0, 0), sigma, borderType=cv2.BORDER_REFLECT)


def detail_band(image: np.ndarray, sigma: float) -> np.ndarray:
    """The fine part of ``image`` (float, any channels): itself minus its Gaussian blur of ``sigma`` px."""
    x = image.astype(np.float32)
    return x - cv2.GaussianBlur(x, (0, 0), sigma, borderType=cv2.BORDER_REFLECT)


def match_detail(face: np.ndarray, source: np.ndarray, mask: np.ndarray, zoom: float) -> np.ndarray:
    """``face`` with its finest detail turned down to the level of ``source``'s inside ``mask``, by the share
    ``1 - sharpen_weight(zoom)``; never turned up.

    Why: on a face no larger than the network's crop (60-120 px, zoom <= 1) nothing is lost
    in the warp back, and the network's face is crisper than the footage: a 128 px net drawing
    a soft, dark 70 px face enlarged, and the colour transfer stretching its contrast to the
    dst's, come out 1.4x as sharp as the frame around it (a pasted look). The finest detail
    is the band that reaches the frame's pixels: luminance minus its blur over one frame
    pixel (``1 / zoom`` crop pixels); its energy inside the mask is set to the source's.
    Faces stretched over twice the crop or more (``SHARPEN_FULL_ZOOM``) are left as they are.
    """
    share = 1.0 - sharpen_weight(zoom)
    inside = mask > 127
    if share <= 0 or inside.sum() < 16:
        return face
    sigma = max(1.0, 1.0 / max(zoom, 1e-3))
    fine = detail_band(face, sigma)
    e_face = float(((fine @ LUMA)[inside] ** 2).mean())
    e_src = float(((detail_band(source, sigma) @ LUMA)[inside] ** 2).mean())
    if e_face <= e_src or e_face <= 0:
        return face
    cut = share * (1.0 - np.sqrt(e_src / e_face))
    return np.clip(face.astype(np.float32) - cut * fine + 0.5, 0, 255).astype(np.uint8)


def sharpen(face: np.ndarray, amount: float) -> np.ndarray:
    """Unsharp mask (radius 1 px at the network's resolution); 0 leaves the face as it is."""
    if amount <= 0:
        return face
    img = face.astype(np.float32)
    soft = cv2.GaussianBlur(img, (0, 0), 1.0)
    return np.clip(img + amount * (img - soft), 0, 255).astype(np.uint8)


@dataclass
class Region:
    """Pixel box [x0, x1) x [y0, y1) of a frame."""

    x0: int
    y0: int
    x1: int
    y1: int

    @property
    def size(self) -> tuple[int, int]:
        return self.x1 - self.x0, self.y1 - self.y0


def face_region(to_crop: np.ndarray, crop_size: int, frame_shape: tuple[int, ...], pad: int = 4) -> Region | None:
    """Box of the frame covered by a crop (frame -> crop matrix), clipped to the frame."""
    pts = geometry.crop_corners(to_crop, crop_size)
    h, w = frame_shape[:2]
    x0, y0 = np.floor(pts.min(axis=0)).astype(int) - pad
    x1, y1 = np.ceil(pts.max(axis=0)).astype(int) + pad
    x0, y0, x1, y1 = max(x0, 0), max(y0, 0), min(x1, w), min(y1, h)
    if x1 - x0 < 4 or y1 - y0 < 4:
        return None
    return Region(int(x0), int(y0), int(x1), int(y1))


def warp_into_region(image: np.ndarray, to_crop: np.ndarray, region: Region, interpolation: int,
                     border: int = cv2.BORDER_CONSTANT) -> np.ndarray:
    """Warp a crop (made by ``to_crop`` from the frame) back onto a region of the frame."""
    back = geometry.invert_affine(to_crop)
    back[:, 2] -= (region.x0, region.y0)
    return cv2.warpAffine(image, back, region.size, flags=interpolation | cv2.WARP_FILL_OUTLIERS,
                          borderMode=border, borderValue=0)


def poisson_clone(face: np.ndarray, target: np.ndarray, mask: np.ndarray, work_size: int = 128,
                  solver: str = "floored", reach: float = 0.0) -> np.ndarray:
    """Poisson (seamless) cloning of ``face`` into ``target`` (same size) where ``mask`` > 0.5.

    Cloning keeps the face's gradients and takes the colour at the mask's edge from the
    target: the result is the face plus a harmonic correction field. That field is smooth,
    so it is solved on a copy shrunk to at most ``work_size`` pixels a side and upsampled
    (a 300 px face: 4.4 ms instead of 36 ms, within ~2 grey levels inside the mask). The
    shrink also keeps single hair strands at the edge from smearing streaks into the face.
    Returns the target unchanged when the mask has no interior.

    ``solver``: ``opencv`` calls ``cv2.seamlessClone`` (the clone, and a flat probe, cached
    by box size, for the offset its 8-bit truncation adds); ``dst`` solves the same discrete
    problem exactly in floating point with sine transforms as matrix products
    (``_poisson_dst``): 1.8 against 6.2 ms a 320 px face, within one grey level. ``dst`` alone
    moves evaluate's figures: OpenCV floors its solution and the probe's offset comes out 0
    or -1 by geometry, so its faces sit 0.5 darker or lighter face by face, and on the main
    job the exact field moved tone dE 1.4248 -> 1.4072 and fringing 0.9803 -> 0.9965.
    ``floored`` (the default) is the sine solver's answer rounded as OpenCV rounds
    (``_opencv_rounding``): OpenCV's output to one grey level on about 2 % of the pixels, at
    the sine solver's cost (a 300 px face, solved at 100 px: 3.6 against 7.8 ms a clone with
    everything around it, loaded machine; issue 31). On the main job evaluate's figures moved
    by at most 0.004 (fringing 0.9391 -> 0.9353; sharpness, tone, identity under 0.002).

    ``reach`` > 0 keeps the correction to the mask's edge: it is whole there and fades to
    nothing ``reach`` times the mask's size inside (``edge_weight``). Why: the correction is
    the harmonic spread of the frame-minus-face difference along the whole border, and the
    border runs through hair, the hairline's shadow and the dark under the jaw, so cloning
    tinted the middle of the face too (issue 27's clip: the face warmer and darker than its
    neck, up to 3.85 dE). At 0 the correction reaches everywhere, as classic cloning does.
    """
    h, w = target.shape[:2]
    factor = max(1, int(np.ceil(max(h, w) / work_size)))
    small = (max(w // factor, 8), max(h // factor, 8))
    face_s = cv2.resize(face, small, interpolation=cv2.INTER_AREA) if factor > 1 else face
    target_s = cv2.resize(target, small, interpolation=cv2.INTER_AREA) if factor > 1 else target
    mask_s = cv2.resize(mask.astype(np.float32), small, interpolation=cv2.INTER_AREA) if factor > 1 else mask
    if solver == "opencv":
        solved = _seamless(face_s, target_s, mask_s)
        if solved is None:
            return target
        cloned, offset = solved
        correction = cloned.astype(np.float32) - face_s.astype(np.float32) - offset
    elif solver in ("dst", "floored"):
        exact = _poisson_dst(face_s, target_s, mask_s)
        if exact is None:
            return target
        if solver == "floored":
            exact = _opencv_rounding(exact, mask_s)
        correction = exact - face_s.astype(np.float32)
    else:
        raise ValueError(f"unknown Poisson solver {solver!r}; choose floored, dst or opencv")
    if reach > 0:
        correction *= edge_weight(mask_s, reach)[..., None]
    if factor > 1:
        correction = cv2.resize(correction, (w, h), interpolation=cv2.INTER_LINEAR)
    # Outside the mask this is the face plus the field's continuation: the caller's soft
    # mask fades it out there, and the face's colour then meets the frame's smoothly.
    correction += face            # in place: face + correction + 0.5, the same floats as with temporaries
    correction += 0.5
    return np.clip(correction, 0, 255, out=correction).astype(np.uint8)


def edge_weight(mask: np.ndarray, reach: float) -> np.ndarray:
    """1 on and outside the edge of ``mask`` > 0.5, falling smoothly (smoothstep) to 0 at ``reach`` times the
    mask's size (the square root of its area) inside it; float32, the mask's shape."""
    binary = (mask > 0.5).astype(np.uint8)
    size = max(float(np.sqrt(binary.sum())), 1.0)
    t = np.clip(1.0 - cv2.distanceTransform(binary, cv2.DIST_L2, 3) / (reach * size), 0.0, 1.0)
    return (t * t * (3.0 - 2.0 * t)).astype(np.float32)


#: How far (grey levels) OpenCV's float32 solution strays from the exact one: a pixel this close to a whole
#: number is floored the way the flat probe's same pixel was (below it where the probe came out 127).
_OPENCV_STRAY = np.float32(0.02)


def _opencv_rounding(exact: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """The exact Poisson solution (``_poisson_dst``) as ``_seamless`` gives it: floored as OpenCV's 8-bit
    output floors its float32 solution, less the offset the flat probe measures.

    Why: the figures evaluate reports were fixed with OpenCV's rounding (faces 0.5 darker or
    lighter by geometry, then corrected by the probe); the sine solver is 5x faster but exact.
    OpenCV's error is below 0.05 and its sign per pixel is what the probe's pixel shows (127:
    below): a pixel within ``_OPENCV_STRAY`` of a whole number is floored that way, any other
    pixel floors the same either way. Cloning an image onto itself then gives it back, as
    with OpenCV; on faces the result is OpenCV's but for one grey level on a few pixels (the
    test regions of the Hill clip: 1.6-2.0 % of the face's pixels after the upsampling, mean
    difference under 0.02; the exact answer alone: 0.5).
    """
    binary = _clone_mask(mask)
    x, y, w, h = cv2.boundingRect(binary)
    probe = _flat_probe(h, w)
    box = exact[y:y + h, x:x + w]
    out = exact.copy()            # outside the box: the target, whole numbers already, as OpenCV leaves it
    out[y:y + h, x:x + w] = np.floor(box + np.where(probe < 128, -_OPENCV_STRAY, _OPENCV_STRAY))
    # the probe's offset, subtracted everywhere, as ``poisson_clone`` does with ``_seamless``'s
    offset = float(probe[binary[y:y + h, x:x + w] > 0].astype(np.float32).mean() - 128.0)
    return out - np.float32(offset)


def _clone_mask(mask: np.ndarray) -> np.ndarray:
    """The 0/255 mask cloning uses: ``mask`` > 0.5, its outermost pixels off (as seamlessClone makes it)."""
    binary = (mask > 0.5).astype(np.uint8) * 255
    binary[[0, -1], :] = 0
    binary[:, [0, -1]] = 0
    return binary


@functools.lru_cache(maxsize=64)
def _sine_basis(n: int) -> tuple[np.ndarray, np.ndarray]:
    """(the n x n DST-I matrix, symmetric, its own inverse times (n + 1) / 2; the eigenvalues of the second
    difference with zero ends that it diagonalises), float32 (n is a side of a Poisson box, <= work_size)."""
    k = np.arange(1, n + 1, dtype=np.float64)
    basis = np.sin(np.pi * np.outer(k, k) / (n + 1))
    return basis.astype(np.float32), (2.0 * np.cos(np.pi * k / (n + 1)) - 2.0).astype(np.float32)


def _poisson_dst(face: np.ndarray, target: np.ndarray, mask: np.ndarray) -> np.ndarray | None:
    """``target`` (float32) with the box around ``mask`` replaced by the Poisson solution seamlessClone
    (NORMAL_CLONE) finds there, unrounded; None when the mask has no interior.

    Why this and not seamlessClone: the same discrete problem (on the mask's bounding box,
    the box's outer ring fixed to the target; inside, the face's forward differences where
    the mask eroded by 3 px is on and the target's elsewhere), solved exactly: the
    five-point Laplacian with fixed ends is diagonal in the sine basis, so the solve is
    four small matrix products per channel, and no 8-bit truncation needs a second,
    flat-image solve to measure its offset (OpenCV floors its solution: its faces came out
    0.4 grey levels darker on average; this one's are exact).
    """
    binary = _clone_mask(mask)
    x, y, w, h = cv2.boundingRect(binary)
    if w < 3 or h < 3:
        return None
    box = (slice(y, y + h), slice(x, x + w))
    inside = binary[box]
    dest = target[box].astype(np.float32)
    src = face[box].astype(np.float32) * (inside > 0)[..., None]
    # eroded in the whole image, as OpenCV erodes its view of it: the box's edges erode too
    keep = cv2.erode(binary, np.ones((3, 3), np.uint8), iterations=3)[box].astype(np.float32)[..., None] / 255.0
    # guidance: forward differences, the face's where the eroded mask is on, the target's elsewhere
    gx = (src[:, 1:] - src[:, :-1]) * keep[:, :-1] + (dest[:, 1:] - dest[:, :-1]) * (1.0 - keep[:, :-1])
    gy = (src[1:] - src[:-1]) * keep[:-1] + (dest[1:] - dest[:-1]) * (1.0 - keep[:-1])
    rhs = (gx[1:-1, 1:] - gx[1:-1, :-1]) + (gy[1:, 1:-1] - gy[:-1, 1:-1])
    # the fixed ring moves to the right-hand side
    rhs[0] -= dest[0, 1:-1]
    rhs[-1] -= dest[-1, 1:-1]
    rhs[:, 0] -= dest[1:-1, 0]
    rhs[:, -1] -= dest[1:-1, -1]
    rows, row_eig = _sine_basis(h - 2)
    cols, col_eig = _sine_basis(w - 2)
    spectrum = rows @ np.moveaxis(rhs, 2, 0) @ cols
    spectrum /= row_eig[:, None] + col_eig[None, :]
    solved = rows @ spectrum @ cols * np.float32(4.0 / ((h - 1) * (w - 1)))
    out = target.astype(np.float32)
    # an image, as seamlessClone's is: values past black or white are clipped there
    out[y + 1:y + h - 1, x + 1:x + w - 1] = np.clip(np.moveaxis(solved, 0, 2), 0.0, 255.0)
    return out


def poisson_mode(face: np.ndarray, roi: np.ndarray, alpha: np.ndarray, reach: float = 0.0) -> np.ndarray:
    """``--blend poisson``: the face Poisson-cloned into the frame region (then feathered by the caller), the
    correction kept within ``reach`` of the mask's edge (``--poisson-reach``)."""
    return poisson_clone(face, roi, alpha, reach=reach)          # reads the frame region, never writes it


def alpha_mode(face: np.ndarray, roi: np.ndarray, alpha: np.ndarray, reach: float = 0.0) -> np.ndarray:
    """``--blend alpha``: the face as generated (only the caller's feathered mask blends it)."""
    return face


def _seamless(face: np.ndarray, target: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, float] | None:
    """cv2.seamlessClone in place, and the constant offset its solver adds for this geometry.

    OpenCV truncates its float solution to 8 bits, and for some box sizes the solution of
    "clone an image onto itself" comes out just below the exact integers: the whole face
    then darkens by one grey level. Cloning a flat image with the same mask measures that
    offset exactly (it is the same for any image with that mask), so it is subtracted.
    """
    binary = _clone_mask(mask)
    x, y, w, h = cv2.boundingRect(binary)
    if w < 3 or h < 3:
        return None
    # seamlessClone centres the mask's bounding box on this point: (x + w // 2, y + h // 2)
    # puts it back on itself exactly.
    centre = (x + w // 2, y + h // 2)
    # the offset depends on the mask's shape (which of the probe's pixels it averages), so it is
    # measured for every face (a cache of offsets keyed on the box made it depend on which frame
    # came first); the probe's pixels themselves depend only on the box's size
    probe = _flat_probe(h, w)
    offset = float(probe[binary[y:y + h, x:x + w] > 0].astype(np.float32).mean() - 128.0)
    return cv2.seamlessClone(face, target, binary, centre, cv2.NORMAL_CLONE), offset


@functools.lru_cache(maxsize=512)
def _flat_probe(h: int, w: int) -> np.ndarray:
    """cv2.seamlessClone of a flat grey image onto itself over an h x w box, as it comes out (h x w x 3).

    Why cached by size alone: for a flat image both guidance fields are zero whatever the
    mask (the face's differences are taken only 3 px inside it), so OpenCV solves the same
    problem, the box's ring fixed to 128, for every mask with that box; its rounding errors,
    which truncation turns into the offset, are then the same too. One call of the two a face
    made before (about 3 ms) is saved, the output unchanged.
    """
    flat = np.full((h + 2, w + 2, 3), 128, np.uint8)
    box = np.zeros((h + 2, w + 2), np.uint8)
    box[1:h + 1, 1:w + 1] = 255
    out = cv2.seamlessClone(flat, flat, box, (1 + w // 2, 1 + h // 2), cv2.NORMAL_CLONE)
    out = out[1:h + 1, 1:w + 1].copy()
    out.flags.writeable = False
    return out


#: The neighbourhood whose range the sharpening of new structure may not leave.
_NEIGHBOURS = np.ones((3, 3), np.uint8)


def _with_detail(face: np.ndarray, source: np.ndarray, face_to_crop: np.ndarray, region: Region, roi: np.ndarray,
                 detail: float, gate: float, sharpness: float = 0.0, times: StepTimes | None = None) -> np.ndarray:
    """The face warped into the region with the frame's unseen detail, k * (frame - source), added.

    With k = detail * gate (per crop pixel) that is warp(face - k * source) + warp(k) * frame,
    so one 4-channel warp (face - k * source, and k) does the work of three. ``sharpness``
    unsharp-masks the face where its detail is not the frame's (1 - k): the structure the
    network drew anew is all it has there. The sharpened values are clamped to each pixel's
    3x3 neighbourhood (overshoot control): the edges steepen without halos.
    """
    times = times or StepTimes()
    with times.step("detail"):
        keep = np.full(face.shape[:2], detail, np.float32)
        if gate > 0:
            keep *= detail_gate(face, source, gate)
        f = face.astype(np.float32)
        zoom = crop_zoom(face_to_crop)
    sharpness *= sharpen_weight(zoom)
    if sharpness > 0:
        with times.step("sharpening"):
            sharpened = f + (sharpness * (1.0 - keep))[..., None] * (f - cv2.GaussianBlur(f, (0, 0), 1.0))
            # no overshoot: each pixel stays within its 3x3 neighbourhood's range, so an edge gets steeper but
            # grows no bright or dark rim (the white rims along the reverse pair's brows were such halos)
            f = np.clip(sharpened, cv2.erode(f, _NEIGHBOURS), cv2.dilate(f, _NEIGHBOURS))
    with times.step("detail"):
        band = detail_sigma(zoom)
        if band > 0:
            # the finest band of the frame (about one frame pixel) takes the place of the network's own
            # band there: f - k * (fine(f) + soft(source)), plus k * frame after the warp
            soft = cv2.GaussianBlur(f, (0, 0), band, borderType=cv2.BORDER_REFLECT)
            base = (f - soft) + cv2.GaussianBlur(source.astype(np.float32), (0, 0), band,
                                                 borderType=cv2.BORDER_REFLECT)
        else:
            base = source.astype(np.float32)
        packed = np.empty(face.shape[:2] + (4,), np.float32)
        packed[..., :3] = f - keep[..., None] * base
        packed[..., 3] = keep
        # a crop larger than the face: prefiltered, so the shrink does not alias (the frame's own detail,
        # k * frame, comes back unfiltered where the network kept the structure)
        packed = antialias(packed, zoom)
    with times.step("crop/warp"):
        warped = warp_into_region(packed, face_to_crop, region, cv2.INTER_CUBIC, cv2.BORDER_REPLICATE)
    with times.step("detail"):
        # in place, in the order warped + k * frame + 0.5 (the same floats as with temporaries, fewer passes)
        out = roi.astype(np.float32)
        out *= np.clip(warped[..., 3:], 0.0, 1.0)
        out += warped[..., :3]
        out += 0.5
        return np.clip(out, 0, 255, out=out).astype(np.uint8)


def blend_face(frame: np.ndarray, face: np.ndarray, face_to_crop: np.ndarray, mask: np.ndarray,
               mask_to_crop: np.ndarray, mode: str, source: np.ndarray | None = None,
               detail: float = 0.0, gate: float = 0.0, sharpness: float = 0.0,
               times: StepTimes | None = None, reach: float = 0.0) -> np.ndarray:
    """Blend one generated face (a crop made by ``face_to_crop``) into ``frame`` (modified, returned).

    ``mask`` is 0..1 float in the pixels of the crop made by ``mask_to_crop`` (the aligned
    size), already eroded and feathered. Poisson mode clones inside the mask's core and
    then feathers the result over the frame with the same soft mask.

    With ``source`` (the network's input crop) and ``detail`` > 0, the fine detail of the
    frame that the network never saw (the frame minus its own network-sized crop warped
    back) is added to the warped face, times ``detail`` and ``detail_gate``: a 128 px face
    stretched over 300 px keeps the frame's own sharpness wherever the network kept the
    structure, and nowhere it changed it; there the face is unsharp-masked by ``sharpness``
    instead (``sharpen`` does that for a face without detail put back). ``times`` records
    the steps (``pipeline.core.profile``). ``reach``: how far into the face Poisson's correction
    reaches (``poisson_clone``).
    """
    times = times or StepTimes()
    region = face_region(mask_to_crop, mask.shape[0], frame.shape)
    if region is None:
        return frame
    roi = frame[region.y0:region.y1, region.x0:region.x1]
    with times.step("crop/warp"):
        alpha = warp_into_region(mask, mask_to_crop, region, cv2.INTER_LINEAR)
    if not (alpha > 0.004).any():
        return frame
    if source is not None and detail > 0:
        warped = _with_detail(face, source, face_to_crop, region, roi, detail, gate, sharpness, times)
    else:
        with times.step("crop/warp"):
            warped = warp_into_region(antialias(face, crop_zoom(face_to_crop)), face_to_crop, region,
                                      cv2.INTER_CUBIC, cv2.BORDER_REPLICATE)
    if mode not in BLEND_MODES:
        raise ValueError(f"unknown blend mode {mode!r}; choose from {', '.join(BLEND_MODES.names())}")
    with times.step(f"blend: {mode}"):
        warped = BLEND_MODES.load(mode)(warped, roi, alpha, reach)
    with times.step("blend"):
        alpha = np.ascontiguousarray(alpha, dtype=np.float32)
        roi[...] = cv2.blendLinear(np.ascontiguousarray(warped), np.ascontiguousarray(roi), alpha, 1.0 - alpha)
    return frame
