"""Command line of the face-replacement tool. Parsing only; every stage lives in its package."""
from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable
from typing import Any

from pipeline.core.errors import UserError
from pipeline.core.options import add_arguments, from_namespace


def _extract(args: argparse.Namespace) -> int:
    from extract.options import ExtractOptions
    opts = from_namespace(ExtractOptions, args)     # checked before the stage (and torch) loads
    from extract.runner import run_extract
    print(run_extract(opts).line())
    return 0


def _train(args: argparse.Namespace) -> int:
    from pipeline.registries import MODEL_TYPES
    from train.options import TrainOptions
    opts = from_namespace(TrainOptions, args)
    opts.model_options = from_namespace(MODEL_TYPES.load(opts.model, "options"), args)
    from train.trainer import run_train
    summary = run_train(opts)
    if os.environ.get("RANK", "0") == "0":
        print(summary.line())
    return 0


def _convert(args: argparse.Namespace) -> int:
    from convert.options import ConvertOptions
    opts = from_namespace(ConvertOptions, args)
    from convert.runner import run_convert
    print(run_convert(opts).line())
    return 0


def _evaluate(args: argparse.Namespace) -> int:
    from evaluate.options import EvaluateOptions
    opts = from_namespace(EvaluateOptions, args)
    from evaluate.html_report import format_table
    from evaluate.runner import run_evaluate
    report, folder = run_evaluate(opts)
    print(format_table(report))
    for note in report["notes"]:
        print(f"note: {note}")
    print(f"report: {folder / 'index.html'}")
    return 0


def _info(args: argparse.Namespace) -> int:
    from pipeline.workspace.info import InfoOptions, format_info, run_info
    opts = from_namespace(InfoOptions, args)
    summary = run_info(opts)
    print(json.dumps(summary, indent=2) if opts.json else format_info(summary))
    return 0


def _models(args: argparse.Namespace) -> int:
    from pipeline.catalogue import catalogue, format_catalogue
    report = catalogue()
    print(json.dumps(report, indent=2) if args.json else format_catalogue(report))
    return 0


def _migrate(args: argparse.Namespace) -> int:
    from pipeline.workspace.info import MigrateOptions, run_migrate
    print(run_migrate(from_namespace(MigrateOptions, args)))
    return 0


def _masks(args: argparse.Namespace) -> int:
    action = args.masks_action
    opts = from_namespace(_mask_options(action), args)     # checked before the stage (and torch) loads
    if action == "train":
        from train.mask_trainer import run_mask_train
        print(run_mask_train(opts).line())
    elif action == "apply":
        from masks.apply import run_apply
        print(run_apply(opts).line())
    elif action == "export":
        from masks.exchange import run_export
        print(run_export(opts).line())
    else:
        from masks.exchange import run_import
        print(run_import(opts).line())
    return 0


def _mask_options(action: str) -> type:
    if action == "train":
        from train.options import MaskTrainOptions
        return MaskTrainOptions
    from masks import options
    return {"apply": options.MaskApplyOptions, "export": options.MaskExportOptions,
            "import": options.MaskImportOptions}[action]


MASK_ACTIONS: dict[str, tuple[str, str]] = {
    "train": ("learn a face segmenter from the hand-painted masks (both sets)",
              "Train a small U-Net on every face whose mask was painted by hand (or imported), with strong "
              "augmentation and synthetic occluders (hands, bars, hair, glasses, pieces of other faces) pasted over "
              "the faces, so a few dozen masks teach it the whole shot. Model, checkpoints, preview.jpg (face | "
              "painted mask | prediction | an unpainted face | its prediction) and log.jsonl in "
              "workspace/mask_model/. Resumes when run again; Ctrl-C saves a checkpoint."),
    "apply": ("write the trained segmenter's mask for every face without a hand-painted one",
              "Replace every automatic or older learned mask with the mask model's prediction (origin 'learned'). "
              "Hand-painted masks are never touched; run again after painting more masks and retraining. Train and "
              "convert use the learned masks as they use any mask."),
    "export": ("write a set's masks as PNG files for compositing tools",
               "One matte per frame at full size (000123.png; white = face), or with --space aligned each face's "
               "mask as stored. Reads the workspace only."),
    "import": ("bring edited masks back from a folder; changed ones count as hand-made",
               "Reads frame mattes (000123.png) or aligned masks named as the faces, cuts mattes into each face's "
               "crop, and writes them into the workspace. Mattes unchanged since export are skipped."),
}


def _studio(args: argparse.Namespace) -> int:
    from studio.options import StudioOptions
    opts = from_namespace(StudioOptions, args)
    from studio.server import run_studio
    print(run_studio(opts))
    return 0


def _export(args: argparse.Namespace) -> int:
    from export.options import ExportOptions
    opts = from_namespace(ExportOptions, args)
    from export.dfm import run_export
    print(run_export(opts).line())
    return 0


def _options_of(command: str) -> list[tuple[str | None, type]]:
    """(argument group title, option dataclass) of a command (imported only to build the parser)."""
    if command == "extract":
        from extract.options import ExtractOptions
        return [(None, ExtractOptions)]
    if command == "train":
        from pipeline.registries import MODEL_TYPES
        from train.options import TrainOptions
        return [(None, TrainOptions), *((f"options of --model {name}", MODEL_TYPES.load(name, "options"))
                                        for name in MODEL_TYPES.names())]
    if command == "convert":
        from convert.options import ConvertOptions
        return [(None, ConvertOptions)]
    if command == "evaluate":
        from evaluate.options import EvaluateOptions
        return [(None, EvaluateOptions)]
    if command == "info":
        from pipeline.workspace.info import InfoOptions
        return [(None, InfoOptions)]
    if command == "studio":
        from studio.options import StudioOptions
        return [(None, StudioOptions)]
    if command == "migrate":
        from pipeline.workspace.info import MigrateOptions
        return [(None, MigrateOptions)]
    if command == "export":
        from export.options import ExportOptions
        return [(None, ExportOptions)]
    return []


