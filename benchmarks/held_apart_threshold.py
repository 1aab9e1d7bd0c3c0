"""Calibrates the held-apart network's same-person threshold on the shared data.

FaceNet embeddings (and, beside them, dlib's descriptors) of every 10th frame of both
shared clips and of the shared photos of one person and another are compared pairwise:
same person (frames of one clip, photos of one person) against different people. Prints
the ranges, the threshold between them (midpoint of the gap, or the equal-error point if
the two overlap) and how many pairs each threshold gets wrong.

Usage: python -m benchmarks.held_apart_threshold [--step 10]
"""
from __future__ import annotations

import argparse
import itertools
from pathlib import Path

import cv2
import numpy as np

from evaluate.held_apart import FaceNetJudge
from pipeline.core.video import FrameReader, probe
from pipeline.faces.analyser import FaceAnalyser
from pipeline.faces.identity import IdentityEncoder

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
CLIPS = {"Hill": "WDA_KatieHill_000.mp4", "Ocasio-Cortez": "WDA_AlexandriaOcasioCortez_000.mp4"}
PHOTOS = {"Obama": ["obama.jpg", "obama2.jpg", "obama3.jpg"], "Biden": ["biden.jpg"]}


def _faces(step: int) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """(person, FaceNet embedding, dlib descriptor) of the largest face of each sampled image."""
    judge, encoder = FaceNetJudge(), IdentityEncoder("cpu")
    find = FaceAnalyser("retinaface", "mediapipe", "auto", 80)
    images: list[tuple[str, np.ndarray]] = []
    for person, name in CLIPS.items():
        path = DATA / "videos" / name
        info = probe(path)
        images += [(person, f) for i, f in FrameReader(path, info.width, info.height) if i % step == 0]
    for person, names in PHOTOS.items():
        images += [(person, cv2.cvtColor(cv2.imread(str(DATA / "photos" / n)), cv2.COLOR_BGR2RGB)) for n in names]
    out = []
    for person, image in images:
        faces = find(image)
        if not faces:
            continue
        f = max(faces, key=lambda f: (f.box[2] - f.box[0]) * (f.box[3] - f.box[1]))
        out.append((person, judge.describe(image, f.box), encoder.describe_face(image, f.landmarks)))
    return out


def _threshold(same: np.ndarray, other: np.ndarray) -> float:
    if same.max() < other.min():
        return float((same.max() + other.min()) / 2.0)
    grid = np.linspace(min(same.min(), other.min()), max(same.max(), other.max()), 2001)
    errors = [abs((same > t).mean() - (other <= t).mean()) for t in grid]
    return float(grid[int(np.argmin(errors))])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--step", type=int, default=10, help="every Nth frame of each clip (default 10)")
    args = ap.parse_args()
    faces = _faces(args.step)
    print(f"faces: {len(faces)} ({', '.join(f'{p} {sum(1 for f in faces if f[0] == p)}' for p in [*CLIPS, *PHOTOS])})")
    for k, label in ((1, "FaceNet (held apart)"), (2, "dlib (trained against)")):
        same, other, by_kind = [], [], {}
        for a, b in itertools.combinations(faces, 2):
            d = float(np.linalg.norm(a[k] - b[k]))
            (same if a[0] == b[0] else other).append(d)
            by_kind.setdefault(" / ".join(sorted({a[0], b[0]})), []).append(d)
        s, o = np.array(same), np.array(other)
        t = _threshold(s, o)
        wrong = int((s > t).sum() + (o <= t).sum())
        print(f"\n{label}: same person {s.min():.3f}-{s.max():.3f} (median {np.median(s):.3f}, {s.size} pairs), "
              f"different people {o.min():.3f}-{o.max():.3f} (median {np.median(o):.3f}, {o.size} pairs)")
        print(f"  threshold {t:.3f}: {wrong} of {s.size + o.size} pairs on the wrong side")
        for kind, ds in sorted(by_kind.items()):
            print(f"  {kind:<28} median {np.median(ds):.3f}  range {min(ds):.3f}-{max(ds):.3f}  ({len(ds)} pairs)")


if __name__ == "__main__":
    main()
