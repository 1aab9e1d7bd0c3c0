"""A clip with synthetic occluders moving over the face, and the exact occluder mask of every frame.

A learned face mask (segmentation) is only worth its cost where the landmark hull is wrong:
where something covers the face. The shared clips have nothing in front of the face, so a
mask benchmark on them cannot tell a learned mask from the hull. ``build_occluded_clip``
takes a clean clip and the workspace extracted from it, and draws four kinds of occluder
over each frame, placed from that frame's landmarks so they follow the face, and moving on
their own (smooth, seeded sways and passes):

- ``hand``: palm, four fingers and a thumb on a forearm, a pinker and darker skin tone than
  the face, shaded, with a noise texture; it enters from a side of the frame, slides over
  the lower half of the face (covering about 25-35 % of the landmark hull at its peak) and
  leaves again, once or twice per clip;
- ``microphone``: a dark handle and a larger ball head with a lighter mesh of dots, held
  at the mouth at a swaying angle; lowered out of the frame for a part of the clip;
- ``glasses``: two lens outlines around the eyes, a bridge and temple arms, dark strokes,
  worn through the middle 40 % of the clip;
- ``hair``: a thin dark-brown strand (a cubic Bezier) falling from the forehead across one
  eye to the cheek, swaying; tucked away for a part of the clip.

Every occluder is drawn hard-edged (no anti-aliasing) from one mask: exactly the mask's
pixels change in the frame, so ``out_masks/NNNNNN.png`` (255 = occluder) is the exact truth
before H.264 (crf 12) softens the edges a little.

Usage: python -m benchmarks.occluded_clip --workspace WS --video V --out-video O --out-masks DIR [--frames N]
"""
from __future__ import annotations

import argparse
import json
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from pipeline.core.errors import UserError
from pipeline.core.video import FrameReader, FrameWriter, probe
from pipeline.workspace.store import Workspace

KINDS = ("hand", "microphone", "glasses", "hair")
#: Fixed-point bits for OpenCV drawing (sub-pixel geometry, still hard-edged LINE_8 output).
SHIFT = 4
#: Glasses and hair stroke widths per pixel of inter-ocular distance (4 and 3 px at 110 px).
GLASSES_WIDTH, HAIR_WIDTH = 0.037, 0.027
#: Share of the landmark hull the hand covers at its peak (a seeded draw in this range).
HAND_PEAK_COVER = (0.25, 0.35)
#: The glasses are worn over this part of the clip.
GLASSES_SPAN = (0.3, 0.7)

Colour = Callable[[np.ndarray, np.ndarray], np.ndarray]


# ----------------------------------------------------------------------------- face geometry

@dataclass
class FaceFrame:
    """A face in one frame: landmarks and a face-aligned coordinate system in inter-ocular units."""

    landmarks: np.ndarray  # (68, 2) frame pixels
    centre: np.ndarray     # midpoint of the eye centres
    iod: float             # inter-ocular distance, pixels
    ex: np.ndarray         # unit vector along the eye line (image right for an upright face)
    ey: np.ndarray         # unit vector down the face

    @classmethod
    def from_landmarks(cls, lm: np.ndarray) -> FaceFrame:
        left, right = lm[36:42].mean(0), lm[42:48].mean(0)
        d = right - left
        iod = float(np.hypot(*d))
        ex = d / iod
        return cls(lm, (left + right) / 2, iod, ex, np.array([-ex[1], ex[0]]))

    def px(self, q, origin: np.ndarray | None = None) -> np.ndarray:
        """Face-local points (x right, y down, in iod) to frame pixels, from ``origin`` (default: eyes' midpoint)."""
        q = np.asarray(q, dtype=np.float64)
        base = self.centre if origin is None else origin
        return base + self.iod * (q[..., :1] * self.ex + q[..., 1:2] * self.ey)

    def hull_mask(self, shape: tuple[int, int]) -> np.ndarray:
        out = np.zeros(shape, np.uint8)
        hull = cv2.convexHull(np.round(self.landmarks * (1 << SHIFT)).astype(np.int32))
        cv2.fillPoly(out, [hull], 1, cv2.LINE_8, SHIFT)
        return out


