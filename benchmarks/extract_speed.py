"""Extract wall time over a plain ffmpeg decode + libx264 re-encode of the same clip.

Both are measured in this one run, on this machine, so the ratio is comparable across
machines. Usage: python -m benchmarks.extract_speed [--video PATH] [--repeat N]
[--also "--detector dlib --landmarker dlib" ...]  (other stacks timed in the same run)
"""
from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from pipeline.core.video import ffmpeg_exe

ROOT = Path(__file__).resolve().parents[1]


DEFAULT_VIDEO = ROOT.parent / "shared" / "data" / "videos" / "WDA_KatieHill_000.mp4"


def transcode_seconds(video: Path, out_dir: Path) -> float:
    """The baseline: what any tool must at least do to touch every frame."""
    out = out_dir / "transcode.mp4"
    start = time.perf_counter()
    subprocess.run([ffmpeg_exe(), "-v", "error", "-y", "-i", str(video), "-c:v", "libx264", "-crf", "18",
                    "-c:a", "copy", str(out)], check=True)
    return time.perf_counter() - start


def extract_seconds(video: Path, out_dir: Path, extra: tuple[str, ...] = ()) -> tuple[float, str]:
    """A fresh `main.py extract` as a user runs it (process start and model load included)."""
    ws = out_dir / "ws"
    shutil.rmtree(ws, ignore_errors=True)
    start = time.perf_counter()
    res = subprocess.run([sys.executable, str(ROOT / "main.py"), "extract", "--input", str(video),
                          "--workspace", str(ws), *extra], capture_output=True, text=True, check=True)
    return time.perf_counter() - start, res.stdout.strip()


def faceless_copy(video: Path, out_dir: Path) -> Path:
    """A video of the same size, rate and length with no face at all (black frames)."""
    from pipeline.core.video import probe
    info = probe(video)
    out = out_dir / "faceless.mp4"
    subprocess.run([ffmpeg_exe(), "-v", "error", "-y", "-f", "lavfi", "-i",
                    f"color=c=black:s={info.width}x{info.height}:r={info.fps:g}:d={info.frames / info.fps:.3f}",
                    "-c:v", "libx264", str(out)], check=True)
    return out


def faceless_seconds(video: Path, out_dir: Path) -> float:
    """`main.py extract` on a video without faces: it finds none (exit 1) and should not crawl doing so."""
    ws = out_dir / "ws_faceless"
    shutil.rmtree(ws, ignore_errors=True)
    start = time.perf_counter()
    res = subprocess.run([sys.executable, str(ROOT / "main.py"), "extract", "--input", str(video),
                          "--workspace", str(ws)], capture_output=True, text=True)
    if res.returncode != 1 or "no face found" not in res.stderr:
        raise SystemExit(f"extract on {video} should have found no face: {res.stderr[-300:]}")
    return time.perf_counter() - start


def descriptor_cost(video: Path, faces: int = 200) -> dict:
    """What the identity descriptors add to extract: torch + weights load, and per face.

    Measured as extract runs them: one torch thread beside the detector threads, batch 16,
    on chips cut from the clip's frames.
    """
    from pipeline.core.video import FrameReader, probe
    from pipeline.faces.analyser import FaceAnalyser
    from pipeline.faces.face_chip import extract_chip
    info = probe(video)
    analyser = FaceAnalyser("dlib", "dlib")
    det, lm = analyser.detector, analyser.landmarker
    chips = []
    for _, frame in FrameReader(video, info.width, info.height):
        found = det.detect(frame)
        if found:
            chips.append(extract_chip(frame, lm.landmarks(frame, found[0].box)))
        if len(chips) >= faces:
            break
    start = time.perf_counter()
    from pipeline.faces.identity import IdentityEncoder
    enc = IdentityEncoder("cpu", 16, cpu_threads=1)
    load = time.perf_counter() - start
    enc.describe_chips(chips[:16])
    start = time.perf_counter()
    enc.describe_chips(chips)
    per_face = (time.perf_counter() - start) / len(chips)
    return {"load_s": round(load, 3), "ms_per_face": round(per_face * 1000, 2), "faces": len(chips)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--video", type=Path, default=DEFAULT_VIDEO)
    ap.add_argument("--repeat", type=int, default=3, help="runs of each; the best is reported")
    ap.add_argument("--json", type=Path, default=None, help="also write the figures here")
    ap.add_argument("--also", action="append", default=[], metavar="ARGS",
                    help="extract options of another stack to time in the same run (repeatable)")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp_dir = Path(tmp)
        base = min(transcode_seconds(args.video, tmp_dir) for _ in range(args.repeat))
        runs = [extract_seconds(args.video, tmp_dir) for _ in range(args.repeat)]
        ext = min(t for t, _ in runs)
        faceless = faceless_copy(args.video, tmp_dir)
        empty = min(faceless_seconds(faceless, tmp_dir) for _ in range(args.repeat))
        others = {extra: min(extract_seconds(args.video, tmp_dir, tuple(extra.split()))[0]
                             for _ in range(args.repeat)) for extra in args.also}
    desc = descriptor_cost(args.video)
    result = {"video": str(args.video), "transcode_s": round(base, 3), "extract_s": round(ext, 3),
              "ratio": round(ext / base, 2), "target": 3.0, "summary": runs[0][1], "descriptors": desc,
              "faceless_s": round(empty, 3),
              "ratios": [{"name": "extract / ffmpeg transcode", "value": ext, "baseline": base, "unit": "s",
                          "ratio": ext / base, "target": 3.0},
                         {"name": "faceless extract / extract", "value": empty, "baseline": ext, "unit": "s",
                          "ratio": empty / ext, "target": 2.0}],
              "other_stacks": {k: {"extract_s": round(v, 3), "ratio": round(v / base, 2)} for k, v in others.items()}}
    print(f"plain ffmpeg transcode (libx264 crf 18): {base:.2f} s")
    print(f"main.py extract (fresh workspace):       {ext:.2f} s   [{runs[0][1]}]")
    print(f"ratio extract / transcode:               {ext / base:.2f}  (target <= 3.0)")
    print(f"extract of the same video without faces:  {empty:.2f} s, {empty / ext:.2f} x the clip's (target <= 2.0)")
    for extra, seconds in others.items():
        print(f"extract {extra}: {seconds:.2f} s, ratio to transcode {seconds / base:.2f}")
    share = desc["load_s"] + desc["ms_per_face"] * desc["faces"] / 1000
    print(f"of which identity descriptors (CPU work): torch + weights load {desc['load_s']:.2f} s "
          f"(overlapped with detection), {desc['ms_per_face']:.2f} ms/face at batch 16 on one thread; "
          f"{share:.2f} s of CPU for {desc['faces']} faces")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
