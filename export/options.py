"""Options of ``main.py export``, each declared once."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from pipeline.core.options import option

#: The model file's name inside the workspace when --output is not given (DeepFaceLab names its export
#: ``model.dfm`` too).
DEFAULT_NAME = "model.dfm"
#: Opsets offered. 11 is the first whose Resize has the half-pixel sampling the networks' bilinear
#: upsampling needs; 19 is the newest that the onnxruntime bundled with DeepFaceLive (1.15) reads.
OPSET_LOW, OPSET_HIGH = 11, 19


@dataclass
class ExportOptions:
    workspace: Path = option(Path("workspace"), flags=("-w",), help="workspace whose trained model (model/) to export")
    output: Path | None = option(None, flags=("-o",), metavar="FILE", default_text=f"WORKSPACE/{DEFAULT_NAME}",
                                 help="file to write: .dfm (DeepFaceLive's name for it) or .onnx (the same bytes); "
                                      "its folder must exist")
    opset: int = option(12, low=OPSET_LOW, high=OPSET_HIGH, metavar="N",
                        help="ONNX opset of the file (12 is what DeepFaceLab's own .dfm export writes)")
    overwrite: bool = option(False, action="store_true", help="replace --output when it exists")
