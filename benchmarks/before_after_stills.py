"""Stills for docs/: chosen frames of a trained workspace, original | before | after, full size and eyes enlarged.

"Before" and "after" are two sets of convert options (by default: the network's face as
it was stretched and coloured before this stage's realism fixes, ``--detail 0
--chroma-smooth 0``, against the defaults). Each frame is rendered in-process exactly as
``convert --preview`` renders it, and labelled with evaluate's realism figures for that
frame (sharpness and colour fringes as output / original, skin tone delta E). Written as
JPEG with full-resolution colour (4:4:4), so colour fringes are not smeared by the file.

"Before" may also come from another workspace's model (``--before-workspace``: two trainings
of the same pair compared frame by frame).

Usage: python -m benchmarks.before_after_stills -w WORKSPACE --out docs/NAME [--frames 10 90 170]
           [--before "--detail 0 --chroma-smooth 0"] [--after ""] [--before-workspace OTHER]
"""
from __future__ import annotations

import argparse
from pathlib import Path

import cv2
import numpy as np

from benchmarks.realism_ablation import convert_options
from convert.runner import run_convert
from evaluate import realism
from pipeline.core.images import outlined_text
from pipeline.core.video import FrameReader, probe
from pipeline.faces.analyser import FaceAnalyser
from pipeline.workspace.store import Workspace

BEFORE = "--detail 0 --chroma-smooth 0"


def render(workspace: Path, frame: int, extra: str) -> np.ndarray:
    stills: dict[int, np.ndarray] = {}
    run_convert(convert_options(workspace, 1, f"--start {frame} --end {frame + 1} {extra}"), stills)
    return stills[frame]


def _label(image: np.ndarray, lines: list[str]) -> np.ndarray:
    out = image.copy()
    for k, text in enumerate(lines):
        y = 22 + 22 * k
        outlined_text(out, text, (8, y), 0.6, (255, 255, 0))
    return out


def _eyes(image: np.ndarray, landmarks: np.ndarray, factor: int = 3) -> np.ndarray:
    """Brows to nose tip, enlarged by whole pixels (no smoothing)."""
    pts = np.asarray(landmarks)
    top = int(pts[17:27, 1].min() - 0.25 * (pts[33, 1] - pts[17:27, 1].min()))
    bottom = int(pts[29, 1])
    left, right = int(pts[:, 0].min()), int(pts[:, 0].max())
    region = image[max(top, 0):bottom, max(left, 0):right]
    return cv2.resize(region, None, fx=factor, fy=factor, interpolation=cv2.INTER_NEAREST)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-w", "--workspace", type=Path, required=True)
    ap.add_argument("--out", type=Path, required=True, help="file name stem: STEM_full.jpg and STEM_eyes.jpg")
    ap.add_argument("--frames", type=int, nargs="+", default=[10, 90, 170])
    ap.add_argument("--before", default=BEFORE, help=f"convert options of 'before' (default: {BEFORE})")
    ap.add_argument("--after", default="", help="convert options of 'after' (default: the defaults)")
    ap.add_argument("--before-workspace", type=Path, default=None,
                    help="render 'before' with this workspace's model (default: the same workspace)")
    args = ap.parse_args()
    with Workspace(args.workspace) as ws:
        meta = ws.set_meta("dst")
        assert meta is not None
        video = Path(meta.input)
        find = FaceAnalyser(meta.extract.detector, meta.extract.landmarker, "auto", 80)
    info = probe(video)
    originals = {i: f for i, f in FrameReader(video, info.width, info.height) if i in set(args.frames)}
    full_rows, eye_rows = [], []
    for i in args.frames:
        ref = originals[i]
        landmarks = find(ref)[0].landmarks
        tiles, eyes = [_label(ref, [f"frame {i}: original"])], [_eyes(ref, landmarks)]
        for name, extra, where in (("before", args.before, args.before_workspace or args.workspace),
                                   ("after", args.after, args.workspace)):
            out = render(where, i, extra)
            m = realism.measure(out, ref, landmarks)
            lines = [f"{name}: {extra or 'defaults'}" + (f" ({where.name})" if args.before_workspace else ""),
                     f"sharpness {m['sharpness']:.2f}  fringes {m['fringing']:.2f}  tone dE {m['tone_delta_e']:.2f}"]
            tiles.append(_label(out, lines))
            eyes.append(_eyes(out, landmarks))
            print(f"frame {i} {name}: " + lines[1])
        full_rows.append(np.concatenate(tiles, axis=1))
        h = min(e.shape[0] for e in eyes)
        w = min(e.shape[1] for e in eyes)
        eye_rows.append(np.concatenate([_label(e[:h, :w], [label]) for e, label in
                                        zip(eyes, (f"frame {i}: original", "before", "after"))], axis=1))
    width = max(r.shape[1] for r in eye_rows)
    eye_rows = [np.pad(r, ((0, 0), (0, width - r.shape[1]), (0, 0))) for r in eye_rows]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    params = [cv2.IMWRITE_JPEG_QUALITY, 92, cv2.IMWRITE_JPEG_SAMPLING_FACTOR, cv2.IMWRITE_JPEG_SAMPLING_FACTOR_444]
    for suffix, rows in (("full", full_rows), ("eyes", eye_rows)):
        path = args.out.with_name(f"{args.out.name}_{suffix}.jpg")
        cv2.imwrite(str(path), cv2.cvtColor(np.concatenate(rows, axis=0), cv2.COLOR_RGB2BGR), params)
        print(f"wrote {path}")


if __name__ == "__main__":
    main()
