"""dlib's 150x150 face chip (``dlib.get_face_chip(img, shape, 150, 0.25)``) without dlib.

The face-recognition ResNet (``pipeline.faces.face_net``) was trained on chips cut exactly
this way; feeding it differently aligned crops degrades its descriptors. Reproducing the
crop here lets extract compute identity descriptors from our own landmarks, and gives
training losses the same chip geometry, without calling dlib per face.

How dlib does it, measured on dlib 20.0.1 (random landmark sets through
``get_face_chip_details``, real frames through ``get_face_chip``):
- Only 33 of the 68 points count: nose (27-35), eyes (36-47), outer upper lip (48-54)
  and inner upper lip (60-64). Jaw, brows and lower lip are ignored.
- A least-squares similarity maps the template below, scaled into chip space
  ``size * (padding + m) / (1 + 2 * padding)``, onto those points (chip -> image).
- That similarity becomes a rectangle of side ``size * scale`` centred on chip point
  ``(size/2, size/2)``, whose corners go to chip pixels 0 and size-1: the pixel scale
  is ``(size * scale - 1) / (size - 1)``.
- If the rectangle is more than twice the chip, dlib samples from an image pyramid
  (5-tap [1 4 6 4 1] filter, values truncated) built on the chip's bounding box, using
  its own, slightly offset, pyramid coordinate map. Bilinear sampling is truncated to
  integers, and pixels whose 2x2 neighbourhood leaves the image are black.
The template was solved for from 600 random landmark sets (3 sizes and paddings); the
solutions agree to 1e-14 and come out with 6 decimals, as stored below.
"""
from __future__ import annotations

import cv2
import numpy as np

from pipeline.core.geometry import invert_affine, similarity_scale, transform_points, umeyama

CHIP_SIZE = 150
CHIP_PADDING = 0.25

#: The 68-point indices dlib's chip alignment uses.
CHIP_POINTS = list(range(27, 55)) + list(range(60, 65))

#: Mean-face positions of ``CHIP_POINTS`` in dlib's unit chip template (before padding),
#: measured from dlib's behaviour as described in the module docstring.
CHIP_TEMPLATE = np.array([
    [0.490127, 0.203352], [0.490127, 0.307009], [0.490127, 0.409805], [0.490127, 0.515625],
    [0.366880, 0.587326], [0.426036, 0.609345], [0.490127, 0.628106], [0.554217, 0.609345],
    [0.613373, 0.587326],                                                      # nose
    [0.121737, 0.216423], [0.187122, 0.178758], [0.265825, 0.179852], [0.334606, 0.231733],
    [0.260918, 0.245099], [0.182743, 0.244077],                                # right eye
    [0.645647, 0.231733], [0.714428, 0.179852], [0.793132, 0.178758], [0.858516, 0.216423],
    [0.797510, 0.244077], [0.719335, 0.245099],                                # left eye
    [0.254149, 0.780233], [0.340985, 0.745405], [0.428858, 0.727388], [0.490127, 0.742578],
    [0.551395, 0.727388], [0.639268, 0.745405], [0.726104, 0.780233],          # upper lip
    [0.290379, 0.784792], [0.428096, 0.778746], [0.490127, 0.785343], [0.552157, 0.778746],
    [0.689874, 0.784792],                                                      # inner lip
])

_PYRAMID_KERNEL = np.array([1, 4, 6, 4, 1], np.float32) / 16.0


def chip_to_image(landmarks68: np.ndarray, size: int = CHIP_SIZE,
                  padding: float = CHIP_PADDING) -> np.ndarray:
    """2x3 affine from chip pixels to source-image pixels, as dlib's chip details."""
    points = np.asarray(landmarks68, dtype=np.float64)
    if points.shape != (68, 2):
        raise ValueError(f"expected (68, 2) landmarks, got shape {points.shape}")
    chip_space = size * (padding + CHIP_TEMPLATE) / (1.0 + 2.0 * padding)
    fit = umeyama(chip_space, points[CHIP_POINTS])         # chip space -> image
    scale = similarity_scale(fit)
    rotation = fit[:, :2] / scale
    pixel_scale = (size * scale - 1.0) / (size - 1.0)
    centre = transform_points(np.array([[size / 2.0, size / 2.0]]), fit)[0]
    out = np.empty((2, 3))
    out[:, :2] = pixel_scale * rotation
    out[:, 2] = centre - out[:, :2] @ np.full(2, (size - 1) / 2.0)
    return out


