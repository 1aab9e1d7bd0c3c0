"""``main.py export``: the trained model as a file other face-swap tools load (DeepFaceLive's ``.dfm``)."""
from __future__ import annotations

import argparse

from export.options import ExportOptions
from pipeline.core.command import Command
from pipeline.core.options import from_namespace


def _run(args: argparse.Namespace) -> int:
    opts = from_namespace(ExportOptions, args)
    from export.dfm import run_export
    print(run_export(opts).line())
    return 0


COMMAND = Command(
    "export", help="write the trained model as a DeepFaceLive .dfm (ONNX) file, for DeepFaceLive and FaceFusion",
    description="The dst -> src network as the ONNX file DeepFaceLive loads as a .dfm model and FaceFusion's deep "
                "swapper as a custom model: input in_face:0 (N, R, R, 3) BGR 0..1; outputs out_face_mask:0, "
                "out_celeb_face:0, out_celeb_face_mask:0. Checked in onnxruntime against PyTorch before it is "
                "written; the workspace is only read.",
    options=(ExportOptions,), run=_run)
