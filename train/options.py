"""Options of ``main.py train`` that every model type shares, each declared once.

The chosen model type adds its own (``--model``; the transformation network's are in
``pipeline/models/transform_options.py``).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipeline.core.options import option
from pipeline.registries import MODEL_TYPES
from pipeline.workspace.options import DeviceOptions


@dataclass
class TrainOptions(DeviceOptions):
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
    precision: str = option("auto", choices=("auto", "float"),
                            help="arithmetic of the step: auto = bfloat16 autocast on a CPU that computes it natively "
                                 "(AMX or AVX-512 BF16; about 2.2x the iterations per second of float32 for the "
                                 "transformation network) and float16 autocast with scaled losses on CUDA, for the "
                                 "model types measured with them; float = float32 everywhere")
    fresh: bool = option(False, action="store_true",
                         help="start a new model; an existing one is moved aside to model-old-<time>, not deleted")
    #: the chosen model type's options (its ``parts["options"]`` dataclass); None = its defaults
    model_options: Any = option(None, cli=False, help="options of the model type")
