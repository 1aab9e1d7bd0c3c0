"""Where convert's and extract's time goes, step by step, beside a plain ffmpeg transcode of the same clip.

Measured in one run on this machine (issue 31):
- the baseline: ffmpeg decodes the clip and re-encodes it with libx264 (crf 18, medium,
  what convert writes), as ``benchmarks.convert_speed`` times it;
- extract: ``main.py extract`` as a user runs it (process start and model loads
  included), and an in-process run whose steps are recorded (``pipeline.core.profile``);
- convert, for the default model and each model type (transform, df, liae; untrained
  models of the default size, since speed does not depend on the weights, saved with what
  train stores beside them, unless ``--workspace`` gives a trained default model), on a
  workspace holding the src set too (``--src-video``), so the steps that read it (the src
  person's part colours) run as in a user's convert:
  ``main.py convert`` as a user runs it with every default step on, and an in-process run
  whose steps are recorded.

Each table gives, per frame, the milliseconds of each step summed over threads (for decode
and encode: the ffmpeg processes' CPU time plus our threads' waits on their pipes) and as
wall time (the time at least one thread was in the step), slowest step first. "start-up"
is the process's wall time less its own frame loop (from its summary line): imports, model
load, int8 calibration (or the ranges train stored), planning. The ratio to the transcode is
what issue 31 sets targets on (convert <= 3.0, extract <= 2.5).

Usage: python -m benchmarks.convert_profile [--workspace TRAINED_WS] [--models transform df liae]
       [--repeat 1] [--json OUT]
       python -m benchmarks.convert_profile --workspace TRAINED_WS --pairs 8   (the spread of the ratio)
"""
from __future__ import annotations

import argparse
import json
import re
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

from benchmarks.convert_speed import DEFAULT_VIDEO, convert_run, transcode_seconds
from benchmarks.extract_speed import extract_seconds

#: The model types profiled, and how an untrained one of the default size is made.
MODEL_TYPES = ("transform", "df", "liae")


def untrained_model(kind: str, model_dir: Path) -> None:
    """An untrained model of ``kind`` at the size train makes by default on a CPU, saved in ``model_dir`` (a
    workspace's model folder) with what train stores beside the weights (the int8 ranges of a transform model
    on that workspace's dst faces), as a model trained by this version is."""
    from pipeline.models.interface import FaceModel
    from pipeline.models.store import save_model
    model: FaceModel
    if kind == "transform":
        from pipeline.models.transform import TransformModel
        from pipeline.models.transform_net import TransformNet
        from pipeline.models.transform_options import CPU_WIDTH
        model = TransformModel(TransformNet(128, CPU_WIDTH))
    else:
        from pipeline.models.autoencoder import DFModel, LIAEModel
        from pipeline.models.autoencoder_options import PRESETS, AutoencoderOptions
        cls = DFModel if kind == "df" else LIAEModel
        model = cls(cls.net_class(AutoencoderOptions().resolution, *PRESETS["cpu"]))
    if model_dir.exists():
        shutil.rmtree(model_dir)
    save_model(model_dir, model, {"face_type": "full", "iteration": 0})
    from pipeline.models.calibration import calibration_crops
    from pipeline.workspace.store import Workspace
    with Workspace(model_dir.parent) as ws:
        model.store_calibration(model_dir, calibration_crops(ws, ws.faces_as_edited("dst"), model.resolution))


def profiled_extract(video: Path, ws: Path) -> tuple[float, dict, dict]:
    """(loop seconds, step seconds summed, step seconds wall) of an in-process extract into ``ws``."""
    from extract.options import ExtractOptions
    from extract.runner import run_extract
    summary = run_extract(ExtractOptions(input=video, workspace=ws))
    return summary.seconds, summary.timings, summary.wall


def profiled_convert(ws: Path, out: Path) -> tuple[float, dict, dict]:
    """(frame-loop seconds, step seconds summed, step seconds wall) of an in-process convert, defaults on."""
    from convert.options import ConvertOptions
    from convert.runner import run_convert
    summary = run_convert(ConvertOptions(workspace=ws, output=out))
    return summary.seconds, summary.timings, summary.wall


