"""Face analysis stacks compared on the shared footage: landmark jitter, agreement, stability, speed.

For each detector + landmark model pair (dlib's HOG + 68-point model, RetinaFace and
BlazeFace with MediaPipe's mesh, ...) this measures, in one run:

- landmark jitter (evaluate's measure, RMS second difference in eye distances) on a
  smoothly moving still frame (``benchmarks.jitter_floor``: all motion is known, so what
  remains is the landmarker's own noise) and on each untouched shared clip;
- agreement with dlib's 68 points (mean distance in eye distances, same frames);
- alignment stability: spread of the aligned eye centres over the clip (std over
  frames, fraction of the crop size), as extract's test measures it;
- time per frame of detection + landmarks, and the share of frames with a face;
- with ``--hard``, detection coverage on ``benchmarks.hard_clip``'s clip (small, turned,
  covered, moving faces; false detections counted), time per frame with and without a
  face, and the frames of a track the detector lost between frames where it found it.

Usage: python -m benchmarks.face_analysis [--frames N] [--hard] [--json out.json]
"""
from __future__ import annotations

import argparse
import json
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from benchmarks.jitter_floor import DEFAULT_VIDEO, smooth_copies
from evaluate import metrics
from pipeline.core import geometry
from pipeline.core.video import FrameReader, ffmpeg_exe, probe
from pipeline.faces.analyser import FaceAnalyser

VIDEOS = DEFAULT_VIDEO.parent


@dataclass(frozen=True)
class Stack:
    detector: str
    landmarker: str
    passes: int | None = None      # MediaPipe crop refinements (None: the backend's default)

    @property
    def label(self) -> str:
        return f"{self.detector} + {self.landmarker}" + (f" ({self.passes} passes)" if self.passes else "")

    def analyser(self, min_face: int) -> FaceAnalyser:
        an = FaceAnalyser(self.detector, self.landmarker, "auto", min_face)
        if self.passes is not None:
            an.landmarker.passes = self.passes   # type: ignore[attr-defined]
        return an


STACKS = (Stack("dlib", "dlib"), Stack("retinaface", "dlib"), Stack("retinaface", "mediapipe", 1),
          Stack("retinaface", "mediapipe", 2), Stack("retinaface", "mediapipe", 3), Stack("blazeface", "mediapipe", 2),
          Stack("dlib", "mediapipe", 2))


def read_frames(video: Path, limit: int | None) -> list[np.ndarray]:
    info = probe(video)
    out = []
    for index, frame in FrameReader(video, info.width, info.height):
        if limit is not None and index >= limit:
            break
        out.append(frame)
    return out


def first_frame(video: Path) -> np.ndarray:
    info = probe(video)
    raw = subprocess.run([ffmpeg_exe(), "-v", "error", "-i", str(video), "-frames:v", "1", "-f", "rawvideo",
                          "-pix_fmt", "rgb24", "-"], capture_output=True, check=True).stdout
    return np.frombuffer(raw, np.uint8).reshape(info.height, info.width, 3)


def analyse(stack: Stack, frames: list[np.ndarray], min_face: int) -> tuple[list[np.ndarray | None], float]:
    """Largest face's 68 points per frame (None: no face) and the mean seconds per frame."""
    an = stack.analyser(min_face)
    points: list[np.ndarray | None] = []
    started = time.perf_counter()
    for frame in frames:
        found = an(frame)
        points.append(found[0].landmarks if found else None)
    return points, (time.perf_counter() - started) / max(len(frames), 1)


def jitter(track: list[np.ndarray | None]) -> float | None:
    runs: list[float | None] = []
    current: list[np.ndarray] = []
    for p in [*track, None]:
        if p is None:
            runs.extend(metrics.second_difference_jitter(current) if len(current) >= 3 else [])
            current = []
        else:
            current.append(p)
    values = [v for v in runs if v is not None]
    return float(metrics.rms(values)) if values else None


def agreement(track: list[np.ndarray | None], reference: list[np.ndarray | None]) -> float | None:
    errs = [np.linalg.norm(p - r, axis=1).mean() / geometry.eye_distance(r)
            for p, r in zip(track, reference) if p is not None and r is not None]
    return float(np.mean(errs)) if errs else None


def eye_spread(track: list[np.ndarray | None], size: int = 256) -> float | None:
    pts = [geometry.transform_points(p, geometry.face_transform(p, "full", size)) for p in track if p is not None]
    if len(pts) < 2:
        return None
    arr = np.stack(pts)
    spreads = [arr[:, eye].mean(axis=1).std(axis=0) / size for eye in (geometry.EYE_RIGHT, geometry.EYE_LEFT)]
    return float(np.max(spreads))


def easy_clips(stacks: tuple[Stack, ...], frames: int | None, floor_frames: int) -> dict:
    out: dict = {}
    clips = {"still frame (moved smoothly)": list(smooth_copies(first_frame(DEFAULT_VIDEO), floor_frames))}
    for video in sorted(VIDEOS.glob("*.mp4")):
        clips[video.name] = read_frames(video, frames)
    for name, clip in clips.items():
        h, w = clip[0].shape[:2]
        min_face = max(80, min(w, h) // 4)
        reference, _ = analyse(Stack("dlib", "dlib"), clip, min_face)
        rows = {}
        for stack in stacks:
            track, seconds = analyse(stack, clip, min_face)
            rows[stack.label] = {
                "jitter": jitter(track), "agreement_with_dlib": agreement(track, reference),
                "eye_centre_spread": eye_spread(track), "ms_per_frame": seconds * 1000,
                "frames_with_face": sum(p is not None for p in track) / len(track)}
        out[name] = {"frames": len(clip), "stacks": rows}
    return out


def print_easy(results: dict) -> None:
    for clip, data in results.items():
        print(f"\n{clip} ({data['frames']} frames)")
        print(f"  {'stack':38s} {'jitter':>8s} {'vs dlib':>8s} {'eye spr.':>9s} {'ms/frame':>9s} {'found':>6s}")
        for label, r in data["stacks"].items():
            def f(v, fmt="{:8.4f}"):
                return fmt.format(v) if v is not None else f"{'-':>8s}"
            print(f"  {label:38s} {f(r['jitter'])} {f(r['agreement_with_dlib'])} {f(r['eye_centre_spread'], '{:9.4f}')}"
                  f" {r['ms_per_frame']:9.1f} {r['frames_with_face']:6.0%}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--frames", type=int, default=None, help="frames of each clip (default: all)")
    ap.add_argument("--floor-frames", type=int, default=100, help="frames of the moving still frame (default 100)")
    ap.add_argument("--stacks", nargs="*", default=None, help="detector+landmarker[:passes] pairs (default: all)")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    stacks = STACKS
    if args.stacks:
        stacks = tuple(Stack(s.split("+")[0], s.split("+")[1].split(":")[0],
                             int(s.split(":")[1]) if ":" in s else None) for s in args.stacks)
    results = {"easy": easy_clips(stacks, args.frames, args.floor_frames)}
    print_easy(results["easy"])
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
