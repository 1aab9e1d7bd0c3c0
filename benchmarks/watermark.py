"""Does the face watermark stay invisible and survive what happens to a video? (issue 30)

Measured in one run, on the dst clip of a workspace (its faces' landmarks from the
index; the watermark is put into the original frames, as convert puts it into the
swapped ones):
- invisibility: PSNR of the face region (the mark's hull) against the same frames unmarked;
- detection, frame by frame, with the default detector and landmark model finding the faces
  anew: on the marked video (crf 18, as convert writes it), after ``ffmpeg -c:v libx264
  -crf 28`` (the manifest would be gone), after that and halving the size, and on videos
  that were never marked (the original, a second clip): none should be found there;
- for each, one frame's score alone, the score of ``WINDOW`` neighbouring frames summed (the
  verdict), and of ``LONG_WINDOW`` (about a second), against the threshold;
- whether the payload (32 bits and a CRC-16) reads back, and right.

Usage: python -m benchmarks.watermark --workspace WS [--other VIDEO] [--json OUT]
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from pipeline.core.video import FrameReader, FrameWriter, ffmpeg_exe, probe
from pipeline.provenance.watermark import (
    THRESHOLD,
    WINDOW,
    FrameScorer,
    Watermark,
    face_cells,
    render_payload,
    window_scores,
)

ROOT = Path(__file__).resolve().parents[1]
#: the verdict over about a second of video as well (25 frames), for the harder re-encodes
LONG_WINDOW = 25
OTHER = ROOT.parent / "shared" / "data" / "videos" / "WDA_AlexandriaOcasioCortez_000.mp4"


def landmarks_by_frame(workspace: Path) -> tuple[Path, dict[int, list[np.ndarray]]]:
    from pipeline.workspace.store import Workspace
    with Workspace(workspace) as ws:
        meta = ws.set_meta("dst")
        assert meta is not None, "the workspace has no dst set"
        out: dict[int, list[np.ndarray]] = {}
        for row in ws.faces_as_edited("dst"):
            if not row.dropped:
                out.setdefault(row.frame_index, []).append(row.landmarks)
        return Path(meta.input), out


def mark_video(video: Path, faces: dict[int, list[np.ndarray]], mark: Watermark, out: Path) -> float:
    """Write the marked video (crf 18); the face-region PSNR of the marking, over all faces."""
    info = probe(video)
    errors, count = 0.0, 0
    writer = FrameWriter(out, info.width, info.height, info.fps, crf=18, audio_from=video)
    for index, frame in FrameReader(video, info.width, info.height):
        marked = frame.copy()
        for lm in faces.get(index, []):
            mark.embed(marked, lm, index)
        diff = marked.astype(np.float32) - frame
        region = np.abs(diff).max(axis=2) > 0
        if region.any():
            errors += float((diff[region] ** 2).sum())
            count += int(region.sum()) * 3
        writer.put(marked)
    writer.close()
    mse = errors / max(count, 1)
    return float(10 * np.log10(255.0 ** 2 / mse)) if mse > 0 else float("inf")


def detect(video: Path, mark: Watermark, scale: float = 1.0) -> dict:
    """Each frame's best face score, and the share of frames with a face whose windowed score passes."""
    from pipeline.faces.analyser import FaceAnalyser
    analyser = FaceAnalyser("retinaface", "mediapipe", min_face=40)
    info = probe(video)
    scorer = FrameScorer(mark)           # as verify scores: each face against itself in the frames around it
    for index, frame in FrameReader(video, info.width, info.height):
        scorer.add(index, [face_cells(frame, f.landmarks) for f in analyser(frame)])
    scores = scorer.finish()
    single = np.array(list(scores.values()) or [0.0])
    windowed = np.array(list(window_scores(scores).values()) or [0.0])
    second = np.array(list(window_scores(scores, LONG_WINDOW).values()) or [0.0])
    return {"frames_with_face": len(scores), "single_median": float(np.median(single)),
            "single_share": float(np.mean(single >= THRESHOLD)), "window_median": float(np.median(windowed)),
            "window_share": float(np.mean(windowed >= THRESHOLD)), "window_max": float(windowed.max()),
            "long_median": float(np.median(second)), "long_share": float(np.mean(second >= THRESHOLD)),
            "long_max": float(second.max()),
            "payload": scorer.payload.hex() if scorer.payload is not None else None,
            "payload_right": scorer.payload is not None and scorer.payload == mark.payload}


def transcode(src: Path, out: Path, crf: int, half: bool = False) -> None:
    cmd = [ffmpeg_exe(), "-v", "error", "-y", "-i", str(src)]
    if half:
        cmd += ["-vf", "scale=trunc(iw/4)*2:trunc(ih/4)*2"]
    subprocess.run(cmd + ["-c:v", "libx264", "-crf", str(crf), "-pix_fmt", "yuv420p", str(out)], check=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--workspace", type=Path, required=True, help="a workspace with an extracted dst clip")
    ap.add_argument("--other", type=Path, default=OTHER, help="a video never marked (false alarms)")
    ap.add_argument("--json", type=Path)
    ap.add_argument("--no-payload", action="store_true", help="the mark without a payload (the same key), to compare")
    args = ap.parse_args()
    mark = Watermark(bytes(range(32)), None if args.no_payload else render_payload("benchmark dst", "benchmark model"))
    video, faces = landmarks_by_frame(args.workspace)
    results: dict = {"threshold": THRESHOLD, "window": WINDOW}
    with tempfile.TemporaryDirectory() as tmp:
        t = Path(tmp)
        start = time.perf_counter()
        results["psnr_face_db"] = mark_video(video, faces, mark, t / "marked.mp4")
        results["mark_seconds"] = time.perf_counter() - start
        transcode(t / "marked.mp4", t / "crf28.mp4", 28)
        transcode(t / "marked.mp4", t / "crf28_half.mp4", 28, half=True)
        for name, path in (("marked crf 18", t / "marked.mp4"), ("re-encoded crf 28", t / "crf28.mp4"),
                           ("crf 28, half size", t / "crf28_half.mp4"), ("original (never marked)", video),
                           ("other clip (never marked)", args.other)):
            results[name] = detect(path, mark)
            r = results[name]
            print(f"{name:<28} {r['frames_with_face']:>3} frames with a face; "
                  f"one frame: median {r['single_median']:5.1f}, "
                  f"{100 * r['single_share']:5.1f} % pass; {WINDOW} frames: median {r['window_median']:5.1f}, "
                  f"{100 * r['window_share']:5.1f} % pass (max {r['window_max']:.1f}); {LONG_WINDOW} frames: median "
                  f"{r['long_median']:5.1f}, {100 * r['long_share']:5.1f} % pass (max {r['long_max']:.1f}); payload "
                  f"{r['payload'] or 'not read'}{' (right)' if r['payload_right'] else ''}", flush=True)
    print(f"face-region PSNR of the mark: {results['psnr_face_db']:.2f} dB (target >= 45); a frame passes at "
          f"{THRESHOLD} standard deviations; payload put in: {mark.payload.hex() if mark.payload else None}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    sys.exit(main())