def _extract_src(video: Path, ws: Path) -> None:
    """The src set of ``ws`` from ``video`` (in-process, not timed): convert's part colours read it."""
    from extract.options import ExtractOptions
    from extract.runner import run_extract
    run_extract(ExtractOptions(input=video, workspace=ws, set_name="src"))


def loop_seconds(line: str) -> float:
    """The frame loop's seconds from a stage's summary line ('..., 12.3 s (16.2 fps)')."""
    found = re.findall(r"([\d.]+) s \(", line)
    if not found:
        raise SystemExit(f"no time in the summary line: {line!r}")
    return float(found[-1])


def table(title: str, columns: dict[str, dict], frames: int, transcode: float) -> str:
    """One table: a row per step (slowest first by the first column's sum), per column sum and wall ms/frame,
    then the loop, start-up, the process's wall time and its ratio to the transcode."""
    first = next(iter(columns.values()))
    steps = sorted({s for c in columns.values() for s in c["sum"]}, key=lambda s: -first["sum"].get(s, 0.0))
    width = 15
    head = f"{'':24s}" + "".join(f"{name:>{width}s}" for name in columns)
    sub = f"{'ms per frame':24s}" + "".join(f"{'sum':>7s} {'wall':>7s}" for _ in columns)
    lines = [title, head, sub]

    def ms(seconds: float | None) -> str:
        return f"{'-':>7s}" if seconds is None else f"{1000.0 * seconds / frames:7.1f}"

    for step in steps:
        lines.append(f"{step:24s}" + "".join(f"{ms(c['sum'].get(step))} {ms(c['wall'].get(step))}"
                                           for c in columns.values()))
    lines.append(f"{'frame loop (wall)':24s}" + "".join(f"{'':7s} {ms(c['loop'])}" for c in columns.values()))
    lines.append(f"{'start-up (process-loop)':24s}" + "".join(f"{'':7s} {ms(c['startup'])}"
                                                             for c in columns.values()))
    lines.append(f"{'process (main.py)':24s}" + "".join(f"{'':7s} {ms(c['process'])}" for c in columns.values()))
    lines.append(f"{'transcode (ffmpeg)':24s}" + "".join(f"{'':7s} {ms(transcode)}" for _ in columns))
    lines.append(f"{'ratio to transcode':24s}" + "".join(f"{'':7s} {c['process'] / transcode:7.2f}"
                                                        for c in columns.values()))
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--video", type=Path, default=DEFAULT_VIDEO)
    ap.add_argument("--src-video", type=Path, default=DEFAULT_VIDEO.with_name("WDA_AlexandriaOcasioCortez_000.mp4"),
                    help="the src person's clip, extracted into the profiled workspace (not timed)")
    ap.add_argument("--workspace", type=Path, default=None,
                    help="a workspace with this clip as dst and a trained model: its model is the default column "
                         "(the workspace is copied, never written)")
    ap.add_argument("--models", nargs="*", default=list(MODEL_TYPES), choices=MODEL_TYPES,
                    help="untrained model types to profile beside the default")
    ap.add_argument("--repeat", type=int, default=1, help="best of N for each process timing")
    ap.add_argument("--no-extract", action="store_true", help="skip extract's process timing (its profile stays)")
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument("--pairs", type=int, default=0,
                    help="only N alternating (transcode, convert of --workspace) pairs: each pair's ratio and the "
                         "median (how far one machine's runs spread)")
    args = ap.parse_args()
    if args.pairs:
        if args.workspace is None:
            raise SystemExit("--pairs needs --workspace (a workspace with this clip as dst and a trained model)")
        _pairs(args.video, args.workspace, args.pairs)
        return
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        transcode = min(transcode_seconds(args.video, tmp / "t.mp4", 18, "medium") for _ in range(args.repeat))
        ws = tmp / "ws"
        started = time.perf_counter()
        loop, summed, wall = profiled_extract(args.video, ws)
        in_process = time.perf_counter() - started
        frames = json.loads((ws / "workspace.json").read_text())["sets"]["dst"]["video"]["frames"]
        _extract_src(args.src_video, ws)
        timed = [(in_process, f"{loop} s (")] if args.no_extract else [extract_seconds(args.video, tmp / "x")
                                                                       for _ in range(args.repeat)]
        process, line = min(timed)
        extract = {"extract": {"sum": summed, "wall": wall, "loop": loop, "process": process,
                               "startup": process - loop_seconds(line)}}
        columns: dict[str, dict] = {}
        runs: list[tuple[str, Path]] = []
        if args.workspace is not None:
            trained = tmp / "trained"
            shutil.copytree(args.workspace, trained, ignore=shutil.ignore_patterns("result.mp4", "report", "preview"))
            runs.append((f"default ({json.loads((trained / 'model' / 'options.json').read_text())['model_type']}, "
                         "trained)", trained))
        for kind in args.models:
            untrained_model(kind, ws / "model")
            runs.append((kind if args.workspace else ("transform (default)" if kind == "transform" else kind), ws))
            _profile(columns, runs[-1], tmp, args.repeat)
        if args.workspace is not None:
            _profile(columns, runs[0], tmp, args.repeat)
            columns = {runs[0][0]: columns.pop(runs[0][0]), **columns}
    print(f"clip: {args.video.name}, {frames} frames; transcode (ffmpeg decode + libx264 crf 18 medium) "
          f"{transcode:.2f} s = {1000 * transcode / frames:.1f} ms/frame")
    print(table("extract (defaults), slowest step first", extract, frames, transcode))
    print(f"extract / transcode: {process:.2f} s / {transcode:.2f} s = {process / transcode:.2f} (target <= 2.5)")
    print()
    print(table("convert (every default step on), slowest step first", columns, frames, transcode))
    for name, c in columns.items():
        print(f"convert {name} / transcode: {c['process']:.2f} s / {transcode:.2f} s = "
              f"{c['process'] / transcode:.2f} (target <= 3.0)")
    if args.json:
        ratios = [{"name": "extract / transcode", "value": process, "baseline": transcode, "unit": "s",
                   "ratio": process / transcode, "target": 2.5}]
        ratios += [{"name": f"convert {name} / transcode", "value": c["process"], "baseline": transcode,
                    "unit": "s", "ratio": c["process"] / transcode, "target": 3.0} for name, c in columns.items()]
        args.json.write_text(json.dumps({"frames": frames, "transcode_s": transcode, "extract": extract,
                                         "convert": columns, "ratios": ratios}, indent=2))


