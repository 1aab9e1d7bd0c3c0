"""How much jitter evaluate's measure reports on a video that has none: the detector's floor.

evaluate measures jitter by finding landmarks again in every output frame, with the
detector and landmark model the dst set was extracted with. Even a perfectly smooth
video gives a non-zero figure, because landmarks on a moving face wobble by themselves.
This script moves one real frame along a smooth path (sub-pixel translation, slow
rotation and zoom, no expression change at all), detects as evaluate does, and prints
that floor next to the dst clip's own figure: no convert setting can bring a swap's
measured jitter below it.

Usage: python -m benchmarks.jitter_floor [--video PATH] [--frames 100] [--detector D --landmarker L]
(default: extract's default stack; benchmarks.face_analysis compares all stacks)
"""
from __future__ import annotations

import argparse
import json
import subprocess
from pathlib import Path

import cv2
import numpy as np

from evaluate import metrics
from extract.options import DEFAULT_BACKENDS
from pipeline.core.video import FrameReader, ffmpeg_exe, probe
from pipeline.faces.analyser import FaceAnalyser

ROOT = Path(__file__).resolve().parents[1]


DEFAULT_VIDEO = ROOT.parent / "shared" / "data" / "videos" / "WDA_KatieHill_000.mp4"


def track_jitter(frames, min_face: int, detector: str = DEFAULT_BACKENDS["detector"],
                 landmarker: str = DEFAULT_BACKENDS["landmarker"]) -> float:
    analyser = FaceAnalyser(detector, landmarker, "auto", min_face)
    track = []
    for frame in frames:
        found = analyser(frame)
        if found:
            track.append(found[0].landmarks)
    return float(metrics.rms(metrics.second_difference_jitter(track)))   # evaluate's figure: RMS


def smooth_copies(frame: np.ndarray, count: int):
    h, w = frame.shape[:2]
    for t in range(count):
        m = cv2.getRotationMatrix2D((w / 2, h / 2), 2.0 * np.sin(2 * np.pi * t / 60),
                                    1.0 + 0.03 * np.sin(2 * np.pi * t / 90))
        m[:, 2] += (10.0 * np.sin(2 * np.pi * t / 50), 5.0 * np.cos(2 * np.pi * t / 70))
        yield cv2.warpAffine(frame, m, (w, h), flags=cv2.INTER_CUBIC, borderMode=cv2.BORDER_REFLECT)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--video", type=Path, default=DEFAULT_VIDEO)
    ap.add_argument("--frames", type=int, default=100)
    ap.add_argument("--detector", default=DEFAULT_BACKENDS["detector"])
    ap.add_argument("--landmarker", default=DEFAULT_BACKENDS["landmarker"])
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    info = probe(args.video)
    min_face = max(80, min(info.width, info.height) // 4)
    raw = subprocess.run([ffmpeg_exe(), "-v", "error", "-i", str(args.video), "-frames:v", "1", "-f", "rawvideo",
                          "-pix_fmt", "rgb24", "-"], capture_output=True, check=True).stdout
    first = np.frombuffer(raw, np.uint8).reshape(info.height, info.width, 3)
    floor = track_jitter(smooth_copies(first, args.frames), min_face, args.detector, args.landmarker)
    clip = track_jitter((f for _, f in FrameReader(args.video, info.width, info.height)), min_face, args.detector,
                        args.landmarker)
    print(f"{args.detector} + {args.landmarker}: landmark jitter on a smoothly moving still frame "
          f"({args.frames} frames): {floor:.4f} eye distances")
    print(f"jitter of the clip itself ({args.video.name}): {clip:.4f}")
    if args.json:
        args.json.write_text(json.dumps({"floor": floor, "clip": clip}, indent=2))


if __name__ == "__main__":
    main()
