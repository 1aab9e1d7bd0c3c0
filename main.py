"""Command line of the face-replacement tool. Parsing only; every stage lives in its package."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from pipeline.core.errors import UserError


class _Formatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    def _get_help_string(self, action: argparse.Action) -> str | None:
        # an option whose help already says its default (in words) would read "(default: None)" too
        if action.help and "default" in action.help:
            return action.help
        return super()._get_help_string(action)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="main.py", formatter_class=_Formatter,
        description="Video face replacement in stages that share a workspace folder:\n"
                    "  extract (dst video, src photos) -> train -> convert -> evaluate.\n"
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

    t = sub.add_parser("train", formatter_class=_Formatter,
                       help="learn the transformation network dst face -> same face with the src identity",
                       description="Korshunova et al.'s feed-forward face-swap network: content = dst faces "
                                   "(pose, expression, lighting), style = src faces (identity). Resumes from "
                                   "workspace/model/ when run again; Ctrl-C saves a checkpoint. Multi-GPU: "
                                   "torchrun --nproc_per_node N main.py train ...")
    t.add_argument("--workspace", "-w", type=Path, default=Path("workspace"), help="workspace folder")
    t.add_argument("--resolution", type=int, default=128, choices=[128, 256],
                   help="network resolution; 256 grows from the workspace's trained 128 model (only the "
                        "new branch trains)")
    t.add_argument("--iterations", type=int, default=10000, help="total iterations (a resumed run continues "
                                                                  "up to this number)")
    t.add_argument("--batch-size", type=int, default=16, help="faces per iteration")
    t.add_argument("--lr", type=float, default=1e-3, help="Adam learning rate at the start")
    t.add_argument("--lr-end", type=float, default=1e-4, help="learning rate at the end (exponential decay)")
    t.add_argument("--alpha", type=float, default=None,
                   help="style weight, raised from 0 over the first half of training (default 20 at 128, "
                        "80 at 256)")
    t.add_argument("--alpha-ramp", type=float, default=0.5,
                   help="fraction of the iterations over which the style weight rises from 0 (0 = constant)")
    t.add_argument("--beta", type=float, default=20.0, help="light weight: keeps the dst face's low-frequency "
                                                            "shading")
    t.add_argument("--gamma", type=float, default=0.3, help="total-variation weight")
    t.add_argument("--identity-weight", type=float, default=1.0,
                   help="weight of the identity loss (distance of the output's face descriptor, on randomly "
                        "degraded copies, to the src identity); 0 = off")
    t.add_argument("--features", default="dlib", choices=["dlib", "vgg19"],
                   help="loss network: dlib = face-recognition ResNet (offline), vgg19 = ImageNet VGG19 as in "
                        "the paper (weights downloaded once)")
    t.add_argument("--content-layers", nargs="+", default=None, metavar="LAYER",
                   help="content layers (default: level2 for dlib, relu4_2 for vgg19)")
    t.add_argument("--style-layers", nargs="+", default=None, metavar="LAYER",
                   help="style layers (default: level1 level2 for dlib, relu3_1 relu4_1 for vgg19)")
    t.add_argument("--patch", type=int, default=1, help="style patch size k (odd)")
    t.add_argument("--n-best", type=int, default=16, help="style faces per dst face, by closest landmarks")
    t.add_argument("--width", type=int, default=32, help="channels per branch of the network")
    t.add_argument("--no-skip", dest="skip", action="store_false",
                   help="the paper's plain output instead of input + learned residual")
    t.add_argument("--content-extra", type=Path, nargs="*", default=[], metavar="WORKSPACE",
                   help="more content faces: the dst faces of other workspaces")
    t.add_argument("--seed", type=int, default=0, help="random seed (sampling, degradations, initial weights)")
    t.add_argument("--save-every", type=int, default=500, help="checkpoint every N iterations")
    t.add_argument("--preview-every", type=int, default=250, help="refresh model/preview.jpg every N iterations")
    t.add_argument("--stop-at", type=int, default=None, metavar="N",
                   help="stop after iteration N (for sessions in chunks); train again to continue")
    t.add_argument("--max-minutes", type=float, default=None,
                   help="stop after this much wall time (checkpoint saved); train again to continue")
    t.add_argument("--device", default="auto", help="torch device: auto (CUDA when present), cpu, cuda")
    t.add_argument("--fresh", action="store_true",
                   help="start a new model; an existing one is moved aside to model-old-<time>, not deleted")

    c = sub.add_parser("convert", formatter_class=_Formatter,
                       help="render the finished video: every dst face replaced, blended, audio kept",
                       description="Replace every indexed dst face with the trained network's output: landmarks "
                                   "smoothed over time per face track, colour matched to the dst face, Poisson "
                                   "blended, encoded to H.264 with the dst audio copied. Faces the artist deleted "
                                   "and frames without a face pass through unchanged; hand-painted masks are used "
                                   "as painted.")
    c.add_argument("--workspace", "-w", type=Path, default=Path("workspace"), help="workspace folder")
    c.add_argument("--input", "-i", type=Path, default=None,
                   help="the dst video, if it moved since extract (default: the path extract recorded)")
    c.add_argument("--output", "-o", type=Path, default=None,
                   help="video to write (.mp4/.mov/.mkv; default: WORKSPACE/result.mp4); replaced only when "
                        "the new one is complete")
    c.add_argument("--smooth", type=float, default=2.0, metavar="SIGMA",
                   help="temporal landmark smoothing per face track: Gaussian width in frames of a local "
                        "quadratic fit (follows fast motion without lag); 0 = off. Never crosses a cut or "
                        "a gap in the track")
    c.add_argument("--color", default="rct", choices=["rct", "lct", "mkl", "idt", "sot", "hist", "none"],
                   help="colour transfer of the generated face toward the dst face, inside the mask: "
                        "rct = Reinhard (Lab mean/std), lct = linear (mean, covariance), mkl = Monge-"
                        "Kantorovich, idt = iterative distribution transfer, sot = sliced optimal transport, "
                        "hist = histogram matching")
    c.add_argument("--blend", default="poisson", choices=["poisson", "alpha"],
                   help="poisson = seamless cloning (colour at the mask edge taken from the frame), "
                        "alpha = feathered mask only")
    c.add_argument("--mask-erode", type=int, default=4, metavar="PX",
                   help="shrink the mask by this many pixels at the aligned size (negative grows it)")
    c.add_argument("--mask-blur", type=int, default=8, metavar="PX",
                   help="feather width of the mask edge in pixels at the aligned size (0 = hard edge)")
    c.add_argument("--sharpen", type=float, default=0.0, metavar="AMOUNT",
                   help="unsharp-mask amount applied to the generated face (0 = off, 0.5 = moderate)")
    c.add_argument("--crf", type=int, default=18, help="H.264 quality (lower = better and larger; 18 is "
                                                       "visually lossless)")
    c.add_argument("--preset", default="medium", help="x264 speed preset (ultrafast ... veryslow)")
    c.add_argument("--start", type=int, default=0, metavar="FRAME", help="first frame to render")
    c.add_argument("--end", type=int, default=None, metavar="FRAME",
                   help="render up to this frame, not including it (default: the end of the video)")
    c.add_argument("--preview", type=int, default=0, metavar="N",
                   help="write N evenly spaced before|after stills to WORKSPACE/preview/ instead of the video "
                        "(fast, for tuning options)")
    c.add_argument("--batch-size", type=int, default=8, help="faces per network call")
    c.add_argument("--precision", default="auto", choices=["auto", "float", "int8"],
                   help="network arithmetic: int8 is ~8x faster on the CPU (mean change ~1.9 grey levels); "
                        "auto = int8 on the CPU for 128 models, float on CUDA")
    c.add_argument("--device", default="auto", help="torch device: auto (CUDA when present), cpu, cuda")
    c.add_argument("--workers", type=int, default=None,
                   help="threads for cropping and blending (default: number of CPU cores)")

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


def _train(args: argparse.Namespace) -> int:
    from train.trainer import TrainOptions, run_train
    opts = TrainOptions(
        workspace=args.workspace, resolution=args.resolution, iterations=args.iterations,
        batch_size=args.batch_size, lr=args.lr, lr_end=args.lr_end, alpha=args.alpha,
        alpha_ramp=args.alpha_ramp, beta=args.beta,
        gamma=args.gamma, identity_weight=args.identity_weight, features=args.features,
        content_layers=args.content_layers, style_layers=args.style_layers, patch=args.patch,
        n_best=args.n_best, width=args.width, skip=args.skip, seed=args.seed, save_every=args.save_every,
        preview_every=args.preview_every, stop_at=args.stop_at, max_minutes=args.max_minutes,
        content_extra=args.content_extra,
        device=args.device, fresh=args.fresh)
    summary = run_train(opts)
    import os
    if os.environ.get("RANK", "0") == "0":
        print(summary.line())
    return 0


def _convert(args: argparse.Namespace) -> int:
    from convert.runner import ConvertOptions, run_convert
    opts = ConvertOptions(workspace=args.workspace, input=args.input, output=args.output, smooth=args.smooth,
                          color=args.color, blend=args.blend, mask_erode=args.mask_erode,
                          mask_blur=args.mask_blur, sharpen=args.sharpen, crf=args.crf, preset=args.preset,
                          start=args.start, end=args.end, preview=args.preview, batch_size=args.batch_size,
                          device=args.device, precision=args.precision)
    if args.workers:
        opts.workers = args.workers
    print(run_convert(opts).line())
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
    from pipeline.workspace.store import Workspace
    from pipeline.workspace.info import format_info, summarise
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
    from pipeline.core.logs import setup_logging
    setup_logging(args.verbose)
    try:
        return {"extract": _extract, "train": _train, "convert": _convert, "evaluate": _evaluate, "info": _info}[args.command](args)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        if args.command == "convert":
            print("error: interrupted; --output was left as it was (run the command again to render)",
                  file=sys.stderr)
        else:
            print("error: interrupted; run the same command again to resume", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
