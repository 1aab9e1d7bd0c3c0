"""Colour flicker of a swap: how much the skin's colour change jumps from frame to frame.

Per frame, the skin's mean CIELAB colour (``pipeline.faces.regions.skin_region`` at the dst
face's stored landmarks) in a converted video minus the same in the original; the figure is
the RMS (and 95th percentile, largest) of that vector's change between consecutive frames
with a face, in delta E. A grade that stays put reads 0 whatever its size; a per-frame colour
step that follows noise (a median over a different skin each frame) reads as flicker. Why
here: ``--skin-tone`` sets the face's colour per frame, and an artist would see a breathing
face before any figure of evaluate's moved (evaluate's jitter is of landmarks, not colour).

Usage: python -m benchmarks.colour_flicker --original DST_VIDEO --workspace WS VIDEO [VIDEO ...]
(WS: the workspace the videos were converted from; its dst faces give the landmarks, the largest face
of each frame.)
"""
from __future__ import annotations

import argparse

import cv2
import numpy as np

from pipeline.core.video import FrameReader, probe
from pipeline.faces.regions import skin_region
from pipeline.workspace.store import Workspace


def _lab(image: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(image.astype(np.float32) / 255.0, cv2.COLOR_RGB2Lab)


def skin_changes(original: str, video: str, landmarks: dict[int, np.ndarray]) -> list[np.ndarray | None]:
    """Per frame of ``video``, its skin's mean Lab minus the original's at the same pixels (None: no face)."""
    info = probe(original)
    out: list[np.ndarray | None] = []
    frames = FrameReader(original, info.width, info.height)
    for (i, a), (_, b) in zip(frames, FrameReader(video, info.width, info.height)):
        if i not in landmarks:
            out.append(None)
            continue
        skin = skin_region(landmarks[i], a.shape) > 0
        out.append(_lab(b)[skin].mean(axis=0) - _lab(a)[skin].mean(axis=0))
    return out


def flicker(changes: list[np.ndarray | None]) -> dict[str, float]:
    """RMS, 95th percentile and largest frame-to-frame step of the change (consecutive frames with a face)."""
    steps = [float(np.linalg.norm(b - a)) for a, b in zip(changes, changes[1:]) if a is not None and b is not None]
    if not steps:
        return {"rms": float("nan"), "p95": float("nan"), "max": float("nan")}
    return {"rms": float(np.sqrt(np.mean(np.square(steps)))), "p95": float(np.percentile(steps, 95)),
            "max": max(steps)}


def _size(points: np.ndarray) -> float:
    return float(np.ptp(points[:, 0]) * np.ptp(points[:, 1]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--original", required=True)
    parser.add_argument("--workspace", required=True)
    parser.add_argument("videos", nargs="+")
    args = parser.parse_args()
    landmarks: dict[int, np.ndarray] = {}
    with Workspace(args.workspace) as w:
        for r in w.faces("dst"):           # one face a frame: the largest (the main person in a close shot)
            before = landmarks.get(r.frame_index)
            if not r.dropped and (before is None or _size(r.landmarks) > _size(before)):
                landmarks[r.frame_index] = r.landmarks
    for video in args.videos:
        f = flicker(skin_changes(args.original, video, landmarks))
        print(f"{video}: skin colour change, frame to frame: RMS {f['rms']:.3f}  p95 {f['p95']:.3f}  "
              f"max {f['max']:.3f} dE")


if __name__ == "__main__":
    main()
