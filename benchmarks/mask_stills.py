"""Stills of ``benchmarks.mask_quality``'s results: what the hull and the learned mask do to occluders.

Per chosen frame of the occluded clip, one row: the frame | the hull mask over it | the
learned mask over it | converted with hull masks | converted with learned masks (face
region, enlarged), labelled with each mask's IoU against the truth.

Usage: python -m benchmarks.mask_stills --work /tmp/maskq [--labels 20] [--frames 10 65 150] --out docs/x.jpg
"""
from __future__ import annotations

import argparse
from pathlib import Path

import cv2
import numpy as np

from benchmarks.mask_quality import iou, truths
from pipeline.core import geometry
from pipeline.core.images import encode, outlined_text, read_gray
from pipeline.core.video import frames_at
from pipeline.workspace.store import Workspace


def _overlay(frame: np.ndarray, mask: np.ndarray) -> np.ndarray:
    m = (mask > 127)[..., None]
    tint = np.where(m, frame * 0.55 + np.array([0, 120, 60]) * 0.45, frame * 0.6)
    out = tint.clip(0, 255).astype(np.uint8)
    edges = cv2.Canny((mask > 127).astype(np.uint8) * 255, 50, 150) > 0
    out[cv2.dilate(edges.astype(np.uint8), np.ones((2, 2), np.uint8)) > 0] = (255, 255, 0)
    return out


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", type=Path, required=True, help="the --work folder of benchmarks.mask_quality")
    ap.add_argument("--labels", type=int, default=20, help="which run's learned masks (its N)")
    ap.add_argument("--frames", type=int, nargs="+", default=[37, 65, 150],
                    help="frames to show (not among the labelled ones of N = 20)")
    ap.add_argument("--out", type=Path, required=True, help="JPEG to write")
    args = ap.parse_args(argv)
    work = args.work
    truth = truths(work / "occluded", work / "clean", work / "occluder_masks")
    wanted = set(args.frames)
    source = frames_at(work / "occluded.mp4", wanted)
    hull_out = frames_at(work / "convert_hull.mp4", wanted)
    learned_out = frames_at(work / "convert_learned.mp4", wanted)
    rows = []
    with Workspace(work / "occluded") as hull_ws, Workspace(work / f"labels_{args.labels}") as learned_ws:
        hull_rows = {r.frame_index: r for r in hull_ws.faces("dst", kept=True) if r.face_index == 0}
        learned_rows = {r.frame_index: r for r in learned_ws.faces("dst", kept=True) if r.face_index == 0}
        for i in args.frames:
            row = hull_rows[i]
            frame = source[i]
            size = (frame.shape[1], frame.shape[0])
            back = geometry.invert_affine(row.transform)
            cells, labels = [frame], [f"frame {i}"]
            for ws, r in ((hull_ws, row), (learned_ws, learned_rows[i])):
                aligned = read_gray(ws.mask_path(r))
                assert aligned is not None and r.id is not None
                score = iou(aligned, truth[row.id][0]) if row.id in truth else float("nan")
                cells.append(_overlay(frame, cv2.warpAffine(aligned, back, size, flags=cv2.INTER_LINEAR)))
                labels.append(f"{r.mask_origin.value} mask, IoU {score:.3f}")
            cells += [hull_out[i], learned_out[i]]
            labels += ["convert, hull masks", "convert, learned masks"]
            x0, y0, x1, y1 = row.bbox
            pad = 0.35 * (x1 - x0)
            box = [int(max(0, x0 - pad)), int(max(0, y0 - pad)), int(min(size[0], x1 + pad)),
                   int(min(size[1], y1 + pad))]
            crops = [cv2.resize(c[box[1]:box[3], box[0]:box[2]], (320, 320), interpolation=cv2.INTER_AREA)
                     for c in cells]
            for c, text in zip(crops, labels):
                outlined_text(c, text, (6, 20), 0.55, (255, 255, 0), outline=1)
            rows.append(np.hstack(crops))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_bytes(encode(np.vstack(rows), ".jpg"))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
