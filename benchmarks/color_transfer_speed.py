"""Milliseconds per colour-transfer call, per method, on real 128x128 face crops with a face mask.

The convert stage calls convert.color_transfer.transfer once per face per frame, so this is a
per-frame cost. Source = Ocasio-Cortez crop, target = Hill crop (first frame of each shared
clip), elliptical mask (6999 of 16384 pixels). Reports the median and the best of the runs.
Usage: python -m benchmarks.color_transfer_speed [--side 128] [--repeat 200]
"""
from __future__ import annotations

import argparse
import os
import subprocess
import time
from pathlib import Path

import cv2
import numpy as np

from convert.color_transfer import METHODS, transfer
from pipeline.core.video import ffmpeg_exe

ROOT = Path(__file__).resolve().parents[1]


VIDEOS = ROOT.parent / "shared" / "data" / "videos"
TARGET_MS = {"idt": 15.0, "sot": 15.0}   # budget per call at 128x128; 3 ms for the others


def face_crop(video: Path, side: int) -> np.ndarray:
    """Frame 0 of a 512x512 clip, face region rows 120:376, cols 128:384, resized to side."""
    raw = subprocess.run([ffmpeg_exe(), "-v", "error", "-i", str(video), "-vframes", "1",
                          "-f", "rawvideo", "-pix_fmt", "rgb24", "pipe:"],
                         check=True, capture_output=True).stdout
    frame = np.frombuffer(raw, np.uint8).reshape(512, 512, 3)
    return cv2.resize(frame[120:376, 128:384], (side, side), interpolation=cv2.INTER_AREA)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--side", type=int, default=128)
    parser.add_argument("--repeat", type=int, default=200)
    args = parser.parse_args()

    source = face_crop(VIDEOS / "WDA_AlexandriaOcasioCortez_000.mp4", args.side)
    target = face_crop(VIDEOS / "WDA_KatieHill_000.mp4", args.side)
    mask = np.zeros((args.side, args.side), np.uint8)
    half = args.side // 2
    cv2.ellipse(mask, (half, half), (args.side * 42 // 128, args.side * 52 // 128), 0, 0, 360,
                255, -1)

    print(f"{args.side}x{args.side}, mask {int((mask > 127).sum())} px, {args.repeat} calls each, "
          f"{os.cpu_count()} CPUs, OpenCV threads {cv2.getNumThreads()}")
    print(f"{'method':8s} {'median ms':>10s} {'best ms':>9s} {'budget ms':>10s}  ok")
    for method in METHODS:
        transfer(method, source, target, mask)                 # warm-up
        times = []
        for i in range(args.repeat):
            start = time.perf_counter()
            transfer(method, source, target, mask, seed=i)
            times.append((time.perf_counter() - start) * 1e3)
        median, best = float(np.median(times)), min(times)
        budget = TARGET_MS.get(method, 3.0)
        ok = "yes" if args.side != 128 or median <= budget else "NO"
        print(f"{method:8s} {median:10.3f} {best:9.3f} {budget:10.1f}  {ok}")


if __name__ == "__main__":
    main()
