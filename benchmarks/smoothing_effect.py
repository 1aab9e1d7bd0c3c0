"""What --smooth does to evaluate's jitter, for two kinds of network.

evaluate measures jitter by finding landmarks again on the output. Where those landmarks
come from depends on the network:

- ``follows``: a net that keeps the dst face's own features where they are (our
  transformation network does: it is convolutional, so its output moves with its
  input). Here it returns its input crop. The output's landmarks are the dst's own, so
  smoothing the crop's placement cannot change them: jitter stays the dst's.
- ``canonical``: a net that draws its face at a fixed place in the aligned crop (as an
  autoencoder tends to: the decoder's face sits where the aligned training faces sat).
  Here it returns the same face, the first dst crop, for every frame. The output's
  landmarks are then the crop's placement, i.e. the detector's jitter from extract,
  which is what --smooth removes.

Each is rendered with --smooth 0 and the default, then evaluated; the ratio smoothed /
unsmoothed is printed. The workspace needs extracted dst faces (src faces too, for
evaluate's identity rows); convert's model file is replaced only in a copy.

Usage: python -m benchmarks.smoothing_effect [--workspace workspace] [--smooth 2] [--end N]
"""
from __future__ import annotations

import argparse
import json
import shutil
import tempfile
from pathlib import Path

import numpy as np

from convert import runner as convert_runner
from convert.backends import BLEND_MODES
from convert.network import Network
from convert.options import ConvertOptions
from evaluate.options import EvaluateOptions
from evaluate.runner import run_evaluate
from pipeline.core.logs import setup_logging
from pipeline.models.store import save_model
from pipeline.models.transform import TransformModel
from pipeline.models.transform_net import TransformNet
from pipeline.workspace.store import Workspace

ROOT = Path(__file__).resolve().parents[1]



def _jitter(ws: Path, video: Path) -> tuple[float, float]:
    report, _ = run_evaluate(EvaluateOptions(workspace=ws, video=video, samples=0))
    return report["jitter"]["output"], report["jitter"]["reference"]


def _render(ws: Path, out: Path, smooth: float, end: int | None, blend: str, network) -> None:
    original, in_child = Network.__call__, convert_runner.NETWORK_PROCESS
    Network.__call__ = (lambda self, crops, masks=False:                     # type: ignore[method-assign]
                        (network(crops), [None] * len(crops)))
    convert_runner.NETWORK_PROCESS = False          # the network replaced in this process, not in a child
    try:
        convert_runner.run_convert(ConvertOptions(
            workspace=ws, output=out, smooth=smooth, end=end, blend=blend, precision="float"))
    finally:
        Network.__call__, convert_runner.NETWORK_PROCESS = original, in_child   # type: ignore[method-assign]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--workspace", type=Path, default=ROOT / "workspace")
    ap.add_argument("--smooth", type=float, default=ConvertOptions.smooth)
    ap.add_argument("--end", type=int, default=None, help="render frames [0, END) only (default: all)")
    ap.add_argument("--blend", default=ConvertOptions.blend, choices=BLEND_MODES.names())
    ap.add_argument("--only", choices=["follows", "canonical"], default=None, help="one network only")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    setup_logging(False)
    with tempfile.TemporaryDirectory(prefix="smoothing_effect_") as tmp:
        ws = Path(tmp) / "ws"
        shutil.copytree(args.workspace, ws, ignore=shutil.ignore_patterns("model", "report", "*.mp4", "preview"))
        meta = Workspace(ws)
        try:
            dst = meta.set_meta("dst")
            assert dst is not None, "the workspace has no dst set"
            face_type = dst.extract.face_type
        finally:
            meta.close()
        save_model(ws / "model", TransformModel(TransformNet(128, width=4)), {"face_type": face_type,
                                                                             "iteration": 0})
        first: list[np.ndarray] = []

        def canonical(crops: list[np.ndarray]) -> list[np.ndarray]:
            if crops and not first:
                first.append(crops[0].copy())
            return [first[0] for _ in crops]

        networks = {"follows": lambda crops: [c.copy() for c in crops], "canonical": canonical}
        results = {}
        for name, net in networks.items():
            if args.only and name != args.only:
                continue
            row = {}
            for smooth in (0.0, args.smooth):
                first.clear()
                out = Path(tmp) / f"{name}_{smooth:g}.mp4"
                _render(ws, out, smooth, args.end, args.blend, net)
                row[smooth], reference = _jitter(ws, out)
            results[name] = {"smooth_0": row[0.0], f"smooth_{args.smooth:g}": row[args.smooth],
                             "ratio": row[args.smooth] / row[0.0], "dst": reference}
    print(f"\n{'network':10s} {'--smooth 0':>11s} {f'--smooth {args.smooth:g}':>11s} {'ratio':>7s} {'dst':>7s}")
    for name, r in results.items():
        smoothed = r[f"smooth_{args.smooth:g}"]
        print(f"{name:10s} {r['smooth_0']:11.4f} {smoothed:11.4f} {r['ratio']:7.2f} {r['dst']:7.4f}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
