"""Skin tone when the dst person is darker than anyone the model saw: a darkened dst clip, converted.

The shared clips show two light-skinned people. This makes a hard copy of a workspace's
dst clip: every frame darkened and warmed in linear light (R x0.42, G x0.30, B x0.22, the
reflectance of deep brown skin against light skin, roughly), as if the person had darker
skin under warm stage light. The workspace's model, trained on the original faces, then
converts the darkened clip (``convert --input``: same frames, same landmarks), and
evaluate measures the result against the darkened clip: the skin tone delta E (face
interior), the seam, and identity. Each set of convert options given is run in turn.
Evaluate writes its report into WORKSPACE/report, replacing the one there.

Usage: python -m benchmarks.tone_hard -w WORKSPACE [--options "--detail 0 --chroma-smooth 0" ""]
"""
from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from pipeline.core.video import FrameReader, FrameWriter, probe
from pipeline.workspace.store import Workspace

ROOT = Path(__file__).resolve().parents[1]
GAIN = np.array([0.42, 0.30, 0.22], np.float32)


def darken(frame: np.ndarray) -> np.ndarray:
    linear = (frame.astype(np.float32) / 255.0) ** 2.2
    return (np.clip((linear * GAIN) ** (1 / 2.2), 0, 1) * 255 + 0.5).astype(np.uint8)


def make_clip(video: Path, out: Path) -> None:
    info = probe(video)
    writer = FrameWriter(out, info.width, info.height, info.fps, crf=14, preset="fast", audio_from=video)
    for _, frame in FrameReader(video, info.width, info.height):
        writer.put(darken(frame))
    writer.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-w", "--workspace", type=Path, required=True)
    ap.add_argument("--options", nargs="+", default=["--detail 0 --chroma-smooth 0", ""],
                    help="convert options to compare (default: before this issue's fixes, and the defaults)")
    args = ap.parse_args()
    with Workspace(args.workspace) as ws:
        meta = ws.set_meta("dst")
        assert meta is not None
        video = Path(meta.input)
    with tempfile.TemporaryDirectory() as tmp:
        dark = Path(tmp) / "dark.mp4"
        make_clip(video, dark)
        rows = []
        for extra in args.options:
            out = Path(tmp) / "out.mp4"
            convert = ["convert", "-w", str(args.workspace), "--input", str(dark), "-o", str(out), *shlex.split(extra)]
            for cmd in (convert,
                        ["evaluate", "-w", str(args.workspace), "--video", str(out), "--reference", str(dark),
                         "--samples", "0"]):
                res = subprocess.run([sys.executable, str(ROOT / "main.py"), *cmd], capture_output=True, text=True)
                if res.returncode != 0:
                    raise SystemExit(f"{cmd[0]} failed: {res.stderr.strip().splitlines()[-1:]}")
            rep = json.loads((args.workspace / "report" / "report.json").read_text())
            rows.append((extra or "(defaults)", rep))
    print(f"\n{args.workspace}: the dst clip darkened (linear gains {GAIN.tolist()}), converted, against itself\n")
    print(f"{'convert options':<34}{'tone dE':>9}{'worst':>8}{'seam out/ref':>15}{'sharp':>7}{'fringe':>8}"
          f"{'FN closer':>10}")
    for extra, r in rows:
        seam = r["seam_delta_e"]
        print(f"{extra:<34}{r['tone_delta_e']['median']:>9.2f}{r['tone_delta_e']['worst']:>8.2f}"
              f"{seam['output']:>8.2f}/{seam['reference']:<6.2f}{r['sharpness']['median']:>7.2f}"
              f"{r['fringing']['median']:>8.2f}{r['identity_held_apart']['share_closer_to_src'] or 0:>10.0%}")


if __name__ == "__main__":
    main()
