"""Convert options against evaluate's realism and identity figures, on one trained workspace.

Each variant is a set of ``convert`` options. For each, the same evenly spaced frames are
rendered in-process exactly as ``convert --preview`` renders them, and measured against
the original frames with evaluate's own functions: sharpness, colour fringes and skin tone
(``evaluate.realism``), identity by the held-apart network (FaceNet, distance to the src
person and to the original face, and the share of frames closer to src) and by dlib's
network, and expression. One table, measured in one run, so the variants are comparable.

Usage:
  python -m benchmarks.realism_ablation -w WORKSPACE [--frames 20]
      [--variant "name=--precision float --color none" ...]
Without --variant the default set runs: the defaults, float instead of int8, no colour
transfer, alpha blending, and each of this stage's realism options switched off.
"""
from __future__ import annotations

import argparse
import shlex
import time
from pathlib import Path

import numpy as np

from convert.options import ConvertOptions
from convert.runner import run_convert
from evaluate import metrics, realism
from evaluate.held_apart import FaceNetJudge
from evaluate.runner import _src_held_apart, _src_identity
from pipeline.core.options import add_arguments, from_namespace
from pipeline.core.video import frames_at
from pipeline.faces.analyser import FaceAnalyser
from pipeline.faces.identity import IdentityEncoder
from pipeline.workspace.store import Workspace

DEFAULT_VARIANTS = [
    "defaults=",
    "float=--precision float",
    "no colour transfer=--color none",
    "alpha blend=--blend alpha",
]


def convert_options(workspace: Path, frames: int, extra: str) -> ConvertOptions:
    """``convert`` options as the command line would parse them, rendering ``frames`` preview stills."""
    parser = argparse.ArgumentParser()
    add_arguments(parser, ConvertOptions)
    ns = parser.parse_args(["-w", str(workspace), "--preview", str(frames), *shlex.split(extra)])
    return from_namespace(ConvertOptions, ns)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-w", "--workspace", type=Path, required=True)
    ap.add_argument("--frames", type=int, default=20, help="evenly spaced frames rendered per variant (default 20)")
    ap.add_argument("--variant", action="append", help="NAME=CONVERT OPTIONS (repeatable)")
    args = ap.parse_args()
    variants = [v.split("=", 1) for v in (args.variant or DEFAULT_VARIANTS)]
    with Workspace(args.workspace) as ws:
        meta = ws.set_meta("dst")
        assert meta is not None, "the workspace has no dst set"
        judge, encoder = FaceNetJudge(), IdentityEncoder("cpu")
        src_held, src_dlib = _src_held_apart(ws, judge), _src_identity(ws)
        detector, landmarker = meta.extract.detector, meta.extract.landmarker
        video = Path(meta.input)
    find = FaceAnalyser(detector, landmarker, "auto", 80)
    rows = []
    originals: dict[int, np.ndarray] = {}
    for name, extra in variants:
        stills: dict[int, np.ndarray] = {}
        t0 = time.perf_counter()
        run_convert(convert_options(args.workspace, args.frames, extra), stills)
        took = time.perf_counter() - t0
        if not originals:
            originals = frames_at(video, set(stills))
        figures: dict[str, list[float]] = {k: [] for k in ("sharpness", "fringing", "tone_delta_e", "held_src",
                                                           "held_dst", "dlib_src", "dlib_dst", "expression")}
        for i, out in sorted(stills.items()):
            ref = originals[i]
            ref_faces, out_faces = find(ref), find(out)
            if not ref_faces or not out_faces:
                continue
            rf, of = ref_faces[0], out_faces[0]
            for k, v in realism.measure(out, ref, rf.landmarks).items():
                if v is not None:
                    figures[k].append(v)
            h_out, h_ref = judge.describe(out, of.box), judge.describe(ref, rf.box)
            figures["held_dst"].append(float(np.linalg.norm(h_out - h_ref)))
            if src_held is not None:
                figures["held_src"].append(float(np.linalg.norm(h_out - src_held)))
            d_out, d_ref = encoder.describe_face(out, of.landmarks), encoder.describe_face(ref, rf.landmarks)
            figures["dlib_dst"].append(float(np.linalg.norm(d_out - d_ref)))
            if src_dlib is not None:
                figures["dlib_src"].append(float(np.linalg.norm(d_out - src_dlib)))
            figures["expression"].append(metrics.expression_error(of.landmarks, rf.landmarks))
        closer = [s < d for s, d in zip(figures["held_src"], figures["held_dst"])]
        rows.append((name, extra, took, {k: float(np.median(v)) if v else float("nan") for k, v in figures.items()},
                     float(np.mean(closer)) if closer else float("nan"), len(figures["held_dst"])))
    print(f"\n{args.workspace}: medians over the frames of each variant (realism: output / reference)\n")
    print(f"{'variant':<36}{'sharp':>7}{'fringe':>8}{'tone dE':>8}{'FN src':>8}{'FN dst':>8}{'FN closer':>10}"
          f"{'dlib src':>9}{'dlib dst':>9}{'expr':>7}{'frames':>7}{'s':>6}")
    for name, _extra, took, f, share, n in rows:
        print(f"{name:<36}{f['sharpness']:>7.3f}{f['fringing']:>8.2f}{f['tone_delta_e']:>8.2f}{f['held_src']:>8.3f}"
              f"{f['held_dst']:>8.3f}{share:>10.0%}{f['dlib_src']:>9.3f}{f['dlib_dst']:>9.3f}"
              f"{f['expression']:>7.3f}{n:>7}{took:>6.1f}")
    for name, extra, *_ in rows:
        print(f"  {name}: convert {extra or '(defaults)'}")


if __name__ == "__main__":
    main()
