"""Options of ``main.py masks train|apply|export|import``, each declared once."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from pipeline.cluster.options import ClusterOptions
from pipeline.core.options import option
from pipeline.models.segmenter_options import RESOLUTIONS as SEGMENTER_RESOLUTIONS
from pipeline.models.segmenter_options import WIDTHS as SEGMENTER_WIDTHS
from pipeline.workspace.options import DeviceOptions, WorkspaceOptions

SET_CHOICES = ("dst", "src", "both")


@dataclass
class MaskTrainOptions(DeviceOptions):
    """``main.py masks train``: the same loop and its options as ``train``, for the mask segmenter."""

    iterations: int = option(4000, low=1, help="total iterations (a resumed run continues up to this number)")
    batch_size: int = option(8, low=1, high=4096, help="faces per iteration")
    max_minutes: float | None = option(None, low=0.001,
                                       help="stop after this much wall time (checkpoint saved); run again to "
                                            "continue")
    resolution: int = option(128, low=SEGMENTER_RESOLUTIONS[0], high=SEGMENTER_RESOLUTIONS[-1],
                             help="side of the face the segmenter sees (a multiple of 16); its masks are scaled "
                                  "back to the aligned size")
    width: int = option(16, low=SEGMENTER_WIDTHS[0], high=SEGMENTER_WIDTHS[1],
                        help="channels of the first level (the levels have 1, 2, 4, 6, 8 times as many)")
    occluders: float = option(0.6, low=0.0, high=1.0,
                              help="share of samples with synthetic occluders (hands, bars, hair, glasses, pieces "
                                   "of other faces) pasted over the face and cut out of its mask")
    lr: float = option(1e-3, low=1e-12, help="Adam learning rate at the start")
    lr_end: float = option(1e-4, low=1e-12, help="learning rate at the end (exponential decay)")
    seed: int = option(0, help="random seed (sampling, augmentation, initial weights)")
    save_every: int = option(250, low=1, help="checkpoint every N iterations")
    preview_every: int = option(100, low=1, help="refresh mask_model/preview.jpg every N iterations")
    stop_at: int | None = option(None, low=1, metavar="N", help="stop after iteration N; run again to continue")
    fresh: bool = option(False, action="store_true",
                         help="start a new mask model; an existing one is moved aside to mask_model-old-<time>")


@dataclass
class MaskApplyOptions(DeviceOptions, ClusterOptions):
    set_name: str = option("both", flag="--set", choices=SET_CHOICES,
                           help="which face set gets the learned masks")
    batch_size: int = option(16, low=1, high=1024, help="faces per network call")


@dataclass
class MaskExportOptions(WorkspaceOptions):
    to: Path = option(flag="--to", metavar="DIR", required=True,
                      help="folder to write the masks into (created; existing files are not overwritten "
                           "without --overwrite)")
    set_name: str = option("dst", flag="--set", choices=("dst", "src"), help="face set to export")
    space: str = option("frame", choices=("frame", "aligned"),
                        help="frame: one matte per frame (or photo) at its full size, all its faces, named by frame "
                             "number (000123.png), for compositing; aligned: each face's mask as stored, named as "
                             "its aligned face")
    overwrite: bool = option(False, action="store_true", help="replace files of the same name in --to")


@dataclass
class MaskImportOptions(WorkspaceOptions):
    folder: Path = option(flag="folder", metavar="DIR",
                          help="folder of masks as 'masks export' writes them (frame mattes 000123.png or aligned "
                               "masks named as the faces); white = face")
    set_name: str = option("dst", flag="--set", choices=("dst", "src"), help="face set the masks belong to")
