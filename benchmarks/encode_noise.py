"""How far evaluate's figures move when convert's rendered frames change by one grey level here and there.

Why: a speed change that alters a few values by float rounding (a BLAS thread count, a
solver) is checked against "evaluate's figures unchanged" (issue 31). x264 answers even a
one-level change with other decisions over the whole frame, so the figures move by more than
the render did. This measures that floor on a workspace: the frames convert renders (in this
process, every default step on), encoded as convert encodes them, against the same frames
with ``--values`` random values moved by one grey level, each evaluated as ``main.py
evaluate`` does. A render change whose figures move by about this much moved them no more
than its rounding did.

Usage: python -m benchmarks.encode_noise --workspace WS [--values 467] [--seed 1]
Writes WS/noise_floor_{exact,moved}.mp4 (the workspace's report is rewritten by evaluate).
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

#: The figures compared (report.json keys; FaceNet's is under identity_held_apart).
FIGURES = ("identity_to_src", "sharpness", "fringing", "tone_delta_e")


def rendered_frames(ws: Path) -> np.ndarray:
    """The swapped frames of the workspace's dst video (up to 1000, spread over it) as convert renders them."""
    from convert.options import ConvertOptions
    from convert.runner import run_convert
    stills: dict[int, np.ndarray] = {}
    frames = int(json.loads((ws / "workspace.json").read_text())["sets"]["dst"]["video"]["frames"])
    run_convert(ConvertOptions(workspace=ws, preview=min(frames, 1000)), stills)
    return np.stack([stills[i] for i in sorted(stills)])


def encode(frames: np.ndarray, path: Path, fps: float) -> None:
    """H.264 as convert writes it (crf 18, medium, yuv420p), without audio or credentials."""
    from pipeline.core.video import FrameWriter
    writer = FrameWriter(path, frames.shape[2], frames.shape[1], fps, crf=18, preset="medium")
    for frame in frames:
        writer.put(frame)
    writer.close()


def figures(ws: Path, video: Path) -> dict[str, float]:
    from evaluate.options import EvaluateOptions
    from evaluate.runner import run_evaluate
    report, _ = run_evaluate(EvaluateOptions(workspace=ws, video=video))
    out = {name: float(report[name]["mean"]) for name in FIGURES}
    out["facenet_to_src"] = float(report["identity_held_apart"]["to_src"]["mean"])
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--workspace", type=Path, required=True, help="a workspace with a trained model")
    ap.add_argument("--values", type=int, default=467, help="values moved by one grey level")
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()

    fps = float(json.loads((args.workspace / "workspace.json").read_text())["sets"]["dst"]["video"]["fps"])
    exact = rendered_frames(args.workspace)
    moved = exact.copy()
    flat = moved.reshape(-1)
    picks = np.random.default_rng(args.seed).choice(flat.size, args.values, replace=False)
    flat[picks] = np.where(flat[picks] < 255, flat[picks] + 1, flat[picks] - 1)
    results = {}
    for name, frames in (("exact", exact), ("moved", moved)):
        video = args.workspace / f"noise_floor_{name}.mp4"
        encode(frames, video, fps)
        results[name] = figures(args.workspace, video)
    print(f"{len(exact)} frames; {args.values} of {exact.size} values moved by one grey level")
    print(f"{'figure':18s} {'exact':>8s} {'moved':>8s} {'change':>8s}")
    for key in results["exact"]:
        a, b = results["exact"][key], results["moved"][key]
        print(f"{key:18s} {a:8.4f} {b:8.4f} {b - a:+8.4f}")


if __name__ == "__main__":
    main()
