"""Does a trained model swap identity while keeping expression? Measured with dlib itself.

For every kept dst face of the workspace: the model's output at its resolution, then
- identity: dlib's own descriptor (dlib.get_face_chip + compute_face_descriptor, not our
  port) of the output, compared with the mean src descriptor and with the descriptor of
  the dst face it came from (same procedure on the input crop). Reported: the share of
  faces closer to src than to their dst face, and the mean distances;
- the same on degraded outputs (JPEG quality 40, then half size and back): a change that
  only fools the network would not survive this;
- expression: dlib's 68 landmarks on output and input crop, mean distance in units of the
  input's eye distance (target < 0.08).

Usage: python -m benchmarks.train_quality [--workspace DIR] [--json PATH]
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import cv2
import numpy as np
import torch

from pipeline.core.geometry import eye_distance, resize_transform, transform_points
from pipeline.core.images import read_rgb
from pipeline.core.weights import model_path
from pipeline.models.store import load_model
from pipeline.workspace.store import Workspace

ROOT = Path(__file__).resolve().parents[1]



class DlibIdentity:
    def __init__(self) -> None:
        import dlib
        self.dlib = dlib
        self.rec = dlib.face_recognition_model_v1(str(model_path("dlib-face-recognition")))
        self.shape = dlib.shape_predictor(str(model_path("landmarks-68")))

    def _det(self, points: np.ndarray):
        lo, hi = points.min(axis=0), points.max(axis=0)
        rect = self.dlib.rectangle(int(lo[0]), int(lo[1]), int(hi[0]), int(hi[1]))
        return self.dlib.full_object_detection(rect, [self.dlib.point(int(round(x)), int(round(y))) for x, y in points])

    def descriptor(self, image: np.ndarray, points: np.ndarray) -> np.ndarray:
        chip = self.dlib.get_face_chip(image, self._det(points), size=150, padding=0.25)
        return np.array(self.rec.compute_face_descriptor(chip))

    def landmarks(self, image: np.ndarray, points: np.ndarray) -> np.ndarray:
        """dlib's 68 points, searched in the box the given points span (grown like a detector box)."""
        lo, hi = points[17:].min(axis=0), points[17:].max(axis=0)
        c, half = (lo + hi) / 2, (hi - lo).max() * 0.62
        rect = self.dlib.rectangle(int(c[0] - half), int(c[1] - half * 0.8), int(c[0] + half), int(c[1] + half * 1.2))
        return np.array([(p.x, p.y) for p in self.shape(image, rect).parts()], dtype=np.float64)


def degrade(image: np.ndarray) -> np.ndarray:
    ok, buf = cv2.imencode(".jpg", cv2.cvtColor(image, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 40])
    img = cv2.cvtColor(cv2.imdecode(buf, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
    h, w = img.shape[:2]
    small = cv2.resize(img, (w // 2, h // 2), interpolation=cv2.INTER_AREA)
    return cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)


def measure(workspace: Path, limit: int | None = None) -> dict:
    model, options = load_model(workspace / "model")
    net = model.network
    res = options["resolution"]
    ws = Workspace(workspace)
    ident = DlibIdentity()

    def load(set_name: str):
        for row in ws.faces(set_name, kept=True):
            img = read_rgb(ws.aligned_path(row))
            pts = transform_points(row.aligned_landmarks, resize_transform(img.shape[0], res))
            yield cv2.resize(img, (res, res), interpolation=cv2.INTER_AREA), pts

    src_mean = np.mean([ident.descriptor(img, pts) for img, pts in load("src")], axis=0)
    rows = []
    for k, (img, pts) in enumerate(load("dst")):
        if limit and k >= limit:
            break
        with torch.no_grad():
            out = net(torch.from_numpy(img).permute(2, 0, 1)[None].float() / 255).clamp(0, 1)
        out = (out[0].permute(1, 2, 0).numpy() * 255 + 0.5).astype(np.uint8)
        d_in = ident.descriptor(img, pts)
        d_out = ident.descriptor(out, pts)
        d_deg = ident.descriptor(degrade(out), pts)
        lm_in, lm_out = ident.landmarks(img, pts), ident.landmarks(out, pts)
        rows.append({"to_src": float(np.linalg.norm(d_out - src_mean)), "to_dst": float(np.linalg.norm(d_out - d_in)),
                     "deg_to_src": float(np.linalg.norm(d_deg - src_mean)),
                     "deg_to_dst": float(np.linalg.norm(d_deg - d_in)),
                     "input_to_src": float(np.linalg.norm(d_in - src_mean)),
                     "expression": float(np.linalg.norm(lm_out - lm_in, axis=1).mean() / eye_distance(lm_in))})
    col = lambda k: np.array([r[k] for r in rows])  # noqa: E731
    return {"workspace": str(workspace), "iteration": options.get("iteration"), "faces": len(rows),
            "identity_weight": options.get("identity_weight"), "width": options.get("width"),
            "closer_to_src_share": float((col("to_src") < col("to_dst")).mean()),
            "degraded_closer_to_src_share": float((col("deg_to_src") < col("deg_to_dst")).mean()),
            "to_src_mean": float(col("to_src").mean()), "to_dst_mean": float(col("to_dst").mean()),
            "degraded_to_src_mean": float(col("deg_to_src").mean()),
            "degraded_to_dst_mean": float(col("deg_to_dst").mean()),
            "input_to_src_mean": float(col("input_to_src").mean()),
            "expression_mean": float(col("expression").mean()), "expression_max": float(col("expression").max())}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--workspace", type=Path, default=Path("workspace"))
    ap.add_argument("--limit", type=int, default=None, help="only the first N dst faces")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    r = measure(args.workspace, args.limit)
    print(f"model at iteration {r['iteration']} (identity weight {r['identity_weight']}, width {r['width']}), "
          f"{r['faces']} dst faces, dlib's own descriptors:")
    print(f"  dst input  -> src identity: {r['input_to_src_mean']:.3f} (before the swap)")
    print(f"  output     -> src {r['to_src_mean']:.3f}, -> its dst face {r['to_dst_mean']:.3f}; "
          f"closer to src on {100 * r['closer_to_src_share']:.0f}% of faces")
    print(f"  degraded   -> src {r['degraded_to_src_mean']:.3f}, -> its dst face {r['degraded_to_dst_mean']:.3f}; "
          f"closer to src on {100 * r['degraded_closer_to_src_share']:.0f}% (JPEG q40 + half size)")
    print(f"  expression: landmark distance output vs dst {r['expression_mean']:.4f} of the eye distance "
          f"(max {r['expression_max']:.4f}; target < 0.08)")
    if args.json:
        args.json.write_text(json.dumps(r, indent=2))


if __name__ == "__main__":
    main()
