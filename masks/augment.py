"""Augmentation for the mask segmenter: a few painted masks must generalise to a whole shot.

An artist paints a few dozen masks at most. Each training sample is one of them seen
anew: moved (rotation, scale, shift, flip), recoloured, blurred, noised, JPEG-compressed,
and, most of the time, with **synthetic occluders** pasted over the face and cut out of
its mask. The occluders are the things that cross faces in real footage, drawn at random:
blobs of skin-like or any colour (hands), bars with a head (microphones), thin curves
(hair), ellipse outlines (glasses), and pieces of other images (``pool``: other faces of
the workspace, which teaches that skin is not always face). So the net learns "face
minus whatever covers it" from labels that may show no occluder at all.

Everything is numpy + OpenCV on (R, R) crops; one sample costs about a millisecond at 128.
"""
from __future__ import annotations

import cv2
import numpy as np


def _similarity(rng: np.random.Generator, r: int) -> np.ndarray:
    angle = rng.uniform(-15, 15)
    scale = rng.uniform(0.9, 1.1)
    m = cv2.getRotationMatrix2D((r / 2, r / 2), angle, scale)
    m[:, 2] += rng.uniform(-0.06, 0.06, 2) * r
    return m


def _blob(rng: np.random.Generator, r: int, centre: np.ndarray, radius: float) -> np.ndarray:
    """A star-shaped polygon around ``centre`` (lumpy, like a hand or a fist)."""
    n = int(rng.integers(6, 14))
    angles = np.sort(rng.uniform(0, 2 * np.pi, n))
    radii = radius * rng.uniform(0.45, 1.0, n)
    pts = centre + np.stack([np.cos(angles) * radii, np.sin(angles) * radii], 1)
    return pts.round().astype(np.int32)