COMMANDS: dict[str, tuple[Callable[[argparse.Namespace], int], str, str]] = {
    "extract": (_extract, "detect, align and mask faces of a video or photos into the workspace",
                "Detect faces (68 landmarks), align them and write masks into the workspace. Resumable: run it "
                "again after an interruption."),
    "train": (_train, "learn the model: dst face -> the same face with the src identity",
              "Train the chosen model type (--model). The transformation network (Korshunova et al.): content = "
              "dst faces (pose, expression, lighting), style = src faces (identity). Resumes from workspace/model/ "
              "when run again; Ctrl-C saves a checkpoint. Multi-GPU: torchrun --nproc_per_node N main.py train ..."),
    "convert": (_convert, "render the finished video: every dst face replaced, blended, audio kept",
                "Replace every indexed dst face with the trained model's output: landmarks smoothed over time per "
                "face track, colour matched to the dst face, blended, encoded to H.264 with the dst audio copied. "
                "Faces the artist deleted and frames without a face pass through unchanged; hand-painted masks "
                "are used as painted."),
    "evaluate": (_evaluate, "measure a converted video against the original: report.json + index.html",
                 "Per frame, for the swapped face matched to the original face: identity distance to the src person "
                 "and to the original, expression and pose error, SSIM; jitter per face track and the seam's colour "
                 "step for output and original side by side; coverage and audio. Faces are found with the detector "
                 "and landmarker the dst set was extracted with. Writes report/report.json and report/index.html "
                 "into the workspace."),
    "info": (_info, "summarise what the workspace holds",
             "Per set: input, frames, faces, dropped faces, masks by origin, frames without a face, identities."),
    "models": (_models, "list every backend by kind, its weight files (checked) and terms, and package versions",
               "Every registered detector, landmarker, masker, feature network, colour transfer, blend mode and "
               "model type; for each weight file whether it is present, its size and checksum, and where to get a "
               "missing or damaged one; the installed versions of the packages the tool depends on, against the "
               "ranges it was tested with."),
    "masks": (_masks, "learned masks: train, apply, export, import",
              "Masks that know about hands, microphones, glasses and hair, learned from the masks you paint "
              "(DeepFaceLab's XSeg idea): paint some masks, 'masks train', 'masks apply'; 'masks export' and "
              "'masks import' move masks to and from compositing tools."),
    "studio": (_studio, "the artist's local page: faces, mask editor, carry-forward, convert preview",
               "Serve a local web page (127.0.0.1, a random token in the printed address) that shows the "
               "workspace's faces: sorted by frame and track, blur, yaw, pitch, mask origin or likeness to a chosen "
               "face, filtered by person and mask origin, each with its source frame; select many, delete and "
               "restore (the same as deleting the aligned files by hand). A mask editor (polygons, brush, undo, "
               "zoom, the mask model's prediction) whose saves are hand masks and never overwrite a mask changed "
               "elsewhere meanwhile; carrying a mask forward along a track; any frame rendered as convert would. "
               "Ctrl-C stops it."),
    "export": (_export, "write the trained model as a DeepFaceLive .dfm (ONNX) file, for DeepFaceLive and FaceFusion",
               "The dst -> src network as the ONNX file DeepFaceLive loads as a .dfm model and FaceFusion's deep "
               "swapper as a custom model: input in_face:0 (N, R, R, 3) BGR 0..1; outputs out_face_mask:0, "
               "out_celeb_face:0, out_celeb_face_mask:0. Checked in onnxruntime against PyTorch before it is "
               "written; the workspace is only read."),
    "migrate": (_migrate, "bring a workspace of an older schema to the current one",
                "Writers (extract, train) migrate on their own; this does it now. Both files are backed up first."),
}


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="main.py", formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Video face replacement in stages that share a workspace folder:\n"
                    "  extract (dst video, src photos) -> train -> convert -> evaluate.\n"
                    "Between stages you may delete aligned faces and repaint masks; "
                    "the pipeline honours that.")
    p.add_argument("-v", "--verbose", action="store_true", help="more log output")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (_, short, long) in COMMANDS.items():
        s = sub.add_parser(name, help=short, description=long)
        done: set[str] = set()
        for title, cls in _options_of(name):
            target: Any = s if title is None else s.add_argument_group(title)
            add_arguments(target, cls, skip=done)
            done |= set(cls.__dataclass_fields__)
        if name == "models":
            s.add_argument("--json", action="store_true", help="print stable JSON for other tools")
        if name == "masks":
            actions = s.add_subparsers(dest="masks_action", required=True, metavar="ACTION",
                                       help="what to do with the masks")
            for action, (short_a, long_a) in MASK_ACTIONS.items():
                add_arguments(actions.add_parser(action, help=short_a, description=long_a), _mask_options(action))
    return p


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    from pipeline.core.logs import setup_logging
    setup_logging(args.verbose)
    try:
        if args.command != "models":          # models shows the versions found, in range or not
            from pipeline.core.environment import check_environment
            check_environment()
        return COMMANDS[args.command][0](args)
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
