"""How much softness alone moves evaluate's held-apart distance to src.

An autoencoder at 96 px paints a soft face. Is a soft face far from src for FaceNet only
because it is soft? This takes the src person's own frames (every fourth kept src face,
not the faces evaluate averages into its src centroid) and the dst person's, softens each
whole frame by a factor (downscale by it, upscale back: what a generator of that much
lower resolution gives at best), and prints the mean FaceNet distance to evaluate's src
centroid per factor. The src rows are the floor a perfect but soft swap could reach; the
dst rows are where no swap at all lies.

Usage: python -m benchmarks.facenet_softness --workspace WS [--factors 1 2 3 4] [--json PATH]
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def soften(frame: np.ndarray, factor: float) -> np.ndarray:
    if factor <= 1:
        return frame
    small = cv2.resize(frame, None, fx=1 / factor, fy=1 / factor, interpolation=cv2.INTER_AREA)
    return cv2.resize(small, (frame.shape[1], frame.shape[0]), interpolation=cv2.INTER_CUBIC)


def measure(workspace: Path, factors: list[float]) -> dict:
    """{side: {"box_px", "faces", "by_factor": {factor: mean distance to the src centroid}}}."""
    from evaluate.held_apart import FaceNetJudge, crop
    from evaluate.runner import _src_held_apart
    from pipeline.core.video import FrameReader, probe
    from pipeline.workspace.store import Workspace
    judge = FaceNetJudge()
    out: dict = {}
    with Workspace(workspace) as ws:
        centroid = _src_held_apart(ws, judge)
        if centroid is None:
            raise SystemExit(f"{workspace} has no src faces with a readable src video")
        for side in ("src", "dst"):
            meta = ws.set_meta(side)
            if meta is None or meta.kind != "video":
                continue
            picks = {r.frame_index: r for r in list(ws.faces(side, kept=True))[1::4]}
            info = probe(Path(meta.input))
            reader = FrameReader(Path(meta.input), info.width, info.height)
            dist: dict[float, list[float]] = {f: [] for f in factors}
            widths = []
            try:
                for index, frame in reader:
                    r = picks.get(index)
                    if r is None:
                        continue
                    widths.append(r.bbox[2] - r.bbox[0])
                    for f in factors:
                        d = judge.embed(crop(soften(frame, f), r.bbox)) - centroid
                        dist[f].append(float(np.linalg.norm(d)))
            finally:
                reader.close()
            out[side] = {"box_px": float(np.mean(widths)), "faces": len(widths),
                         "by_factor": {f"{f:g}": float(np.mean(v)) for f, v in dist.items()}}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workspace", type=Path, required=True, help="a pair workspace with src and dst extracted")
    ap.add_argument("--factors", type=float, nargs="+", default=[1, 2, 3, 4], help="softening factors (1 = as is)")
    ap.add_argument("--json", type=Path, help="also write the figures here")
    args = ap.parse_args()
    res = measure(args.workspace, args.factors)
    for side, r in res.items():
        cells = ", ".join(f"x{f} {d:.3f}" for f, d in r["by_factor"].items())
        print(f"{side}'s own frames ({r['faces']} faces, box ~{r['box_px']:.0f} px): FaceNet distance to the src "
              f"centroid {cells}")
    if args.json:
        args.json.write_text(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
