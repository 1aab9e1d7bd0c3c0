"""A hard test clip made from the shared footage, with ground truth, and a detector's coverage of it.

The shared clips show one large frontal face. Real footage has small, tilted, partly hidden
faces, several people and cuts. ``make_hard_clip`` pastes faces cut from frames of both
shared videos (consecutive frames, so they talk) and from photos onto a faceless
background (a heavily blurred, darkened, shifted frame under a gradient and noise): each
face moves smoothly, is 40-80 px (side of the square holding its 68 landmarks, roughly a
dlib face box: brows to chin), rolls up to +-60 degrees, and is sometimes partly covered
by a microphone or a hand (up to 40 % of its box). There are two faces in some frames, a
cut to an empty background with no face, and a direct cut between two scenes. The truth
(``<out>.truth.json``) holds per frame every face's box, size, roll, covered fraction,
source frame and its 68 landmarks, carried from the landmarks dlib put on the source frame
through the same transform that pasted the face.

``measure_coverage`` runs a registered detector (``detect(frame, thorough=True)``) on every
frame and matches its boxes to the truth greedily by IoU (>= 0.3 by default): recall by
size, roll and cover, false detections, and time per frame.

Usage: python -m benchmarks.hard_clip [--detectors dlib dlib-cnn] [--frames 150] [--keep DIR] [--json out.json]
"""
from __future__ import annotations

import argparse
import json
import math
import tempfile
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from pipeline.core.video import FrameReader, FrameWriter, probe

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"

#: Name of a face source -> its file under ../shared/data.
SOURCES = {
    "KatieHill": "videos/WDA_KatieHill_000.mp4",
    "AlexandriaOcasioCortez": "videos/WDA_AlexandriaOcasioCortez_000.mp4",
    "obama": "photos/obama.jpg",
    "biden": "photos/biden.jpg",
}
FPS = 25
#: Photos are shrunk to this longest side before use.
PHOTO_SIDE = 800
MIN_SIZE, MAX_SIZE = 40.0, 80.0
MAX_ANGLE = 60.0
#: Largest share of a face's box an occluder may cover.
MAX_COVER = 0.4
#: A face counts as occluded in the statistics when at least this share of its box is covered.
OCCLUDED_FROM = 0.05
IOU_THRESHOLD = 0.3
SIZE_BINS = ((40.0, 55.0), (55.0, 70.0), (70.0, 80.0))
ANGLE_BINS = ((0.0, 15.0), (15.0, 35.0), (35.0, 60.0))


# ----------------------------------------------------------------------------- the plan


@dataclass(frozen=True)
class Pose:
    """Where one face is in one output frame."""

    cx: float                     # centre of the face square, frame pixels
    cy: float
    size: float                   # wanted side of the face square (px); kept within 40-80
    angle: float                  # roll, degrees, positive = turned clockwise on screen
    occluder: str | None = None   # None, "mic" or "hand"
    cover: float = 0.0            # how far the occluder reaches into the face, 0-1 (capped at MAX_COVER of the box)
    occluder_side: float = 0.3    # horizontal offset of the occluder, in face sizes


@dataclass
class Track:
    """One pasted face over consecutive output frames."""

    source: str                   # a key of SOURCES
    source_start: int             # source video frame shown at the track's first frame (photos: 0)
    first: int                    # first output frame
    poses: list[Pose]             # one per output frame from ``first``

    @property
    def last(self) -> int:
        return self.first + len(self.poses) - 1


@dataclass
class Scene:
    """A shot: one background and the faces in it."""

    first: int
    last: int
    background: tuple[str, int, int]          # (source video, frame, seed) the background is made from
    tracks: list[Track] = field(default_factory=list)


def _smooth(rng: np.random.Generator, n: int, low: float, high: float, periods: float = 1.0) -> np.ndarray:
    """n smooth values in [low, high]: two sines of random phase."""
    t = np.arange(n) / max(n - 1, 1)
    p1, p2 = rng.uniform(0, 2 * np.pi, 2)
    f2 = rng.uniform(1.5, 2.5)
    wave = 0.7 * np.sin(2 * np.pi * periods * t + p1) + 0.3 * np.sin(2 * np.pi * periods * f2 * t + p2)
    return low + (high - low) * (wave + 1.0) / 2.0


