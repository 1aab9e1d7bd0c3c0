"""Options of ``main.py train`` that every model type shares, each declared once.

The chosen model type adds its own (``--model``; the transformation network's are in
``pipeline/models/transform_options.py``).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipeline.core.options import option
from pipeline.models.segmenter_options import RESOLUTIONS as SEGMENTER_RESOLUTIONS
from pipeline.models.segmenter_options import WIDTHS as SEGMENTER_WIDTHS
from pipeline.registries import MODEL_TYPES


@dataclass
class TrainOptions:
    workspace: Path = option(Path("workspace"), flags=("-w",), help="workspace folder")
    model: str = option("transform", choices=MODEL_TYPES, help="model type")
    iterations: int = option(10000, low=1, help="total iterations (a resumed run continues up to this number)")
    batch_size: int = option(16, low=1, high=4096, help="faces per iteration")
    lr: float | None = option(None, low=1e-12, default_text="the model type's: 1e-3 for transform, 3e-4 for df "
                                                             "and liae",
                              help="Adam learning rate at the start")
    lr_end: float | None = option(None, low=1e-12, default_text="the model type's: 1e-4 for transform, 3e-5 for "
                                                                 "df and liae",
                                  help="learning rate at the end (exponential decay)")
    content_extra: list[Path] = option(factory=list, nargs="*", metavar="WORKSPACE",
                                       help="more content faces: the dst faces of other workspaces (same face type)")
    person: str | None = option(None, metavar="N|all", default_text="1, the dst person in the most frames",
                                help="when the dst video shows several people, train on this one's faces only "
                                     "(numbers as 'python main.py info' lists them; convert --person picks whom "
                                     "to swap), or all")
    seed: int = option(0, help="random seed (sampling, degradations, initial weights)")
    save_every: int = option(500, low=1, help="checkpoint every N iterations")
    preview_every: int = option(250, low=1, help="refresh model/preview.jpg every N iterations")
    stop_at: int | None = option(None, low=1, metavar="N",
                                 help="stop after iteration N (for sessions in chunks); train again to continue")
    max_minutes: float | None = option(None, low=0.001,
                                       help="stop after this much wall time (checkpoint saved); train again to "
                                            "continue")
    device: str = option("auto", help="torch device: auto (CUDA when present), cpu, cuda")
    fresh: bool = option(False, action="store_true",
                         help="start a new model; an existing one is moved aside to model-old-<time>, not deleted")
    #: the chosen model type's options (its ``parts["options"]`` dataclass); None = its defaults
    model_options: Any = option(None, cli=False, help="options of the model type")


@dataclass
class MaskTrainOptions:
    """``main.py masks train``: the same loop and its options as ``train``, for the mask segmenter."""

    workspace: Path = option(Path("workspace"), flags=("-w",), help="workspace folder")
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
    device: str = option("auto", help="torch device: auto (CUDA when present), cpu, cuda")
    fresh: bool = option(False, action="store_true",
                         help="start a new mask model; an existing one is moved aside to mask_model-old-<time>")
