"""Options of ``main.py masks apply|export|import``, each declared once (``masks train``'s are in train/)."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from pipeline.core.options import option

SET_CHOICES = ("dst", "src", "both")


@dataclass
class MaskApplyOptions:
    workspace: Path = option(Path("workspace"), flags=("-w",), help="workspace folder")
    set_name: str = option("both", flag="--set", choices=SET_CHOICES,
                           help="which face set gets the learned masks")
    batch_size: int = option(16, low=1, high=1024, help="faces per network call")
    device: str = option("auto", help="torch device: auto (CUDA when present), cpu, cuda")


@dataclass
class MaskExportOptions:
    to: Path = option(flag="--to", metavar="DIR", required=True,
                      help="folder to write the masks into (created; existing files are not overwritten "
                           "without --overwrite)")
    workspace: Path = option(Path("workspace"), flags=("-w",), help="workspace folder")
    set_name: str = option("dst", flag="--set", choices=("dst", "src"), help="face set to export")
    space: str = option("frame", choices=("frame", "aligned"),
                        help="frame: one matte per frame (or photo) at its full size, all its faces, named by frame "
                             "number (000123.png), for compositing; aligned: each face's mask as stored, named as "
                             "its aligned face")
    overwrite: bool = option(False, action="store_true", help="replace files of the same name in --to")


@dataclass
class MaskImportOptions:
    folder: Path = option(flag="folder", metavar="DIR",
                          help="folder of masks as 'masks export' writes them (frame mattes 000123.png or aligned "
                               "masks named as the faces); white = face")
    workspace: Path = option(Path("workspace"), flags=("-w",), help="workspace folder")
    set_name: str = option("dst", flag="--set", choices=("dst", "src"), help="face set the masks belong to")