def _track(rng: np.random.Generator, source: str, start: int, first: int, n: int, width: int, height: int,
           band: tuple[float, float], occluder: str | None) -> Track:
    margin = 0.75 * MAX_SIZE                       # a rotated 80 px face's landmark box stays inside
    direction = rng.choice([-1.0, 1.0])
    x0, x1 = (margin, width - margin) if direction > 0 else (width - margin, margin)
    span = rng.uniform(0.55, 0.9)
    xs = np.linspace(x0, x0 + (x1 - x0) * span, n) + _smooth(rng, n, -0.04 * width, 0.04 * width)
    ys = _smooth(rng, n, band[0] * height, band[1] * height, periods=rng.uniform(0.6, 1.2))
    xs = np.clip(xs, margin, width - margin)
    ys = np.clip(ys, margin, height - margin)
    sizes = _smooth(rng, n, MIN_SIZE + 2, MAX_SIZE - 2, periods=rng.uniform(0.5, 1.0))
    amp = rng.uniform(45.0, MAX_ANGLE)
    angles = np.clip(_smooth(rng, n, -amp, amp, periods=rng.uniform(0.8, 1.5)), -MAX_ANGLE, MAX_ANGLE)
    covers = np.zeros(n)
    if occluder is not None and n >= 4:           # the occluder rises into the middle stretch and leaves again
        a, b = int(n * 0.3), max(int(n * 0.75), int(n * 0.3) + 2)
        covers[a:b] = np.sin(np.linspace(0, np.pi, b - a)) * rng.uniform(0.8, 1.0)
    side = float(rng.uniform(-0.35, 0.35))
    poses = [Pose(float(x), float(y), float(s), float(a), occluder if c > 0.02 else None, float(c), side)
             for x, y, s, a, c in zip(xs, ys, sizes, angles, covers)]
    return Track(source, start, first, poses)


