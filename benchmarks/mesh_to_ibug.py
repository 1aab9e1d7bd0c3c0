"""Fit the fixed MediaPipe-mesh -> iBUG-68 table (``pipeline/faces/mesh_ibug.py``) to dlib's points.

For every frame of the fitting clip, dlib's detector box feeds both dlib's 68-point
model and the MediaPipe mesh; both are brought into the template frame of dlib's points
(so faces of any size and roll count alike). Each iBUG point becomes the blend of two
mesh points (weights 0, 1/4, 1/2, 3/4) with the smallest mean distance to dlib's point.
The fit is then judged on the other clip, which it never saw, in eye distances.

Usage: python -m benchmarks.mesh_to_ibug [--fit VIDEO] [--check VIDEO] [--step 2] [--write]
  --write prints the table as Python, to paste into pipeline/faces/mesh_ibug.py.
"""
from __future__ import annotations

import argparse
from itertools import combinations
from pathlib import Path

import numpy as np

from pipeline.core import geometry
from pipeline.core.video import FrameReader, probe
from pipeline.faces import mesh_ibug
from pipeline.registries import DETECTORS, LANDMARKERS

VIDEOS = Path(__file__).resolve().parents[2] / "shared" / "data" / "videos"
WEIGHTS = (0.25, 0.5, 0.75)
#: Iris points (468-477) follow the gaze, not the eyelids: never part of an iBUG point.
CANDIDATES = 468


def collect(video: Path, step: int) -> tuple[np.ndarray, np.ndarray]:
    """(frames, 68, 2) dlib points and (frames, 478, 2) mesh points, in dlib's template frame."""
    info = probe(video)
    det = DETECTORS.load("dlib")(min_face=max(80, min(info.width, info.height) // 4))
    dlib_lm = LANDMARKERS.load("dlib")()
    mesh_lm = LANDMARKERS.load("mediapipe")()
    ibug, meshes = [], []
    for index, frame in FrameReader(video, info.width, info.height):
        if index % step:
            continue
        found = det.detect(frame)
        if not found:
            continue
        points = dlib_lm.landmarks(frame, found[0].box)
        dense = mesh_lm.shape(frame, found[0].box).dense
        assert dense is not None
        to_t = geometry.to_template(points)
        ibug.append(geometry.transform_points(points, to_t))
        meshes.append(geometry.transform_points(dense, to_t))
    return np.asarray(ibug), np.asarray(meshes)


def eye_distance_in_template() -> float:
    return geometry.eye_distance(geometry.mean_face())


def fit(ibug: np.ndarray, mesh: np.ndarray, shortlist: int = 12) -> list[tuple[int, int, float]]:
    table = []
    for k in range(68):
        target = ibug[:, k][:, None]                               # (F, 1, 2)
        single = np.linalg.norm(mesh[:, :CANDIDATES] - target, axis=2).mean(axis=0)  # (468,)
        best = (float(single.min()), int(single.argmin()), int(single.argmin()), 0.0)
        for a, b in combinations(np.argsort(single)[:shortlist], 2):
            for w in WEIGHTS:
                blend = (1 - w) * mesh[:, a] + w * mesh[:, b]
                err = float(np.linalg.norm(blend - ibug[:, k], axis=1).mean())
                if err < best[0]:
                    best = (err, int(a), int(b), w)
        table.append((best[1], best[2], best[3]))
    return table


def errors(table, ibug: np.ndarray, mesh: np.ndarray) -> np.ndarray:
    """(68,) mean distance per point, in eye distances."""
    i = np.array([t[0] for t in table])
    j = np.array([t[1] for t in table])
    w = np.array([t[2] for t in table])[None, :, None]
    mapped = (1 - w) * mesh[:, i] + w * mesh[:, j]
    return np.linalg.norm(mapped - ibug, axis=2).mean(axis=0) / eye_distance_in_template()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--fit", type=Path, default=VIDEOS / "WDA_KatieHill_000.mp4")
    ap.add_argument("--check", type=Path, default=VIDEOS / "WDA_AlexandriaOcasioCortez_000.mp4")
    ap.add_argument("--step", type=int, default=2, help="use every n-th frame (default 2)")
    ap.add_argument("--write", action="store_true", help="print the fitted table as Python")
    args = ap.parse_args()
    fit_ibug, fit_mesh = collect(args.fit, args.step)
    chk_ibug, chk_mesh = collect(args.check, args.step)
    table = fit(fit_ibug, fit_mesh)
    current = list(mesh_ibug.MESH_TO_IBUG)
    for name, tab in (("fitted now", table), ("table in mesh_ibug.py", current)):
        e_fit, e_chk = errors(tab, fit_ibug, fit_mesh), errors(tab, chk_ibug, chk_mesh)
        print(f"{name}: mean error {e_fit.mean():.4f} eye distances on {args.fit.name} ({len(fit_ibug)} faces, "
              f"fitted there), {e_chk.mean():.4f} on {args.check.name} ({len(chk_ibug)} faces, unseen); "
              f"worst point on the unseen clip: {int(e_chk.argmax())} ({e_chk.max():.4f})")
    if args.write:
        print("MESH_TO_IBUG = (")
        for k in range(0, 68, 6):
            print("    " + " ".join(f"({a}, {b}, {w})," for a, b, w in table[k:k + 6]))
        print(")")


if __name__ == "__main__":
    main()