def chip_transform(landmarks68: np.ndarray, size: int = CHIP_SIZE,
                   padding: float = CHIP_PADDING) -> np.ndarray:
    """2x3 affine from source-image pixels to chip pixels (for warping and landmarks)."""
    return invert_affine(chip_to_image(landmarks68, size, padding))


def _pyramid_down(image: np.ndarray) -> np.ndarray:
    """dlib's pyramid_down<2>: out[i] = truncated [1 4 6 4 1]^2/256 blur centred on in[2i+2]."""
    h, w = image.shape[:2]
    blurred = cv2.sepFilter2D(image.astype(np.float32), -1, _PYRAMID_KERNEL, _PYRAMID_KERNEL,
                              anchor=(0, 0), borderType=cv2.BORDER_REPLICATE)
    nh, nw = (h - 3) // 2, (w - 3) // 2
    # Exact multiples of 1/256 in float32; the epsilon only guards the floor.
    return np.floor(blurred[0:2 * nh:2, 0:2 * nw:2] + 1e-3).astype(np.uint8)


def _pyramid_level(to_image: np.ndarray, size: int) -> int:
    """Pyramid level dlib samples from: -1 = the image itself, 0 = one halving, ..."""
    return _level_of_span(similarity_scale(to_image) * (size - 1), size)


def _level_of_span(span: float, size: int = CHIP_SIZE) -> int:
    """The level for a chip whose ``size - 1`` pixels span ``span`` source pixels."""
    level = -1
    while span / 2.0 ** (level + 2) + 1.0 > size:      # rect one level down still bigger
        level += 1
    return level