def _face_track(clean_workspace: Path, video: Path, n: int) -> tuple[list[FaceFrame], int]:
    """Per-frame landmarks of the largest face: gaps interpolated, ends held, lightly smoothed in time."""
    with Workspace(clean_workspace) as ws:
        rows = ws.faces("dst", kept=True)
    if any(r.source == video.name for r in rows):
        rows = [r for r in rows if r.source == video.name]
    first: dict[int, np.ndarray] = {}
    for r in rows:   # sorted by frame, then face (largest first)
        if r.frame_index < n and r.frame_index not in first:
            first[r.frame_index] = np.asarray(r.landmarks, np.float64)
    if not first:
        raise UserError(f"{clean_workspace} holds no face in the first {n} frames of {video.name}: "
                        f"run python main.py extract --input {video} --workspace {clean_workspace}")
    known = np.array(sorted(first))
    stack = np.stack([first[i] for i in known]).reshape(len(known), -1)
    frames = np.arange(n)
    track = np.stack([np.interp(frames, known, stack[:, j]) for j in range(stack.shape[1])], axis=1)
    # sigma 1 frame: takes the landmarker's jitter off the occluders, lags no real motion visibly
    kernel = np.exp(-0.5 * np.arange(-3, 4) ** 2)
    kernel /= kernel.sum()
    padded = np.pad(track, ((3, 3), (0, 0)), mode="edge")
    track = np.stack([np.convolve(padded[:, j], kernel, mode="valid") for j in range(track.shape[1])], axis=1)
    return [FaceFrame.from_landmarks(t.reshape(68, 2)) for t in track], len(known)


# ----------------------------------------------------------------------------- drawing helpers

def _fixed(pts: np.ndarray) -> np.ndarray:
    return np.round(np.asarray(pts) * (1 << SHIFT)).astype(np.int32).reshape(-1, 1, 2)


def _fill(shape: tuple[int, int], *polys: np.ndarray) -> np.ndarray:
    """A 0/1 mask of filled polygons (frame pixels, float)."""
    out = np.zeros(shape, np.uint8)
    for p in polys:
        cv2.fillPoly(out, [_fixed(p)], 1, cv2.LINE_8, SHIFT)
    return out


def _stroke(shape: tuple[int, int], width: int, *lines: tuple[np.ndarray, bool]) -> np.ndarray:
    """A 0/1 mask of polylines ``(points, closed)`` drawn ``width`` pixels thick."""
    out = np.zeros(shape, np.uint8)
    for pts, closed in lines:
        cv2.polylines(out, [_fixed(pts)], closed, 1, width, cv2.LINE_8, SHIFT)
    return out


def _ellipse(ax: float, ay: float, n: int = 72) -> np.ndarray:
    t = np.linspace(0, 2 * np.pi, n, endpoint=False)
    return np.stack([ax * np.cos(t), ay * np.sin(t)], axis=1)


