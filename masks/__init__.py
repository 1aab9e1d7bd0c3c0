"""``main.py masks``: learned masks (training.py, apply.py) and masks in and out for compositing tools."""
from __future__ import annotations

import argparse

from masks.options import MaskApplyOptions, MaskExportOptions, MaskImportOptions, MaskTrainOptions
from pipeline.core.command import Command
from pipeline.core.options import from_namespace


def _train(args: argparse.Namespace) -> int:
    opts = from_namespace(MaskTrainOptions, args)     # checked before the stage (and torch) loads
    from masks.training import run_mask_train
    print(run_mask_train(opts).line())
    return 0


def _apply(args: argparse.Namespace) -> int:
    opts = from_namespace(MaskApplyOptions, args)
    from masks.apply import run_apply
    print(run_apply(opts).line())
    return 0


def _export(args: argparse.Namespace) -> int:
    opts = from_namespace(MaskExportOptions, args)
    from masks.exchange import run_export
    print(run_export(opts).line())
    return 0


def _import(args: argparse.Namespace) -> int:
    opts = from_namespace(MaskImportOptions, args)
    from masks.exchange import run_import
    print(run_import(opts).line())
    return 0


COMMAND = Command(
    "masks", help="learned masks: train, apply, export, import",
    description="Masks that know about hands, microphones, glasses and hair, learned from the masks you paint "
                "(DeepFaceLab's XSeg idea): paint some masks, 'masks train', 'masks apply'; 'masks export' and "
                "'masks import' move masks to and from compositing tools.",
    subcommands_help="what to do with the masks",
    subcommands=(
        Command("train", help="learn a face segmenter from the hand-painted masks (both sets)",
                description="Train a small U-Net on every face whose mask was painted by hand (or imported), with "
                            "strong augmentation and synthetic occluders (hands, bars, hair, glasses, pieces of other "
                            "faces) pasted over the faces, so a few dozen masks teach it the whole shot. Model, "
                            "checkpoints, preview.jpg (face | painted mask | prediction | an unpainted face | its "
                            "prediction) and log.jsonl in workspace/mask_model/. Resumes when run again; Ctrl-C saves "
                            "a checkpoint.",
                options=(MaskTrainOptions,), run=_train),
        Command("apply", help="write the trained segmenter's mask for every face without a hand-painted one",
                description="Replace every automatic or older learned mask with the mask model's prediction (origin "
                            "'learned'). Hand-painted masks are never touched; run again after painting more masks "
                            "and retraining. Train and convert use the learned masks as they use any mask.",
                options=(MaskApplyOptions,), run=_apply),
        Command("export", help="write a set's masks as PNG files for compositing tools",
                description="One matte per frame at full size (000123.png; white = face), or with --space aligned "
                            "each face's mask as stored. Reads the workspace only.",
                options=(MaskExportOptions,), run=_export),
        Command("import", help="bring edited masks back from a folder; changed ones count as hand-made",
                description="Reads frame mattes (000123.png) or aligned masks named as the faces, cuts mattes into "
                            "each face's crop, and writes them into the workspace. Mattes unchanged since export are "
                            "skipped.",
                options=(MaskImportOptions,), run=_import),
    ))