def plan_clip(frames: int = 150, width: int = 960, height: int = 540, seed: int = 0) -> list[Scene]:
    """The scenes of the hard clip: deterministic for a seed.

    Scene 0 (first 35 %): a Katie Hill face all along, an Ocasio-Cortez face joins for its
    second half. Then a cut to an empty background (10 %, no face). Scene 1 (30 %): an
    Ocasio-Cortez face with a microphone rising in front of it, a photo face (obama) for
    its middle. Scene 2 (rest, a direct cut): a Katie Hill face with a hand in front of it
    and a second photo face (biden).
    """
    if frames < 6:
        raise ValueError("the hard clip needs at least 6 frames")
    rng = np.random.default_rng(seed)
    c1 = max(2, round(frames * 0.35))
    c2 = max(c1 + 1, round(frames * 0.45))
    c3 = max(c2 + 2, round(frames * 0.75))
    c3 = min(c3, frames - 2)
    videos = ["KatieHill", "AlexandriaOcasioCortez"]
    scenes = [Scene(0, c1 - 1, (videos[int(rng.integers(2))], int(rng.integers(200)), int(rng.integers(1 << 30)))),
              Scene(c1, c2 - 1, (videos[int(rng.integers(2))], int(rng.integers(200)), int(rng.integers(1 << 30)))),
              Scene(c2, c3 - 1, (videos[int(rng.integers(2))], int(rng.integers(200)), int(rng.integers(1 << 30)))),
              Scene(c3, frames - 1, (videos[int(rng.integers(2))], int(rng.integers(200)), int(rng.integers(1 << 30))))]
    upper, lower = (0.2, 0.42), (0.6, 0.82)
    s0, _, s1, s2 = scenes

    def start() -> int:                            # early frames: less of each video to decode
        return int(rng.integers(0, 60))

    n0 = s0.last - s0.first + 1
    s0.tracks.append(_track(rng, "KatieHill", start(), s0.first, n0, width, height, upper, None))
    half = n0 // 2
    s0.tracks.append(_track(rng, "AlexandriaOcasioCortez", start(), s0.first + half, n0 - half, width, height,
                            lower, None))
    n1 = s1.last - s1.first + 1
    s1.tracks.append(_track(rng, "AlexandriaOcasioCortez", start(), s1.first, n1, width, height, lower, "mic"))
    a, b = s1.first + n1 // 4, s1.first + max(n1 * 3 // 4, n1 // 4 + 1)
    s1.tracks.append(_track(rng, "obama", 0, a, b - a, width, height, upper, None))
    n2 = s2.last - s2.first + 1
    s2.tracks.append(_track(rng, "KatieHill", start(), s2.first, n2, width, height, upper, "hand"))
    s2.tracks.append(_track(rng, "biden", 0, s2.first, max(1, n2 * 2 // 3), width, height, lower, None))
    return scenes


# ----------------------------------------------------------------------------- source faces


def _roll(landmarks: np.ndarray) -> float:
    """Eye line angle, degrees (image axes, y down: positive = face turned clockwise on screen)."""
    left, right = landmarks[36:42].mean(0), landmarks[42:48].mean(0)
    return math.degrees(math.atan2(right[1] - left[1], right[0] - left[0]))


def _rot(deg: float) -> np.ndarray:
    r = math.radians(deg)
    return np.array([[math.cos(r), -math.sin(r)], [math.sin(r), math.cos(r)]])


def face_square(landmarks: np.ndarray) -> tuple[np.ndarray, float, float]:
    """(centre, side, roll) of the square that holds the 68 landmarks in the face's own upright frame."""
    roll = _roll(landmarks)
    mean = landmarks.mean(0)
    upright = (landmarks - mean) @ _rot(-roll).T
    lo, hi = upright.min(0), upright.max(0)
    centre = mean + ((lo + hi) / 2) @ _rot(roll).T
    return centre, float((hi - lo).max()), roll


class FaceSources:
    """Frames of the shared videos and photos, with dlib's 68 landmarks on each (found once)."""

    def __init__(self, data: Path = DATA) -> None:
        from pipeline.faces.analyser import FaceAnalyser
        self.data = data
        self.analyser = FaceAnalyser("dlib", "dlib", "auto", 80)
        self._frames: dict[tuple[str, int], np.ndarray] = {}
        self._landmarks: dict[tuple[str, int], np.ndarray] = {}
        self._lengths: dict[str, int] = {}
        self._median: dict[str, float] = {}

    def is_video(self, name: str) -> bool:
        return SOURCES[name].startswith("videos/")

    def length(self, name: str) -> int:
        if name not in self._lengths:
            self._lengths[name] = probe(self.data / SOURCES[name]).frames if self.is_video(name) else 1
        return self._lengths[name]

    def index(self, name: str, start: int, k: int) -> int:
        """Source frame for the k-th frame of a track: consecutive, bouncing back at the clip's ends."""
        n = self.length(name)
        if n <= 1:
            return 0
        i = (start + k) % (2 * n - 2)
        return i if i < n else 2 * n - 2 - i

    def load(self, needed: Iterable[tuple[str, int]]) -> None:
        """Decode the needed frames (each video once) and put landmarks on them."""
        by_source: dict[str, set[int]] = {}
        for name, i in needed:
            if (name, i) not in self._frames:
                by_source.setdefault(name, set()).add(i)
        for name, wanted in by_source.items():
            path = self.data / SOURCES[name]
            if self.is_video(name):
                info = probe(path)
                for i, frame in FrameReader(path, info.width, info.height):
                    if i in wanted:
                        self._frames[(name, i)] = frame.copy()
                    if i >= max(wanted):
                        break
            else:
                bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
                if bgr is None:
                    raise FileNotFoundError(f"cannot read {path}")
                shrink = min(1.0, PHOTO_SIDE / max(bgr.shape[:2]))     # faces of ~200 px are plenty
                if shrink < 1.0:
                    bgr = cv2.resize(bgr, None, fx=shrink, fy=shrink, interpolation=cv2.INTER_AREA)
                self._frames[(name, 0)] = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
            for i in sorted(wanted):
                if (name, i) not in self._frames:
                    raise ValueError(f"{path} has no frame {i}")
                found = self.analyser(self._frames[(name, i)])
                if not found:
                    raise ValueError(f"no face found in frame {i} of {path}")
                self._landmarks[(name, i)] = found[0].landmarks.astype(np.float64)

    def get(self, name: str, i: int) -> tuple[np.ndarray, np.ndarray]:
        return self._frames[(name, i)], self._landmarks[(name, i)]

    def median_size(self, name: str) -> float:
        """Typical face square side of a source (talking changes it a little from frame to frame)."""
        if name not in self._median:
            sizes = [face_square(lm)[1] for (n, _), lm in self._landmarks.items() if n == name]
            self._median[name] = float(np.median(sizes))
        return self._median[name]


# ----------------------------------------------------------------------------- drawing


def make_background(sources: FaceSources, spec: tuple[str, int, int], width: int, height: int) -> np.ndarray:
    """A faceless backdrop a little larger than the frame (it pans): a blurred, darkened, mirrored and
    shifted frame of a shared clip under a colour gradient, low-frequency shading, some blurred
    shapes (clutter) and fine noise. float32 RGB, 0-255."""
    name, index, seed = spec
    rng = np.random.default_rng(seed)
    big_w, big_h = int(width * 1.15) + 2, int(height * 1.15) + 2
    frame, _ = sources.get(name, index)
    small = np.asarray(cv2.resize(frame[:, ::-1], (big_w, big_h), interpolation=cv2.INTER_AREA), np.float32)
    small = np.roll(small, (int(rng.integers(big_h)), int(rng.integers(big_w))), axis=(0, 1))
    blurred = np.asarray(cv2.GaussianBlur(small, (0, 0), 0.05 * big_w), np.float32)  # a face becomes a blob
    img = blurred * np.float32(rng.uniform(0.35, 0.55))
    yy, xx = np.mgrid[0:big_h, 0:big_w].astype(np.float32)
    ang = rng.uniform(0, 2 * np.pi)
    ramp = (np.cos(ang) * xx / big_w + np.sin(ang) * yy / big_h)
    ramp = (ramp - ramp.min()) / max(float(ramp.max() - ramp.min()), 1e-6)
    c0, c1 = rng.uniform(10, 90, 3), rng.uniform(40, 140, 3)
    img = img + 0.6 * (c0 + ramp[..., None] * (c1 - c0)).astype(np.float32)
    shade = cv2.resize(rng.normal(0, 18, (6, 10)).astype(np.float32), (big_w, big_h), interpolation=cv2.INTER_CUBIC)
    img += shade[..., None]
    shapes = np.zeros_like(img)
    for _ in range(int(rng.integers(4, 9))):                 # door frames, shelves, windows
        x, y = int(rng.integers(big_w)), int(rng.integers(big_h))
        w, h = int(rng.integers(30, big_w // 3)), int(rng.integers(30, big_h // 2))
        cv2.rectangle(shapes, (x, y), (x + w, y + h), tuple(float(v) for v in rng.uniform(-40, 40, 3)), -1)
    img = img + np.asarray(cv2.GaussianBlur(shapes, (0, 0), 2.5), np.float32)
    img = img + np.asarray(rng.normal(0, 3.0, img.shape), np.float32)
    return np.clip(img, 0, 255).astype(np.float32)


def _transform(landmarks: np.ndarray, pose: Pose, median: float) -> tuple[float, float, np.ndarray]:
    """(scale, rotation in degrees, centre in source) taking the source face to ``pose``."""
    centre, side, roll = face_square(landmarks)
    size = float(np.clip(pose.size * side / median, MIN_SIZE, MAX_SIZE))
    return size / side, pose.angle - roll, centre


def _alpha(shape: tuple[int, int], landmarks: np.ndarray, origin: tuple[int, int]) -> np.ndarray:
    """Soft elliptical alpha (float32 0-1) over the face with forehead, some hair and the ears,
    for the image region of ``shape`` whose top-left corner is ``origin`` (x, y)."""
    centre, side, roll = face_square(landmarks)
    up = np.array([0.0, -0.18 * side]) @ _rot(roll).T - np.array(origin, np.float64)
    mask = np.zeros(shape, np.float32)
    cv2.ellipse(mask, (int(round(centre[0] + up[0])), int(round(centre[1] + up[1]))),
                (int(0.66 * side), int(0.9 * side)), roll, 0, 360, 1.0, -1)
    return cv2.GaussianBlur(mask, (0, 0), 0.07 * side)


def paste_face(canvas: np.ndarray, image: np.ndarray, landmarks: np.ndarray, pose: Pose,
               median: float) -> tuple[np.ndarray, np.ndarray]:
    """Paste the source face into ``canvas`` (float32, in place): (its alpha in the frame, its 68 landmarks)."""
    scale, rotation, centre = _transform(landmarks, pose, median)
    side = face_square(landmarks)[1]
    h, w = image.shape[:2]
    r = int(1.3 * side)                                       # the source region around the head
    x0, y0 = max(0, int(centre[0]) - r), max(0, int(centre[1]) - r)
    x1, y1 = min(w, int(centre[0]) + r), min(h, int(centre[1]) + r)
    roi = image[y0:y1, x0:x1].astype(np.float32)
    alpha = _alpha((y1 - y0, x1 - x0), landmarks, (x0, y0))
    small = cv2.resize(roi, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
    small_a = cv2.resize(alpha, (small.shape[1], small.shape[0]), interpolation=cv2.INTER_AREA)
    sx, sy = small.shape[1] / roi.shape[1], small.shape[0] / roi.shape[0]   # resize's exact factors
    # source pixel p -> small pixel q = (p - origin + 0.5) * s - 0.5 (pixel centres), per axis
    to_small = np.array([[sx, 0, (0.5 - x0) * sx - 0.5], [0, sy, (0.5 - y0) * sy - 0.5]])
    rot = _rot(rotation)
    centre_small = to_small[:, :2] @ centre + to_small[:, 2]
    to_frame = np.hstack([rot, (np.array([pose.cx, pose.cy]) - rot @ centre_small)[:, None]])
    fh, fw = canvas.shape[:2]
    warped = cv2.warpAffine(small, to_frame, (fw, fh), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    warped_a = cv2.warpAffine(small_a, to_frame, (fw, fh), flags=cv2.INTER_LINEAR,
                              borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    canvas *= 1.0 - warped_a[..., None]
    canvas += warped * warped_a[..., None]
    full = to_frame[:, :2] @ to_small[:, :2]
    offset = to_frame[:, :2] @ to_small[:, 2] + to_frame[:, 2]
    return warped_a, landmarks @ full.T + offset


def _occluder_mask(kind: str, pose: Pose, size: float, cover: float, fw: int, fh: int) -> np.ndarray:
    """Alpha of a microphone (rounded bar + ball head) or a hand (palm + fingers) rising from below."""
    mask = np.zeros((fh, fw), np.float32)
    s = size
    x = pose.cx + pose.occluder_side * s
    top = pose.cy + s * (0.75 - 1.0 * cover)                   # highest point of the occluder
    if kind == "mic":
        ball = (int(round(x)), int(round(top + 0.2 * s)))
        end = (int(round(x + 0.35 * s)), int(round(top + 1.8 * s)))
        cv2.line(mask, ball, end, 1.0, max(2, int(0.16 * s)), cv2.LINE_AA)
        cv2.circle(mask, ball, max(2, int(0.2 * s)), 1.0, -1, cv2.LINE_AA)
    else:
        palm = (int(round(x)), int(round(top + 0.65 * s)))
        cv2.ellipse(mask, palm, (int(0.3 * s), int(0.36 * s)), 0, 0, 360, 1.0, -1, cv2.LINE_AA)
        for i, dx in enumerate((-0.2, -0.07, 0.07, 0.2)):
            length = 0.3 if i in (0, 3) else 0.38
            c = (int(round(x + dx * s)), int(round(top + (0.4 - length / 2 + 0.05) * s)))
            cv2.ellipse(mask, c, (max(1, int(0.065 * s)), int(length * s)), 0, 0, 360, 1.0, -1, cv2.LINE_AA)
    return cv2.GaussianBlur(mask, (0, 0), 0.6)


def _box_cover(mask: np.ndarray, box: tuple[float, float, float, float]) -> float:
    x0, y0, x1, y1 = (int(round(v)) for v in box)
    region = mask[max(0, y0):max(0, y1), max(0, x0):max(0, x1)]
    return float((region > 0.5).mean()) if region.size else 0.0


def draw_occluder(canvas: np.ndarray, pose: Pose, size: float, box: tuple[float, float, float, float],
                  rng: np.random.Generator) -> np.ndarray:
    """Draw the pose's occluder (its reach lowered until it covers at most MAX_COVER of the box); its alpha."""
    assert pose.occluder is not None
    fh, fw = canvas.shape[:2]
    cover = pose.cover
    mask = _occluder_mask(pose.occluder, pose, size, cover, fw, fh)
    while cover > 0 and _box_cover(mask, box) > MAX_COVER:
        cover -= 0.03
        mask = _occluder_mask(pose.occluder, pose, size, cover, fw, fh)
    if pose.occluder == "mic":
        colour = np.array([48.0, 48.0, 52.0]) + rng.normal(0, 2, 3)
    else:
        colour = np.array([205.0, 150.0, 120.0]) + rng.normal(0, 4, 3)
    shade = 1.0 + 0.12 * np.tanh((np.arange(fw, dtype=np.float32) - pose.cx) / max(size, 1.0))
    paint = colour[None, None, :] * shade[None, :, None]
    canvas *= 1.0 - mask[..., None]
    canvas += paint * mask[..., None]
    return mask


def _box(points: np.ndarray) -> tuple[float, float, float, float]:
    lo, hi = points.min(0), points.max(0)
    return float(lo[0]), float(lo[1]), float(hi[0]), float(hi[1])


def render_clip(out: Path, scenes: list[Scene], width: int, height: int, seed: int = 0,
                sources: FaceSources | None = None) -> Path:
    """Write the scenes as an H.264 mp4 (25 fps) and the truth as ``<out>.truth.json``."""
    out = Path(out)
    sources = sources or FaceSources()
    frames = max(s.last for s in scenes) + 1
    needed = {(s.background[0], s.background[1]) for s in scenes}
    for scene in scenes:
        for tr in scene.tracks:
            needed.update((tr.source, sources.index(tr.source, tr.source_start, k)) for k in range(len(tr.poses)))
    sources.load(sorted(needed))
    out.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed + 7919)
    truth_frames: list[dict] = []
    writer = FrameWriter(out, width, height, FPS, crf=18, preset="medium")
    try:
        for si, scene in enumerate(scenes):
            back = make_background(sources, scene.background, width, height)
            pan = np.array([back.shape[1] - width - 1, back.shape[0] - height - 1], np.float64)
            n = scene.last - scene.first + 1
            for t in range(scene.first, scene.last + 1):
                f = (t - scene.first) / max(n - 1, 1)
                shift = pan * np.array([f, 0.5 + 0.3 * math.sin(2 * math.pi * f)])
                m = np.array([[1.0, 0.0, -shift[0]], [0.0, 1.0, -shift[1]]])
                canvas = cv2.warpAffine(back, m, (width, height), flags=cv2.INTER_LINEAR)
                faces: list[dict] = []
                covers: list[np.ndarray] = []            # alpha of everything drawn, in order
                drawn_at: list[int] = []                 # where each face's own alpha is in ``covers``
                for tr in scene.tracks:
                    k = t - tr.first
                    if not 0 <= k < len(tr.poses):
                        continue
                    pose = tr.poses[k]
                    i = sources.index(tr.source, tr.source_start, k)
                    image, lm = sources.get(tr.source, i)
                    alpha, points = paste_face(canvas, image, lm, pose, sources.median_size(tr.source))
                    _, size, roll = face_square(points)
                    box = _box(points)
                    drawn_at.append(len(covers))
                    covers.append(alpha)
                    if pose.occluder is not None and pose.cover > 0:
                        covers.append(draw_occluder(canvas, pose, size, box, rng))
                    faces.append({"track": scenes_track_id(scenes, tr), "box": [round(v, 2) for v in box],
                                  "size": round(size, 2), "angle": round(roll, 2), "occluder": pose.occluder,
                                  "source": {"name": tr.source, "file": SOURCES[tr.source], "frame": i},
                                  "landmarks": np.round(points, 2).tolist()})
                for j, face in enumerate(faces):          # covered by its occluder or anything drawn after it
                    later = covers[drawn_at[j] + 1:]
                    union = np.maximum.reduce(later) if later else np.zeros((height, width), np.float32)
                    face["occluded"] = round(_box_cover(union, tuple(face["box"])), 3)
                    if face["occluded"] == 0:
                        face["occluder"] = None
                canvas += np.asarray(rng.normal(0, 1.5, canvas.shape), np.float32)
                writer.put(np.clip(canvas + 0.5, 0, 255).astype(np.uint8))
                truth_frames.append({"index": t, "scene": si, "faces": faces})
    except BaseException:
        writer.abort()
        raise
    writer.close()
    truth = {
        "version": 1, "video": out.name, "width": width, "height": height, "fps": FPS, "count": frames,
        "seed": seed,
        "cuts": [s.first for s in scenes[1:]],
        "scenes": [{"first": s.first, "last": s.last, "background": {"name": s.background[0],
                                                                      "frame": s.background[1]},
                    "tracks": [scenes_track_id(scenes, tr) for tr in s.tracks]} for s in scenes],
        "legend": {
            "box": "x0, y0, x1, y1: bounds of the face's 68 landmarks in frame pixels",
            "size": "side of the square holding the 68 landmarks in the face's upright frame (px)",
            "angle": "roll in degrees: eye line angle, positive = turned clockwise on screen",
            "occluded": "share of the box covered by an occluder or a face drawn after it",
            "landmarks": "68 iBUG points: dlib's on the source frame, carried through the paste transform",
        },
        "frames": truth_frames,
    }
    truth_path(out).write_text(json.dumps(truth))
    return out


def scenes_track_id(scenes: list[Scene], track: Track) -> int:
    """A track's number in the clip, counted over all scenes in order."""
    k = 0
    for s in scenes:
        for tr in s.tracks:
            if tr is track:
                return k
            k += 1
    raise ValueError("track not in scenes")


def truth_path(video: Path) -> Path:
    return Path(str(video) + ".truth.json")


def make_hard_clip(out: Path, frames: int = 150, width: int = 960, height: int = 540, seed: int = 0) -> Path:
    """Write the hard clip (``plan_clip``'s scenes) to ``out`` and its truth to ``<out>.truth.json``."""
    return render_clip(out, plan_clip(frames, width, height, seed), width, height, seed)


# ----------------------------------------------------------------------------- coverage


def iou(a: Iterable[float], b: Iterable[float]) -> float:
    ax0, ay0, ax1, ay1 = a
    bx0, by0, bx1, by1 = b
    iw, ih = min(ax1, bx1) - max(ax0, bx0), min(ay1, by1) - max(ay0, by0)
    if iw <= 0 or ih <= 0:
        return 0.0
    inter = iw * ih
    return inter / ((ax1 - ax0) * (ay1 - ay0) + (bx1 - bx0) * (by1 - by0) - inter)


def match(truth_boxes: list, found_boxes: list, threshold: float = IOU_THRESHOLD) -> list[tuple[int, int]]:
    """Greedy one-to-one matching, highest IoU first, pairs with IoU >= threshold: [(truth i, found j)]."""
    pairs = sorted(((iou(t, f), i, j) for i, t in enumerate(truth_boxes) for j, f in enumerate(found_boxes)),
                   reverse=True)
    used_t: set[int] = set()
    used_f: set[int] = set()
    out = []
    for v, i, j in pairs:
        if v < threshold:
            break
        if i not in used_t and j not in used_f:
            used_t.add(i)
            used_f.add(j)
            out.append((i, j))
    return out


def _bin(value: float, bins: tuple[tuple[float, float], ...]) -> str:
    for k, (lo, hi) in enumerate(bins):
        if value < hi or k == len(bins) - 1:
            return f"{lo:g}-{hi:g}"
    raise AssertionError


def _recall(counts: dict[str, list[int]]) -> dict[str, dict]:
    return {k: {"faces": n, "found": f, "recall": round(f / n, 3) if n else None} for k, (n, f) in counts.items()}


def score_frames(truth: dict, detections: list[list], threshold: float = IOU_THRESHOLD) -> dict:
    """Recall (overall, by size, by roll, occluded or not) and false detections of boxes found per frame."""
    by_size = {_bin(lo, SIZE_BINS): [0, 0] for lo, _ in SIZE_BINS}
    by_angle = {_bin(lo, ANGLE_BINS): [0, 0] for lo, _ in ANGLE_BINS}
    by_cover = {"clear": [0, 0], "occluded": [0, 0]}
    faces = found = false = false_empty = 0
    per_frame = []
    for frame, boxes in zip(truth["frames"], detections):
        tf = frame["faces"]
        pairs = match([f["box"] for f in tf], boxes, threshold)
        hit = {i for i, _ in pairs}
        for i, face in enumerate(tf):
            got = int(i in hit)
            for counts, key in ((by_size, _bin(face["size"], SIZE_BINS)),
                                (by_angle, _bin(abs(face["angle"]), ANGLE_BINS)),
                                (by_cover, "occluded" if face["occluded"] >= OCCLUDED_FROM else "clear")):
                counts[key][0] += 1
                counts[key][1] += got
        faces += len(tf)
        found += len(hit)
        false += len(boxes) - len(pairs)
        false_empty += len(boxes) if not tf else 0
        per_frame.append({"faces": len(tf), "found": len(hit), "false": len(boxes) - len(pairs)})
    n = len(per_frame)
    return {"iou_threshold": threshold, "frames": n, "faces": faces, "found": found,
            "recall": round(found / faces, 3) if faces else None,
            "by_size": _recall(by_size), "by_angle": _recall(by_angle), "by_cover": _recall(by_cover),
            "occluded_from": OCCLUDED_FROM,
            "false": false, "false_per_frame": round(false / n, 3) if n else 0.0,
            "false_in_empty_frames": false_empty, "per_frame": per_frame}


def measure_coverage(video: Path, truth: dict, detector: str, iou_threshold: float = IOU_THRESHOLD,
                     **detector_kwargs) -> dict:
    """Run a registered detector on every frame (``detect(frame, thorough=True)``) and score it.

    The detector is created as extract creates it: ``DETECTORS.load(name)(upsample=..., min_face=...)``,
    defaults ``upsample="auto"``, ``min_face=40`` (the smallest face in the clip). Only the
    ``detect`` calls are timed (time.perf_counter), not decoding.
    """
    from pipeline.registries import DETECTORS
    kwargs = {"upsample": "auto", "min_face": int(MIN_SIZE), **detector_kwargs}
    det = DETECTORS.load(detector)(**kwargs)
    width, height = truth["width"], truth["height"]
    boxes: list[list] = []
    face_ms: list[float] = []
    empty_ms: list[float] = []
    for i, frame in FrameReader(Path(video), width, height):
        if i >= len(truth["frames"]):
            break
        start = time.perf_counter()
        found = det.detect(frame, thorough=True)
        took = (time.perf_counter() - start) * 1000
        (face_ms if truth["frames"][i]["faces"] else empty_ms).append(took)
        boxes.append([tuple(float(v) for v in d.box) for d in found])
    if len(boxes) != len(truth["frames"]):
        raise ValueError(f"{video} has {len(boxes)} frames, its truth {len(truth['frames'])}")
    result = score_frames(truth, boxes, iou_threshold)
    return {"detector": detector, "description": getattr(det, "description", ""),
            "options": {k: v for k, v in kwargs.items()}, **result,
            "ms_face_frame": round(float(np.mean(face_ms)), 2) if face_ms else None,
            "ms_empty_frame": round(float(np.mean(empty_ms)), 2) if empty_ms else None,
            "boxes": [[[round(v, 1) for v in b] for b in fb] for fb in boxes]}


def table(result: dict) -> str:
    """The printed summary of one detector's coverage."""
    def pct(d: dict) -> str:
        return f"{d['found']:4d}/{d['faces']:<4d} {100 * d['recall']:5.1f} %" if d["faces"] else "     -"
    lines = [f"detector {result['detector']}: {result['description']}",
             f"  all faces            {pct(result)}   (IoU >= {result['iou_threshold']:g})"]
    for title, key in (("size px", "by_size"), ("|roll| deg", "by_angle")):
        for name, d in result[key].items():
            lines.append(f"  {title:10s} {name:9s} {pct(d)}")
    for name, d in result["by_cover"].items():
        lines.append(f"  {name:20s} {pct(d)}")
    lines.append(f"  false detections     {result['false']} ({result['false_per_frame']:.2f} per frame; "
                 f"{result['false_in_empty_frames']} in frames without a face)")
    face_ms, empty_ms = result["ms_face_frame"], result["ms_empty_frame"]
    lines.append(f"  time per frame       {face_ms if face_ms is not None else '-'} ms with faces, "
                 f"{empty_ms if empty_ms is not None else '-'} ms without")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--detectors", nargs="+", default=["dlib", "dlib-cnn"], help="registered detector names")
    ap.add_argument("--frames", type=int, default=150)
    ap.add_argument("--width", type=int, default=960)
    ap.add_argument("--height", type=int, default=540)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--min-face", type=int, default=int(MIN_SIZE), help="passed to the detector (default 40)")
    ap.add_argument("--upsample", default="auto", help="passed to the detector (default auto)")
    ap.add_argument("--iou", type=float, default=IOU_THRESHOLD, help="IoU a detection needs to match a face")
    ap.add_argument("--keep", type=Path, default=None, help="write the clip and its truth here and keep them")
    ap.add_argument("--json", type=Path, default=None, help="also write the figures here")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = args.keep or Path(tmp)
        folder.mkdir(parents=True, exist_ok=True)
        video = make_hard_clip(folder / f"hard_{args.frames}_{args.seed}.mp4", args.frames, args.width,
                               args.height, args.seed)
        truth = json.loads(truth_path(video).read_text())
        empty = sum(1 for f in truth["frames"] if not f["faces"])
        two = sum(1 for f in truth["frames"] if len(f["faces"]) >= 2)
        print(f"clip {video.name}: {truth['count']} frames {args.width}x{args.height}, "
              f"{sum(len(f['faces']) for f in truth['frames'])} faces, {two} frames with two, {empty} without, "
              f"cuts at {truth['cuts']}")
        results = []
        for name in args.detectors:
            res = measure_coverage(video, truth, name, args.iou, upsample=args.upsample, min_face=args.min_face)
            print(table(res))
            results.append(res)
    if args.json:
        args.json.write_text(json.dumps({"clip": {k: truth[k] for k in ("width", "height", "count", "seed", "cuts")},
                                         "detectors": results}, indent=2))


if __name__ == "__main__":
    main()