def extract_chip(image_rgb: np.ndarray, landmarks68: np.ndarray, size: int = CHIP_SIZE,
                 padding: float = CHIP_PADDING) -> np.ndarray:
    """The (size, size, 3) uint8 chip dlib.get_face_chip would cut from this image."""
    image = np.asarray(image_rgb)
    if image.dtype != np.uint8 or image.ndim != 3:
        raise ValueError(f"expected an (H, W, C) uint8 image, got {image.dtype} {image.shape}")
    to_image = chip_to_image(landmarks68, size, padding)
    level = _pyramid_level(to_image, size)

    # dlib builds the pyramid on the chip's bounding box (grown so blurring has margin);
    # the box's position decides the pyramid's sampling grid, so it has to match.
    corners = transform_points(
        np.array([[0, 0], [size - 1, 0], [0, size - 1], [size - 1, size - 1]], float), to_image)
    grow = 2 ** (level + 3) - 2
    h, w = image.shape[:2]
    left, top = np.floor(corners.min(axis=0) + 0.5).astype(int) - grow
    right, bottom = np.floor(corners.max(axis=0) + 0.5).astype(int) + grow
    left, top = max(left, 0), max(top, 0)
    right, bottom = min(right, w - 1), min(bottom, h - 1)
    chip = np.zeros((size, size, image.shape[2]), np.uint8)
    if right < left or bottom < top:
        return chip                                      # face entirely outside the image

    source = image[top:bottom + 1, left:right + 1]
    to_source = to_image.copy()
    to_source[:, 2] -= (left, top)
    for _ in range(level + 1):
        source = _pyramid_down(source)
        to_source = to_source / 2.0                      # dlib's point_down map:
        to_source[:, 2] -= (1.25, 0.75)                  # (x - 2.5) / 2, (y - 1.5) / 2
    sh, sw = source.shape[:2]
    if sh < 2 or sw < 2:
        return chip

    warped = cv2.warpAffine(source.astype(np.float32), to_source, (size, size),
                            flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                            borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    if warped.ndim == 2:
        warped = warped[:, :, None]
    # dlib leaves a pixel black when any of its 4 bilinear neighbours is outside.
    v, u = np.mgrid[0:size, 0:size].astype(np.float64)
    x = to_source[0, 0] * u + to_source[0, 1] * v + to_source[0, 2]
    y = to_source[1, 0] * u + to_source[1, 1] * v + to_source[1, 2]
    fx, fy = np.floor(x), np.floor(y)
    valid = (fx >= 0) & (fy >= 0) & (fx + 1 < sw) & (fy + 1 < sh)
    np.copyto(chip, np.clip(np.floor(warped), 0, 255).astype(np.uint8), where=valid[:, :, None])
    return chip


def aligned_to_chip(aligned_landmarks: np.ndarray, size: int = CHIP_SIZE,
                    padding: float = CHIP_PADDING) -> np.ndarray:
    """2x3 affine from an aligned crop to the face chip, from the crop's own landmarks.

    Training has only the aligned faces; this warp (per face, from the landmarks stored
    with it) brings them to the chip the identity network expects, without the frame.
    """
    return chip_transform(aligned_landmarks, size, padding)


def chip_from_aligned(aligned: np.ndarray, aligned_landmarks: np.ndarray, source_scale: float) -> np.ndarray:
    """Chip cut from an aligned crop, made to look like dlib's chip of the source frame.

    ``source_scale`` is the crop's pixels per source pixel (the scale of the face's stored
    source->aligned transform): with it, the pyramid level dlib would use is known, and
    so is how it differs from an ideal warp (``dlib_pyramid_offsets``): from level 0 on,
    a blur and a grid offset that grow with each halving; at level -1 (the chip shrinks
    the frame less than 2x) neither, a bare bilinear warp.

    Gap to the frame chip's descriptor (Euclidean), all 200 faces of each shared clip, mean
    (max): ``whole`` crops Hill 0.018 (0.029), Ocasio-Cortez 0.017 (0.024); ``full`` crops
    0.041 (0.069) and 0.023 (0.046): their chip's corners lie outside the crop, 7-12 px,
    and are filled by repeating the crop's edge (black moved descriptors by 0.080 on
    average, reflecting was no better). A fixed blur and offset, right only for level 0,
    gave whole 0.030 (0.070) and 0.023 (0.035).
    """
    matrix, sigma = aligned_chip_warp(aligned_landmarks, source_scale)
    soft = cv2.GaussianBlur(aligned, (0, 0), sigma) if sigma > MIN_BLUR else aligned
    return cv2.warpAffine(soft, matrix, (CHIP_SIZE, CHIP_SIZE), flags=cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_REPLICATE)


#: Blurs below this sigma (crop pixels) are skipped: they change no 8-bit pixel that matters.
MIN_BLUR = 0.2


def aligned_chip_warp(aligned_landmarks: np.ndarray, source_scale: float) -> tuple[np.ndarray, float]:
    """(crop -> chip 2x3 affine with dlib's grid offset, Gaussian sigma in crop pixels).

    The recipe of ``chip_from_aligned`` as numbers, so training's differentiable chip
    path (a grid sample in torch) applies the same blur and offset as the numpy one.
    """
    matrix = aligned_to_chip(aligned_landmarks).copy()
    chip_per_crop = similarity_scale(matrix)
    blur, offset = dlib_pyramid_offsets(chip_per_crop * source_scale)
    matrix[:, 2] += (offset, -offset)
    return matrix, blur / max(chip_per_crop, 1e-6)                     # chip px -> crop px


#: Blur of dlib's chip relative to its pyramid's own (measured, see dlib_pyramid_offsets):
#: the bilinear sampling after the pyramid softens a little more.
_PYRAMID_BLUR_GAIN = 1.1


def dlib_pyramid_offsets(chip_per_source: float) -> tuple[float, float]:
    """(Gaussian sigma, grid offset), both in chip pixels, of dlib's chip against an ideal warp.

    Each halving of dlib's pyramid blurs with [1 4 6 4 1]/16 (variance 1 in its input's
    pixels) and, through dlib's point-down map, samples half an input pixel left of and
    below the ideal position. Summed over levels 0..L, in source pixels: variance
    (4^(L+1) - 1) / 3, offset (2^(L+1) - 1) / 2. The gain on the blur was fitted on the
    shared clips' ``whole`` crops at levels 0 and 1 (0.9-1.2 tried; 1.1 best at both).
    """
    level = _level_of_span((CHIP_SIZE - 1) / chip_per_source)
    if level < 0:
        return 0.0, 0.0
    blur = _PYRAMID_BLUR_GAIN * np.sqrt((4.0 ** (level + 1) - 1.0) / 3.0) * chip_per_source
    offset = 0.5 * (2.0 ** (level + 1) - 1.0) * chip_per_source
    return float(blur), float(offset)
