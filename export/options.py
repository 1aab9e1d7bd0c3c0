"""Options of ``main.py export``, each declared once."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from pipeline.core.options import option
from pipeline.workspace.options import WorkspaceOptions

#: The model file's name inside the workspace when --output is not given (DeepFaceLab names its export
#: ``model.dfm`` too).
DEFAULT_NAME = "model.dfm"
#: Opsets offered. 11 is the first whose Resize has the half-pixel sampling the networks' bilinear
#: upsampling needs; 18 is the newest whose files load in the onnxruntime bundled with DeepFaceLive
#: (1.15.1): at 19 it has no AveragePool or Reshape kernel, so such a file fails to load there.
OPSET_LOW, OPSET_HIGH = 11, 18


@dataclass
class ExportOptions(WorkspaceOptions):
    output: Path | None = option(None, flags=("-o",), metavar="FILE", default_text=f"WORKSPACE/{DEFAULT_NAME}",
                                 help="file to write: .dfm (DeepFaceLive's name for it) or .onnx (the same bytes); "
                                      "its folder must exist")
    opset: int = option(12, low=OPSET_LOW, high=OPSET_HIGH, metavar="N",
                        help="ONNX opset of the file (12 is what DeepFaceLab's own .dfm export writes; 19 and newer "
                             "do not load in the onnxruntime 1.15 that DeepFaceLive bundles)")
    overwrite: bool = option(False, action="store_true", help="replace --output when it exists")