def _capsule(a, b, r: float, n: int = 10) -> np.ndarray:
    """Outline of a thick rounded segment from ``a`` to ``b`` (any units)."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    ang = math.atan2(b[1] - a[1], b[0] - a[0])
    t1 = ang + np.linspace(np.pi / 2, 3 * np.pi / 2, n)
    t2 = ang + np.linspace(-np.pi / 2, np.pi / 2, n)
    return np.concatenate([a + r * np.stack([np.cos(t1), np.sin(t1)], 1),
                           b + r * np.stack([np.cos(t2), np.sin(t2)], 1)])


def _rot(q: np.ndarray, deg: float) -> np.ndarray:
    c, s = math.cos(math.radians(deg)), math.sin(math.radians(deg))
    return q @ np.array([[c, s], [-s, c]])


def _bezier(p: np.ndarray, n: int = 48) -> np.ndarray:
    t = np.linspace(0, 1, n)[:, None]
    return (1 - t) ** 3 * p[0] + 3 * (1 - t) ** 2 * t * p[1] + 3 * (1 - t) * t ** 2 * p[2] + t ** 3 * p[3]


def _paint(frame: np.ndarray, mask: np.ndarray, part: np.ndarray, colour: Colour) -> None:
    """Set the pixels of ``part`` to ``colour(xs, ys)`` (RGB floats) and add them to ``mask``."""
    ys, xs = np.nonzero(part)
    if len(xs):
        frame[ys, xs] = np.clip(colour(xs.astype(np.float64), ys.astype(np.float64)), 0, 255).astype(np.uint8)
        mask[ys, xs] = 255


def _wobble(rng: np.random.Generator, fps: float, periods: tuple[float, float] = (1.8, 5.0),
            terms: int = 3) -> Callable[[int], float]:
    """A smooth seeded motion in [-1, 1]: a sum of slow sines (periods in seconds)."""
    freq = 1.0 / (rng.uniform(*periods, terms) * fps)
    phase = rng.uniform(0, 2 * np.pi, terms)
    amp = rng.uniform(0.5, 1.0, terms)
    amp /= amp.sum()
    return lambda i: float(np.sum(amp * np.sin(2 * np.pi * freq * i + phase)))


def _smoothstep(x: float) -> float:
    x = min(max(x, 0.0), 1.0)
    return x * x * (3 - 2 * x)


def _local(face: FaceFrame, origin: np.ndarray, deg: float, xs: np.ndarray, ys: np.ndarray):
    """Pixel coordinates to an occluder's own axes (iod units), rotated ``deg`` from the face axes."""
    c, s = math.cos(math.radians(deg)), math.sin(math.radians(deg))
    ux, uy = c * face.ex + s * face.ey, -s * face.ex + c * face.ey
    dx, dy = xs - origin[0], ys - origin[1]
    return (dx * ux[0] + dy * ux[1]) / face.iod, (dx * uy[0] + dy * uy[1]) / face.iod


class _Noise:
    """A tileable smooth noise texture sampled in an occluder's own coordinates (moves with it)."""

    def __init__(self, rng: np.random.Generator, size: int = 128, blur: float = 3.0) -> None:
        pad = int(4 * blur)
        raw = np.pad(rng.standard_normal((size, size)).astype(np.float32), pad, mode="wrap")
        tile = cv2.GaussianBlur(raw, (0, 0), blur)[pad:-pad, pad:-pad]   # blurred across the seams: tiles
        fine = rng.standard_normal((size, size)).astype(np.float32)
        self.tile = tile / tile.std() + 0.35 * fine
        self.size = size

    def __call__(self, u: np.ndarray, v: np.ndarray, per_iod: float) -> np.ndarray:
        i = np.floor(v * per_iod).astype(np.int64) % self.size
        j = np.floor(u * per_iod).astype(np.int64) % self.size
        return self.tile[i, j]


# ----------------------------------------------------------------------------- occluders

