"""Convert wall time over a plain ffmpeg decode + libx264 re-encode (same clip, same crf).

Measured in one run on this machine:
- the baseline: ffmpeg decodes the dst clip and re-encodes it with libx264 at the same
  crf and preset convert uses, audio copied;
- ``main.py convert`` as a user runs it (process start, model load, int8 calibration
  included), in the default precision and with --precision float;
- where the time goes per frame (in-process run, per-stage times summed over threads);
- peak memory (max RSS of convert's own process, the network's process apart) rendering 50 and 200 frames.

The model is the workspace's when --workspace is given (it must hold the clip as dst
and a trained model); otherwise the clip is extracted into a temp workspace and an
untrained 128 model of --width is saved there: speed does not depend on the weights.

Usage: python -m benchmarks.convert_speed [--workspace W] [--width 16] [--repeat 2] [--json OUT]
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from pipeline.core.video import ffmpeg_exe
from pipeline.models.transform_options import CPU_WIDTH

ROOT = Path(__file__).resolve().parents[1]


DEFAULT_VIDEO = ROOT.parent / "shared" / "data" / "videos" / "WDA_KatieHill_000.mp4"


def transcode_seconds(video: Path, out: Path, crf: int, preset: str) -> float:
    start = time.perf_counter()
    subprocess.run([ffmpeg_exe(), "-v", "error", "-y", "-i", str(video), "-c:v", "libx264", "-preset", preset,
                    "-crf", str(crf), "-pix_fmt", "yuv420p", "-c:a", "copy", str(out)], check=True)
    return time.perf_counter() - start


#: Runs main.py in this process and reports its own peak RSS on exit (ffmpeg's processes
#: stream and are not counted: it is our process's growth that would hold a whole video; the
#: network's process, ``convert.network_process``, holds the model and one batch, and is not
#: counted either).
_WRAPPER = ("import resource, runpy, sys\n"
            "sys.argv = sys.argv[1:]\n"
            "try:\n"
            "    runpy.run_path(sys.argv[0], run_name='__main__')\n"
            "finally:\n"
            "    print(f'peak_rss_kib={resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}', file=sys.stderr)\n")


def convert_run(ws: Path, out: Path, *extra: str) -> tuple[float, int, str]:
    """Wall seconds, peak RSS (MiB) of the convert process, and its summary line."""
    start = time.perf_counter()
    res = subprocess.run([sys.executable, "-c", _WRAPPER, str(ROOT / "main.py"), "convert", "--workspace",
                          str(ws), "--output", str(out), *extra], capture_output=True, text=True)
    took = time.perf_counter() - start
    if res.returncode != 0:
        raise SystemExit(f"convert failed: {res.stderr.strip().splitlines()[-2:]}")
    return took, _peak_rss_mib(res.stderr), res.stdout.strip()


def _peak_rss_mib(stderr: str) -> int:
    for line in stderr.splitlines():
        if line.startswith("peak_rss_kib="):
            return int(line.split("=", 1)[1]) // 1024
    return -1


def make_workspace(video: Path, folder: Path, width: int) -> Path:
    from extract.options import ExtractOptions
    from extract.runner import run_extract
    from pipeline.models.store import save_model
    from pipeline.models.transform import TransformModel
    from pipeline.models.transform_net import TransformNet
    ws = folder / "ws"
    run_extract(ExtractOptions(input=video, workspace=ws))
    save_model(ws / "model", TransformModel(TransformNet(128, width)), {"face_type": "full", "iteration": 0})
    return ws


def breakdown(ws: Path, out: Path, frames: int) -> dict:
    """Per-frame milliseconds of each stage, from an in-process run (threads overlap them)."""
    from convert.options import ConvertOptions
    from convert.runner import run_convert
    summary = run_convert(ConvertOptions(workspace=ws, output=out))
    return {k: 1000.0 * v / frames for k, v in summary.timings.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--video", type=Path, default=DEFAULT_VIDEO)
    ap.add_argument("--workspace", type=Path, default=None, help="workspace with this clip as dst and a model")
    ap.add_argument("--width", type=int, default=CPU_WIDTH,
                    help=f"width of the untrained model when no workspace is given (default {CPU_WIDTH}: what train "
                         f"makes on a CPU)")
    ap.add_argument("--repeat", type=int, default=2, help="best of N for each timed run")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        ws = args.workspace or make_workspace(args.video, tmp, args.width)
        meta = json.loads((ws / "model" / "options.json").read_text())
        frames = json.loads((ws / "workspace.json").read_text())["sets"]["dst"]["video"]["frames"]
        transcode = min(transcode_seconds(args.video, tmp / "t.mp4", 18, "medium") for _ in range(args.repeat))
        runs = [convert_run(ws, tmp / "c.mp4") for _ in range(args.repeat)]
        best, peak_200, line = min(runs)
        float_best = min(convert_run(ws, tmp / "f.mp4", "--precision", "float")[0] for _ in range(args.repeat))
        plain = min(convert_run(ws, tmp / "p.mp4", "--detail", "0", "--chroma-smooth", "0")[0]
                    for _ in range(args.repeat))
        _, peak_50, _ = convert_run(ws, tmp / "c50.mp4", "--end", "50")
        stages = breakdown(ws, tmp / "b.mp4", frames)
    ratio = best / transcode
    print(f"clip: {args.video.name}, {frames} frames; model: resolution {meta['resolution']}, width {meta['width']}"
          f"{'' if args.workspace else ' (untrained, speed only)'}")
    print(f"transcode (ffmpeg decode + libx264 crf 18 medium): {transcode:.2f} s = "
          f"{1000 * transcode / frames:.1f} ms/frame")
    print(f"convert (default, int8 on CPU): {best:.2f} s = {1000 * best / frames:.1f} ms/frame; "
          f"ratio {ratio:.2f} (target <= 3.0)")
    print(f"convert without the realism steps (--detail 0 --chroma-smooth 0): {plain:.2f} s; "
          f"ratio {plain / transcode:.2f}")
    print(f"convert --precision float:      {float_best:.2f} s; ratio {float_best / transcode:.2f}")
    print("per frame, summed over threads: " + ", ".join(f"{k} {v:.1f} ms" for k, v in stages.items()))
    print(f"peak memory of the convert process: {peak_50} MiB for 50 frames, {peak_200} MiB for {frames} "
          f"frames ({100.0 * (peak_200 - peak_50) / max(peak_50, 1):+.1f}%)")
    print(line)
    if args.json:
        args.json.write_text(json.dumps({
            "frames": frames, "transcode_s": transcode, "convert_s": best, "convert_float_s": float_best,
            "stages_ms_per_frame": stages, "peak_rss_mib_50": peak_50, "peak_rss_mib_all": peak_200,
            "ratios": [{"name": "convert / transcode (int8)", "value": best, "baseline": transcode, "unit": "s",
                        "ratio": ratio, "target": 3.0},
                       {"name": "convert / transcode (int8, no detail or colour step)", "value": plain,
                        "baseline": transcode, "unit": "s", "ratio": plain / transcode, "target": None},
                       {"name": "convert / transcode (float)", "value": float_best, "baseline": transcode,
                        "unit": "s", "ratio": float_best / transcode, "target": None}]}, indent=2))


if __name__ == "__main__":
    main()