def _fill(rng: np.random.Generator, r: int, pool: np.ndarray | None) -> np.ndarray:
    """An (R, R, 3) float texture: flat colour, a gradient, noise, or a piece of another image."""
    kind = rng.integers(0, 4 if pool is not None and len(pool) else 3)
    if kind == 3:
        assert pool is not None
        img = pool[rng.integers(0, len(pool))].astype(np.float32)
        m = _similarity(rng, r)
        m[:, 2] += rng.uniform(-0.3, 0.3, 2) * r
        return cv2.warpAffine(img, m, (r, r), borderMode=cv2.BORDER_REFLECT)
    if rng.random() < 0.35:                                   # skin-like tones: a hand, an arm
        base = np.array([rng.uniform(60, 240), 0, 0], np.float32)
        base[1] = base[0] * rng.uniform(0.62, 0.85)
        base[2] = base[0] * rng.uniform(0.45, 0.75)
    else:
        base = rng.uniform(0, 255, 3).astype(np.float32)
    out = np.broadcast_to(base, (r, r, 3)).astype(np.float32)
    if kind >= 1:                                             # shading across the object
        direction = rng.normal(size=2)
        direction /= np.linalg.norm(direction) + 1e-6
        yy, xx = np.mgrid[0:r, 0:r].astype(np.float32) / r - 0.5
        out = out * (1.0 + rng.uniform(0.2, 0.8) * (xx * direction[0] + yy * direction[1]))[..., None]
    if kind == 2:                                             # texture
        noise = cv2.resize(rng.normal(0, 1, (r // 8, r // 8, 3)).astype(np.float32), (r, r))
        out = out + noise * rng.uniform(5, 35) + rng.normal(0, rng.uniform(1, 8), (r, r, 3)).astype(np.float32)
    return out


def _occluder(rng: np.random.Generator, r: int, face: np.ndarray, pool: np.ndarray | None) -> np.ndarray:
    """A uint8 (R, R) shape of one random occluder, placed mostly over the face."""
    shape = np.zeros((r, r), np.uint8)
    ys, xs = np.nonzero(face > 127)
    if len(xs) == 0:
        centre = rng.uniform(0.25, 0.75, 2) * r
    else:
        k = rng.integers(0, len(xs))
        centre = np.array([xs[k], ys[k]], np.float64)
    kind = rng.choice(["blob", "bar", "curve", "ring", "piece"], p=[0.3, 0.2, 0.2, 0.1, 0.2])
    if kind in ("blob", "piece"):
        cv2.fillPoly(shape, [_blob(rng, r, centre, rng.uniform(0.1, 0.35) * r)], 255)
        if kind == "blob" and rng.random() < 0.6:               # fingers
            base = rng.uniform(0, 2 * np.pi)
            for i in range(int(rng.integers(2, 6))):
                a = base + 0.3 * i
                length = rng.uniform(0.15, 0.35) * r
                end = centre + length * np.array([np.cos(a), np.sin(a)])
                cv2.line(shape, tuple(centre.round().astype(int)), tuple(end.round().astype(int)), 255,
                         max(2, int(rng.uniform(0.04, 0.08) * r)))
    elif kind == "bar":
        a = rng.uniform(0, np.pi)
        half = rng.uniform(0.3, 0.9) * r
        d = np.array([np.cos(a), np.sin(a)])
        p0, p1 = centre - d * half * rng.uniform(0, 1), centre + d * half
        cv2.line(shape, tuple(p0.round().astype(int)), tuple(p1.round().astype(int)), 255,
                 max(3, int(rng.uniform(0.04, 0.12) * r)))
        if rng.random() < 0.6:                                    # a microphone's head
            cv2.circle(shape, tuple(p0.round().astype(int)), int(rng.uniform(0.06, 0.14) * r), 255, -1)
    elif kind == "curve":                                         # hair: a few thin strands
        for _ in range(int(rng.integers(1, 5))):
            pts = [centre + rng.normal(0, 0.08 * r, 2)]
            step = rng.normal(0, 0.12 * r, 2)
            for _ in range(int(rng.integers(3, 8))):
                step = 0.7 * step + rng.normal(0, 0.05 * r, 2)
                pts.append(pts[-1] + step)
            cv2.polylines(shape, [np.array(pts).round().astype(np.int32)], False, 255,
                          int(rng.integers(1, max(2, r // 40) + 1)))
    else:                                                         # glasses: ellipse outlines
        axes = (int(rng.uniform(0.08, 0.16) * r), int(rng.uniform(0.05, 0.11) * r))
        gap = rng.uniform(0.18, 0.3) * r
        thick = int(rng.integers(1, max(2, r // 30) + 1))
        for sign in (-1, 1):
            c = (int(centre[0] + sign * gap / 2), int(centre[1]))
            cv2.ellipse(shape, c, axes, rng.uniform(-10, 10), 0, 360, 255, thick)
        cv2.line(shape, (int(centre[0] - gap / 2 + axes[0]), int(centre[1])),
                 (int(centre[0] + gap / 2 - axes[0]), int(centre[1])), 255, thick)
    return shape


def add_occluders(image: np.ndarray, mask: np.ndarray, rng: np.random.Generator, pool: np.ndarray | None,
                  count: int) -> tuple[np.ndarray, np.ndarray]:
    """Paste ``count`` occluders: float image (R, R, 3) 0..255 and mask 0..1 with them cut out."""
    r = image.shape[0]
    for _ in range(count):
        shape = _occluder(rng, r, (mask * 255).astype(np.uint8), pool)
        alpha = shape.astype(np.float32) / 255.0
        if rng.random() < 0.3:                                    # out of focus or moving
            k = 2 * int(rng.integers(1, 3)) + 1
            alpha = cv2.GaussianBlur(alpha, (k, k), 0)
        texture = _fill(rng, r, pool)
        image = image * (1 - alpha[..., None]) + texture * alpha[..., None]
        mask = mask * (1 - alpha)
    return image, mask


def _recolour(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    out = image * rng.uniform(0.6, 1.4) + rng.uniform(-30, 30)              # exposure, offset
    out = out * rng.uniform(0.85, 1.15, 3).astype(np.float32)              # white balance
    grey = out.mean(axis=2, keepdims=True)
    out = grey + (out - grey) * rng.uniform(0.5, 1.4)                       # saturation
    if rng.random() < 0.3:
        gamma = rng.uniform(0.7, 1.4)
        out = 255.0 * (np.clip(out, 0, 255) / 255.0) ** gamma
    return out


def _degrade(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    if rng.random() < 0.3:
        image = cv2.GaussianBlur(image, (0, 0), rng.uniform(0.3, 1.5))
    if rng.random() < 0.3:
        image = image + rng.normal(0, rng.uniform(2, 10), image.shape).astype(np.float32)
    out = np.clip(image, 0, 255).astype(np.uint8)
    if rng.random() < 0.3:
        ok, buf = cv2.imencode(".jpg", out, [cv2.IMWRITE_JPEG_QUALITY, int(rng.integers(35, 90))])
        if ok:
            out = cv2.imdecode(buf, cv2.IMREAD_UNCHANGED)
    return out


def augment(image: np.ndarray, mask: np.ndarray, rng: np.random.Generator, pool: np.ndarray | None = None,
            occluder_chance: float = 0.6, geometry: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """One training sample from an (R, R, 3) uint8 face and its (R, R) uint8 mask.

    Returns the face as uint8 and the target mask as float32 in 0..1 (soft at edges).
    """
    r = image.shape[0]
    img = image.astype(np.float32)
    m = mask.astype(np.float32) / 255.0
    if geometry:
        mat = _similarity(rng, r)
        img = cv2.warpAffine(img, mat, (r, r), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)
        m = cv2.warpAffine(m, mat, (r, r), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)
        if rng.random() < 0.5:
            img, m = img[:, ::-1], m[:, ::-1]
    if rng.random() < occluder_chance:
        img, m = add_occluders(img, m, rng, pool, int(rng.integers(1, 4)))
    img = _recolour(img, rng)
    return _degrade(img, rng), np.ascontiguousarray(m, dtype=np.float32)