class Occluders:
    """The seeded schedule and drawing of the four occluder kinds for a clip of ``n`` frames."""

    def __init__(self, faces: list[FaceFrame], size: tuple[int, int], fps: float, seed: int,
                 face_rgb: np.ndarray) -> None:
        self.faces, self.shape, self.fps = faces, (size[1], size[0]), fps
        n = self.n = len(faces)
        rng = np.random.default_rng(seed)
        iod = float(np.median([f.iod for f in faces]))
        self.glasses_px = max(2, round(GLASSES_WIDTH * iod))
        self.hair_px = max(2, round(HAIR_WIDTH * iod))
        # a pinker, darker skin than the face: a hand that a colour threshold cannot take for the face
        self.hand_rgb = np.clip(face_rgb * np.array([1.0, 0.84, 0.88]) * 0.9, 30, 235)
        self.noise = {k: _Noise(rng) for k in KINDS}
        self.sway = {k: [_wobble(rng, fps) for _ in range(4)] for k in KINDS}
        # hand: one pass per ~100 frames, each in its own window, from alternating sides
        passes = max(1, round(n / 100))
        window = n / passes
        span = max(8, min(int(window * 0.8), round(0.23 * n) if passes > 1 else round(0.6 * n)))
        first_side = 1 if rng.random() < 0.5 else -1
        self.hand_passes: list[tuple[int, int, int, float]] = []  # start, length, side, peak cover
        for k in range(passes):
            start = int(k * window + rng.uniform(0, max(0.0, window - span)))
            side = first_side if k % 2 == 0 else -first_side
            self.hand_passes.append((start, span, side, float(rng.uniform(*HAND_PEAK_COVER))))
        self.hand_depth = [self._calibrate_hand(k) for k in range(passes)]
        # microphone lowered out for ~20 % of the clip, hair tucked away for ~15 %
        self.mic_away = self._gap(rng, 0.2)
        self.hair_away = self._gap(rng, 0.15)
        self.hair_side = 1 if rng.random() < 0.5 else -1
        self.mic_side = -first_side
        self.glasses = (int(GLASSES_SPAN[0] * n), max(int(GLASSES_SPAN[1] * n), int(GLASSES_SPAN[0] * n) + 1))

    def _gap(self, rng: np.random.Generator, share: float) -> tuple[int, int]:
        length = int(round(share * self.n))
        start = int(rng.uniform(0.05, 0.95 - share) * self.n)
        return start, start + length

    def draw(self, i: int, frame: np.ndarray) -> tuple[np.ndarray, dict[str, bool]]:
        """Draw every occluder of frame ``i`` into ``frame`` (in place); the union mask and who is present."""
        mask = np.zeros(self.shape, np.uint8)
        face = self.faces[i]
        present = {}
        for kind, fn in (("hair", self._hair), ("glasses", self._glasses),
                         ("microphone", self._microphone), ("hand", self._hand)):
            part = np.zeros(self.shape, np.uint8)
            fn(i, face, frame, part)
            mask |= part
            present[kind] = bool(part.any())
        return mask, present

    # -- hair
    def _hair(self, i: int, face: FaceFrame, frame: np.ndarray, out: np.ndarray) -> None:
        a, b = self.hair_away
        if a <= i < b:
            return
        s = self.hair_side
        w = [f(i) for f in self.sway["hair"]]
        brow = face.landmarks[[24, 19][s < 0]]
        eye = face.landmarks[42:48].mean(0) if s > 0 else face.landmarks[36:42].mean(0)
        ctrl = np.stack([face.px([-0.15 * s + 0.05 * w[0], -1.05], brow),
                         face.px([0.35 * s + 0.18 * w[1], -0.35], brow),
                         face.px([-0.35 * s + 0.25 * w[2], 0.55], eye),
                         face.px([0.25 * s + 0.3 * w[3], 1.45 + 0.1 * w[0]], eye)])
        pts = _bezier(ctrl)
        part = _stroke(self.shape, self.hair_px, (pts, False))
        noise, base = self.noise["hair"], np.array([72.0, 46.0, 30.0])

        def colour(xs, ys):
            u, v = _local(face, face.centre, 0, xs, ys)
            return base[None] * (1 + 0.12 * noise(u, v, 40)[:, None])
        _paint(frame, out, part, colour)

    # -- glasses
    def _glasses(self, i: int, face: FaceFrame, frame: np.ndarray, out: np.ndarray) -> None:
        a, b = self.glasses
        if not a <= i < b:
            return
        lm = face.landmarks
        lenses, inner, outer = [], [], []
        for eye, sign in ((lm[36:42], -1), (lm[42:48], 1)):
            c = eye.mean(0) + 0.05 * face.iod * face.ey
            ring = face.px(_ellipse(0.44, 0.31), c)
            lenses.append((ring, True))
            inner.append(face.px([-0.44 * sign, -0.05], c))
            outer.append(face.px([0.44 * sign, -0.08], c))
        nose = lm[27] + 0.02 * face.iod * face.ey
        bridge = _bezier(np.stack([inner[0], (inner[0] + nose) / 2 - 0.08 * face.iod * face.ey,
                                   (inner[1] + nose) / 2 - 0.08 * face.iod * face.ey, inner[1]]), 16)
        arms = []
        for k, (ear, sign) in enumerate(((lm[0], -1), (lm[16], 1))):
            tip = ear - 0.1 * face.iod * face.ey + 0.08 * sign * face.iod * face.ex
            arms.append((np.stack([outer[k], tip]), False))
        part = _stroke(self.shape, self.glasses_px, *lenses, (bridge, False), *arms)
        base = np.array([28.0, 24.0, 26.0])
        _paint(frame, out, part, lambda xs, ys: np.broadcast_to(base, (len(xs), 3)))

    # -- microphone
    def _microphone(self, i: int, face: FaceFrame, frame: np.ndarray, out: np.ndarray) -> None:
        w = [f(i) for f in self.sway["microphone"]]
        a, b = self.mic_away
        ramp = max(4, round(0.05 * self.n))
        down = _smoothstep((i - a + ramp) / ramp) * (1 - _smoothstep((i - b + 1) / ramp))
        if down >= 1:
            return
        mouth = face.landmarks[48:68].mean(0)
        side = self.mic_side
        drop = down * ((self.shape[0] - mouth[1]) / face.iod + 1.5)
        head = face.px([0.3 * side + 0.15 * w[0], 0.72 + 0.12 * w[1] + drop], mouth)
        tilt = side * (22 + 9 * w[2])    # handle angle from the face's down axis, degrees
        r = 0.4
        axis = _rot(np.array([[0.0, 1.0]]), tilt)[0]    # face-local direction from the head down the handle
        collar_a, collar_b = axis * (r * 0.8), axis * (r * 1.3)
        hand_end = axis * 6.0
        to_px = lambda q: face.px(np.asarray(q), head)  # noqa: E731
        handle = _fill(self.shape, to_px(_capsule(collar_b, hand_end, 0.15)))
        collar = _fill(self.shape, to_px(_capsule(collar_a, collar_b, 0.2)))
        ball = _fill(self.shape, to_px(_ellipse(r, r)))
        noise = self.noise["microphone"]

        def handle_colour(xs, ys):
            u, v = _local(face, head, tilt, xs, ys)     # u across the handle, v along it
            shade = 0.75 + 0.45 * np.clip(1 - ((u + 0.05) / 0.15) ** 2, 0, 1)
            g = 34 * shade * (1 + 0.05 * noise(u, v, 90))
            return np.stack([g, g, g * 1.05], 1)

        def collar_colour(xs, ys):
            u, _ = _local(face, head, tilt, xs, ys)
            g = 70 + 50 * np.clip(1 - (u / 0.2) ** 2, 0, 1)
            return np.stack([g, g, g], 1)

        def ball_colour(xs, ys):
            u, v = _local(face, head, tilt, xs, ys)
            pitch, dot = 0.075, 0.022
            du = (u + 1) % pitch - pitch / 2
            dv = (v + 1) % pitch - pitch / 2
            grid = (du * du + dv * dv) < dot * dot
            light = np.clip(1.15 - 0.9 * ((u + 0.12) ** 2 + (v + 0.15) ** 2) / (r * r), 0.35, 1.2)
            g = np.where(grid, 125.0, 32.0) * light * (1 + 0.05 * noise(u, v, 60))
            return np.stack([g, g, g * 1.04], 1)
        _paint(frame, out, handle, handle_colour)
        _paint(frame, out, collar, collar_colour)
        _paint(frame, out, ball, ball_colour)

    # -- hand
    def _hand_parts(self, i: int, face: FaceFrame, k: int, depth: float, bump: float | None = None):
        """Hand geometry of pass ``k`` in frame ``i``: palm centre, axis angle, outlines and fingers (pixels)."""
        start, span, side, _ = self.hand_passes[k]
        u = (i - start) / max(span - 1, 1)
        bump = math.sin(math.pi * min(max(u, 0.0), 1.0)) ** 0.8 if bump is None else bump
        w = [f(i) for f in self.sway["hand"]]
        # out far enough that the fingertips are past the frame edge (along the face's x axis)
        edge = face.centre[0] if side < 0 else self.shape[1] - face.centre[0]
        off = -(edge / face.iod + 2.3)
        x = off + (depth - off) * bump
        y = 1.45 - 0.3 * u + 0.08 * w[0]              # slides up from the jaw towards the cheek
        palm = face.px([-side * x, y])
        angle = side * (12 + 6 * w[1])                 # fingers tilted up a little
        point = -side                                  # +1: fingers point along the face's x axis
        to_px = lambda q: face.px(_rot(np.asarray(q, np.float64) * [point, 1], angle), palm)  # noqa: E731
        outlines = [to_px(_capsule([-0.5, 0.05], [-7.0, 0.45], 0.42)), to_px(_ellipse(0.72, 0.6))]
        curl = 0.1 * w[2]
        shapes = [(np.array([0.0, -0.5]), -55 + 8 * w[3], 0.75, 0.15)]   # thumb, then index to little finger
        for j, (base_y, spread, length) in enumerate(((-0.42, -10, 1.0), (-0.15, -3, 1.12),
                                                      (0.12, 4, 1.05), (0.38, 11, 0.85))):
            shapes.append((np.array([0.45, base_y]), spread, length * (1 - curl * (j - 1.5)), 0.125 if j < 3 else 0.11))
        fingers = []
        for base, deg, length, r in shapes:
            tip = base + length * np.array([math.cos(math.radians(deg)), math.sin(math.radians(deg))])
            fingers.append((to_px(_capsule(base, tip, r)), to_px(base[None])[0], to_px(tip[None])[0], r))
        return palm, angle, outlines, fingers

    def _calibrate_hand(self, k: int) -> float:
        """How deep (face x, iod) the palm goes at pass ``k``'s peak to cover its target share of the hull."""
        start, span, _, target = self.hand_passes[k]
        i = min(self.n - 1, start + span // 2)
        face = self.faces[i]
        hull = face.hull_mask(self.shape)
        total = max(int(hull.sum()), 1)
        best, best_err = -1.6, 1e9
        for depth in np.linspace(-3.0, 0.6, 37):
            _, _, outlines, fingers = self._hand_parts(i, face, k, float(depth), bump=1.0)
            part = _fill(self.shape, *outlines, *[f[0] for f in fingers])
            err = abs(float((part & hull).sum()) / total - target)
            if err < best_err:
                best, best_err = float(depth), err
        return best

    def _hand(self, i: int, face: FaceFrame, frame: np.ndarray, out: np.ndarray) -> None:
        for k, (start, span, _, _) in enumerate(self.hand_passes):
            if not start <= i < start + span:
                continue
            palm, angle, outlines, fingers = self._hand_parts(i, face, k, self.hand_depth[k])
            noise, base = self.noise["hand"], self.hand_rgb

            def skin(xs, ys, lift=0.0, palm=palm, angle=angle, noise=noise, base=base):
                u, v = _local(face, palm, angle, xs, ys)   # v: down the hand, lit from above
                light = 1.04 + lift - 0.16 * np.clip(v, -1.5, 1.5) / 1.5
                return base[None] * (light * (1 + 0.03 * noise(u, v, 110)))[:, None]

            _paint(frame, out, _fill(self.shape, outlines[0]), lambda xs, ys: skin(xs, ys, -0.08))
            _paint(frame, out, _fill(self.shape, outlines[1]), skin)
            for poly, a, b, r in fingers:
                def finger(xs, ys, a=a, b=b, r=r):
                    ab = b - a
                    t = np.clip(((xs - a[0]) * ab[0] + (ys - a[1]) * ab[1]) / max(float(ab @ ab), 1e-9), 0, 1)
                    d = np.hypot(xs - (a[0] + t * ab[0]), ys - (a[1] + t * ab[1])) / (r * face.iod)
                    return skin(xs, ys) * (0.78 + 0.26 * np.sqrt(np.clip(1 - d * d, 0, 1)))[:, None]
                _paint(frame, out, _fill(self.shape, poly), finger)


# ----------------------------------------------------------------------------- the clip

def build_occluded_clip(clean_workspace: Path, video: Path, out_video: Path, out_masks: Path,
                        frames: int | None = None, seed: int = 0) -> dict:
    """Write ``video`` with moving occluders over the face to ``out_video`` and their masks to ``out_masks``.

    ``clean_workspace`` is extracted from ``video``; its landmarks place the occluders. Masks are
    ``out_masks/NNNNNN.png`` (uint8, 255 = occluder, full frame); old ones there are removed.
    Returns frames, width, height, fps, ``occluded_share`` (mean over frames of the occluded share
    of the 68-landmark hull) and ``kinds`` (frames in which each occluder kind shows).
    """
    clean_workspace, video, out_video, out_masks = map(Path, (clean_workspace, video, out_video, out_masks))
    info = probe(video)
    n = info.frames if frames is None else min(int(frames), info.frames)
    if n <= 0:
        raise UserError(f"{video}: no frames to write")
    faces, _ = _face_track(clean_workspace, video, n)
    out_video.parent.mkdir(parents=True, exist_ok=True)
    out_masks.mkdir(parents=True, exist_ok=True)
    for old in out_masks.glob("[0-9][0-9][0-9][0-9][0-9][0-9].png"):
        old.unlink()
    shape = (info.height, info.width)
    occluders: Occluders | None = None
    shares: list[float] = []
    kinds = dict.fromkeys(KINDS, 0)
    writer = FrameWriter(out_video, info.width, info.height, info.fps, crf=12, preset="medium")
    written = 0
    try:
        for i, rgb in FrameReader(video, info.width, info.height):
            if i >= n:
                break
            hull = faces[i].hull_mask(shape)
            if occluders is None:
                face_rgb = rgb[hull > 0].reshape(-1, 3).mean(0) if hull.any() else np.array([200.0, 150.0, 130.0])
                occluders = Occluders(faces, (info.width, info.height), info.fps, seed, face_rgb)
            frame = rgb.copy()
            mask, present = occluders.draw(i, frame)
            writer.put(frame)
            if not cv2.imwrite(str(out_masks / f"{i:06d}.png"), mask):
                raise UserError(f"cannot write a mask to {out_masks}")
            shares.append(float(np.count_nonzero(mask[hull > 0])) / max(int(hull.sum()), 1))
            for kind, here in present.items():
                kinds[kind] += int(here)
            written += 1
    except BaseException:
        writer.abort()
        raise
    writer.close()
    return {"frames": written, "width": info.width, "height": info.height, "fps": info.fps,
            "occluded_share": round(float(np.mean(shares)) if shares else 0.0, 4), "kinds": kinds}


def occluder_presence(clean_workspace: Path, video: Path, frames: int | None = None,
                      seed: int = 0) -> list[dict[str, bool]]:
    """Which occluder kinds ``build_occluded_clip`` draws in each frame (the same schedule, nothing written)."""
    clean_workspace, video = Path(clean_workspace), Path(video)
    info = probe(video)
    n = info.frames if frames is None else min(int(frames), info.frames)
    faces, _ = _face_track(clean_workspace, video, n)
    occluders = Occluders(faces, (info.width, info.height), info.fps, seed, np.array([200.0, 150.0, 130.0]))
    blank = np.zeros((info.height, info.width, 3), np.uint8)
    return [occluders.draw(i, blank.copy())[1] for i in range(n)]


def main(argv: list[str] | None = None) -> None:
    """Command line: build the clip and print the summary as JSON."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workspace", type=Path, required=True, help="workspace extracted from --video")
    ap.add_argument("--video", type=Path, required=True, help="the clean clip")
    ap.add_argument("--out-video", type=Path, required=True)
    ap.add_argument("--out-masks", type=Path, required=True, help="folder for NNNNNN.png occluder masks")
    ap.add_argument("--frames", type=int, default=None, help="first N frames only (default: all)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    result = build_occluded_clip(args.workspace, args.video, args.out_video, args.out_masks, args.frames, args.seed)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