def _pairs(video: Path, workspace: Path, count: int) -> None:
    """``count`` alternating transcode / convert timings of ``workspace`` (copied, never written), each pair's ratio."""
    ratios = []
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        ws = tmp / "ws"
        shutil.copytree(workspace, ws, ignore=shutil.ignore_patterns("*.mp4", "report", "preview"))
        for i in range(count):
            transcode = transcode_seconds(video, tmp / "t.mp4", 18, "medium")
            convert = convert_run(ws, tmp / "c.mp4")[0]
            ratios.append(convert / transcode)
            print(f"pair {i + 1}: transcode {transcode:.2f} s, convert {convert:.2f} s, ratio {ratios[-1]:.2f}")
    print(f"convert / transcode over {count} pairs: median {float(np.median(ratios)):.2f}, "
          f"{min(ratios):.2f}-{max(ratios):.2f} (target <= 3.0)")


def _profile(columns: dict[str, dict], run: tuple[str, Path], tmp: Path, repeat: int) -> None:
    """Time ``main.py convert`` on the run's workspace (best of ``repeat``), then profile it in-process."""
    name, ws = run
    process, _, line = min(convert_run(ws, tmp / "c.mp4") for _ in range(repeat))
    loop, summed, wall = profiled_convert(ws, tmp / "p.mp4")
    columns[name] = {"sum": summed, "wall": wall, "loop": loop, "process": process,
                     "startup": process - loop_seconds(line)}


if __name__ == "__main__":
    main()
