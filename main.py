"""Command line of the face-replacement tool. Parsing only; every stage lives in its package."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from pipeline.errors import UserError


class _Formatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    pass


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="main.py", formatter_class=_Formatter,
        description="Video face replacement in stages that share a workspace folder:\n"
                    "  extract (dst video, src photos) -> train -> convert.\n"
                    "Between stages you may delete aligned faces and repaint masks; "
                    "the pipeline honours that.")
    p.add_argument("-v", "--verbose", action="store_true", help="more log output")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    e = sub.add_parser("extract", formatter_class=_Formatter,
                       help="detect, align and mask faces of a video or photos into the workspace",
                       description="Detect faces (68 landmarks), align them and write masks into the "
                                   "workspace. Resumable: run it again after an interruption.")
    e.add_argument("--input", "-i", required=True, type=Path,
                   help="a video file, a folder of images, or one image")
    e.add_argument("--set", dest="set_name", choices=["dst", "src"], default=None,
                   help="which face set to fill (default: dst for a video, src for images)")
    e.add_argument("--workspace", "-w", type=Path, default=Path("workspace"), help="workspace folder")
    e.add_argument("--detector", default="dlib", choices=["dlib", "dlib-cnn"],
                   help="face detector: dlib = HOG (fast, frontal), dlib-cnn = MMOD CNN (slow on CPU, "
                        "finds turned faces)")
    e.add_argument("--face-type", default="full", choices=["full", "whole", "head"],
                   help="how much of the head the aligned crop shows")
    e.add_argument("--size", type=int, default=256, help="aligned face size in pixels")
    e.add_argument("--image-format", default="png", choices=["png", "jpg"],
                   help="aligned image format (masks are always png)")
    e.add_argument("--upsample", default="auto", choices=["auto", "0", "1", "2"],
                   help="detector upsampling for small faces; auto = 0, retried at 1 on images "
                        "with no face found")
    e.add_argument("--min-face", type=int, default=None, metavar="PX",
                   help="smallest face searched in every frame, in pixels; smaller faces are still "
                        "searched in frames where no larger one is found (default: a quarter of the "
                        "frame's shorter side for video, 80 = everything for photos)")
    e.add_argument("--bridge-gap", type=int, default=5,
                   help="longest run of frames where a lost face is bridged from its neighbours "
                        "(0 = off)")
    e.add_argument("--workers", type=int, default=None,
                   help="detection threads (default: number of CPU cores)")
    e.add_argument("--target-face", type=Path, default=None, metavar="PHOTO",
                   help="keep only faces of the person in this photo; other faces are indexed as "
                        "dropped (reason: identity) and get no aligned file")
    e.add_argument("--target-threshold", type=float, default=0.6,
                   help="largest identity distance to the target face that still counts as the same "
                        "person (dlib's threshold)")
    e.add_argument("--device", default="auto",
                   help="torch device for the identity network: auto (CUDA when present), cpu, cuda")
    e.add_argument("--force", action="store_true",
                   help="re-extract every frame and restore deleted faces; hand-edited masks are "
                        "still never overwritten")

    v = sub.add_parser("evaluate", formatter_class=_Formatter,
                       help="measure a converted video against the original: report.json + index.html",
                       description="Per frame, for the swapped face matched to the original face: identity "
                                   "distance to the src person and to the original, expression and pose "
                                   "error, SSIM; jitter per face track and the seam's colour step for "
                                   "output and original side by side; coverage and audio. Writes "
                                   "report/report.json and report/index.html into the workspace.")
    v.add_argument("--workspace", "-w", type=Path, default=Path("workspace"), help="workspace folder")
    v.add_argument("--video", type=Path, default=None,
                   help="video to evaluate (default: the workspace's result.mp4)")
    v.add_argument("--reference", type=Path, default=None,
                   help="original video (default: the dst input recorded by extract)")
    v.add_argument("--device", default="auto", help="torch device for the identity network: auto, cpu, cuda")
    v.add_argument("--samples", type=int, default=4, help="evenly spaced sample frames shown on the page "
                                                           "(the worst frames are added)")

    i = sub.add_parser("info", formatter_class=_Formatter, help="summarise what the workspace holds",
                       description="Per set: input, frames, faces, dropped faces, masks by origin, "
                                   "frames without a face.")
    i.add_argument("--workspace", "-w", type=Path, default=Path("workspace"), help="workspace folder")
    i.add_argument("--json", action="store_true", help="print stable JSON for other tools")
    return p


def _extract(args: argparse.Namespace) -> int:
    from extract.runner import ExtractOptions, run_extract
    opts = ExtractOptions(input=args.input, workspace=args.workspace, set_name=args.set_name,
                          detector=args.detector, face_type=args.face_type, size=args.size,
                          image_format=args.image_format, upsample=args.upsample, min_face=args.min_face,
                          bridge_gap=args.bridge_gap, force=args.force, target_face=args.target_face,
                          target_threshold=args.target_threshold, device=args.device)
    if args.workers:
        opts.workers = args.workers
    print(run_extract(opts).line())
    return 0


def _evaluate(args: argparse.Namespace) -> int:
    from evaluate.html_report import format_table
    from evaluate.runner import EvaluateOptions, run_evaluate
    report, folder = run_evaluate(EvaluateOptions(workspace=args.workspace, video=args.video,
                                                  reference=args.reference, device=args.device,
                                                  samples=args.samples))
    print(format_table(report))
    for note in report["notes"]:
        print(f"note: {note}")
    print(f"report: {folder / 'index.html'}")
    return 0


def _info(args: argparse.Namespace) -> int:
    from pipeline.workspace import Workspace
    from pipeline.workspace_info import format_info, summarise
    if not (args.workspace / "workspace.json").exists():
        raise UserError(f"{args.workspace} is not a workspace yet (no workspace.json); run "
                        f"'python main.py extract --input VIDEO' first")
    ws = Workspace(args.workspace)
    try:
        summary = summarise(ws)
    finally:
        ws.close()
    print(json.dumps(summary, indent=2) if args.json else format_info(summary))
    return 0


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    from pipeline.logs import setup_logging
    setup_logging(args.verbose)
    try:
        return {"extract": _extract, "evaluate": _evaluate, "info": _info}[args.command](args)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("error: interrupted; run the same command again to resume", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
