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

Usage: python -m benchmarks.face_analysis [--frames N] [--hard [--keep DIR]] [--skip-easy] [--json out.json]
"""
from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
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
ROOT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Stack:
    detector: str
    landmarker: str
    passes: int | None = None      # MediaPipe crop refinements (None: the backend's default)

    @property
    def label(self) -> str:
        return f"{self.detector} + {self.landmarker}" + (f" ({self.passes} passes)" if self.passes else "")

    def analyser(self, min_face: int) -> FaceAnalyser:
        return FaceAnalyser(self.detector, self.landmarker, "auto", min_face, self.passes)


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


# ---------------------------------------------------------------- the hard clip

HARD_DETECTORS = ("dlib", "retinaface", "blazeface")
HARD_STACKS: tuple[tuple[str, ...], ...] = (
    ("retinaface", "mediapipe"), ("retinaface", "mediapipe", "--min-face", "40"),
    ("dlib", "dlib"), ("dlib", "dlib", "--min-face", "40"))


def extract_run(video: Path, ws: Path, detector: str, landmarker: str, *extra: str) -> tuple[float, int, str]:
    """`main.py extract` as a user runs it: (seconds, exit code, summary line)."""
    shutil.rmtree(ws, ignore_errors=True)
    started = time.perf_counter()
    res = subprocess.run([sys.executable, str(ROOT / "main.py"), "extract", "--input", str(video), "--workspace",
                          str(ws), "--detector", detector, "--landmarker", landmarker, *extra],
                         capture_output=True, text=True)
    line = (res.stdout.strip().splitlines() or res.stderr.strip().splitlines() or [""])[-1]
    return time.perf_counter() - started, res.returncode, line


def track_holes(truth: dict, ws: Path) -> dict:
    """Frames of a face track with no face in the workspace, between frames of that track that have one.

    Those are the frames where convert would let the original face show for a moment.
    Matched by IoU >= 0.3 against the truth box of that track's face.
    """
    from benchmarks.hard_clip import match
    from pipeline.workspace.store import Workspace
    store = Workspace(ws)
    try:
        rows = store.faces("dst") if store.exists else []
    finally:
        store.close()
    by_frame: dict[int, list] = {}
    for r in rows:
        by_frame.setdefault(r.frame_index, []).append(r)
    present: dict[int, list[tuple[int, str | None]]] = {}     # track -> [(frame, origin or None)]
    for frame in truth["frames"]:
        faces = frame["faces"]
        found = by_frame.get(frame["index"], [])
        pairs = dict(match([f["box"] for f in faces], [list(r.bbox) for r in found]))
        for ti, face in enumerate(faces):
            origin = found[pairs[ti]].origin.value if ti in pairs else None
            present.setdefault(face["track"], []).append((frame["index"], origin))
    holes, runs, bridged = 0, [], 0
    for seq in present.values():
        hit = [i for i, (_, origin) in enumerate(seq) if origin is not None]
        bridged += sum(1 for _, origin in seq if origin == "bridged")
        if len(hit) < 2:
            continue
        run = 0
        for i in range(hit[0], hit[-1] + 1):
            if seq[i][1] is None:
                holes += 1
                run += 1
            elif run:
                runs.append(run)
                run = 0
    return {"faces_in_truth": sum(len(v) for v in present.values()),
            "faces_in_workspace": sum(1 for v in present.values() for _, o in v if o is not None),
            "bridged": bridged, "hole_frames": holes, "holes": len(runs), "longest_hole": max(runs, default=0)}


def hard_clip(folder: Path, frames: int) -> dict:
    from benchmarks.extract_speed import faceless_copy, transcode_seconds
    from benchmarks.hard_clip import make_hard_clip, measure_coverage, truth_path
    video = folder / f"hard_{frames}_0.mp4"
    if not video.exists() or not truth_path(video).exists():
        make_hard_clip(video, frames=frames)
    truth = json.loads(truth_path(video).read_text())
    out: dict = {"video": str(video), "frames": truth["count"], "coverage": {}, "extract": {}}
    for name in HARD_DETECTORS:
        cov = measure_coverage(video, truth, name)
        out["coverage"][name] = {k: cov[k] for k in ("faces", "found", "recall", "by_size", "by_angle", "by_cover",
                                                      "false", "ms_face_frame", "ms_empty_frame")}
    base = transcode_seconds(video, folder)
    empty = faceless_copy(video, folder)
    out["transcode_s"] = base
    for det, lm, *extra in HARD_STACKS:
        ws = folder / f"ws_{det}_{lm}{''.join(extra)}"
        seconds, code, line = extract_run(video, ws, det, lm, *extra)
        faceless_s, _, _ = extract_run(empty, folder / "ws_faceless", det, lm, *extra)
        out["extract"][" ".join([f"{det} + {lm}", *extra])] = {
            "seconds": seconds, "exit": code, "summary": line, "ratio_to_transcode": seconds / base,
            "ms_per_frame": seconds * 1000 / truth["count"], "faceless_seconds": faceless_s,
            "faceless_over_clip": faceless_s / seconds, **track_holes(truth, ws)}
    return out


def print_hard(r: dict) -> None:
    print(f"\nhard clip {Path(r['video']).name} ({r['frames']} frames; faces 40-80 px, roll up to 60 degrees, "
          f"covered up to 40 %)")
    print(f"  {'detector':12s} {'found':>13s} {'40-55px':>8s} {'roll>35':>8s} {'covered':>8s} {'false':>6s} "
          f"{'ms face/none':>13s}")
    for name, c in r["coverage"].items():
        print(f"  {name:12s} {c['found']:4d}/{c['faces']:<4d}{c['recall']:5.1%} "
              f"{c['by_size']['40-55']['recall']:8.1%} {c['by_angle']['35-60']['recall']:8.1%} "
              f"{c['by_cover']['occluded']['recall']:8.1%} {c['false']:6d} "
              f"{c['ms_face_frame']:6.1f}/{c['ms_empty_frame']:<6.1f}")
    print(f"  plain ffmpeg transcode of the clip: {r['transcode_s']:.2f} s")
    for label, e in r["extract"].items():
        print(f"  extract {label}: {e['seconds']:.1f} s ({e['ms_per_frame']:.0f} ms/frame), "
              f"{e['ratio_to_transcode']:.2f} x transcode; the same video without faces {e['faceless_seconds']:.1f} s "
              f"({e['faceless_over_clip']:.2f} x)")
        print(f"    faces kept {e['faces_in_workspace']}/{e['faces_in_truth']} ({e['bridged']} bridged); frames "
              f"where a track's face is missing between frames that have it: {e['hole_frames']} in {e['holes']} gaps "
              f"(longest {e['longest_hole']})")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--frames", type=int, default=None, help="frames of each clip (default: all)")
    ap.add_argument("--floor-frames", type=int, default=100, help="frames of the moving still frame (default 100)")
    ap.add_argument("--stacks", nargs="*", default=None, help="detector+landmarker[:passes] pairs (default: all)")
    ap.add_argument("--hard", action="store_true", help="also measure on benchmarks.hard_clip's clip")
    ap.add_argument("--hard-frames", type=int, default=150, help="frames of the hard clip (default 150)")
    ap.add_argument("--keep", type=Path, default=None, help="keep the hard clip and workspaces in this folder")
    ap.add_argument("--skip-easy", action="store_true", help="only the hard clip")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    stacks = STACKS
    if args.stacks:
        stacks = tuple(Stack(s.split("+")[0], s.split("+")[1].split(":")[0],
                             int(s.split(":")[1]) if ":" in s else None) for s in args.stacks)
    results: dict = {}
    if not args.skip_easy:
        results["easy"] = easy_clips(stacks, args.frames, args.floor_frames)
        print_easy(results["easy"])
    if args.hard:
        with tempfile.TemporaryDirectory() as tmp:
            folder = args.keep or Path(tmp)
            folder.mkdir(parents=True, exist_ok=True)
            results["hard"] = hard_clip(folder, args.hard_frames)
        print_hard(results["hard"])
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
