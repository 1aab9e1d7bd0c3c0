"""Options of ``main.py enhance``, each declared once."""
from __future__ import annotations

from dataclasses import dataclass

from pipeline.core.options import option
from pipeline.models.enhancer_options import RESOLUTIONS, WIDTHS
from pipeline.workspace.options import DeviceOptions


@dataclass
class EnhanceOptions(DeviceOptions):
    """``main.py enhance``: the shared training loop and its options, for the src person's face enhancer."""

    iterations: int = option(3000, low=1, help="total iterations (a resumed run continues up to this number)")
    batch_size: int = option(8, low=1, high=4096, help="faces per iteration")
    max_minutes: float | None = option(None, low=0.001,
                                       help="stop after this much wall time (checkpoint saved); run again to "
                                            "continue")
    resolution: int | None = option(None, low=RESOLUTIONS[0], high=RESOLUTIONS[-1],
                                    default_text="the face model's (model/options.json), else 128",
                                    help="side of the face it restores: convert runs it on the face model's output, "
                                         "so it must be the model's resolution (a multiple of 8)")
    width: int = option(16, low=WIDTHS[0], high=WIDTHS[1],
                        help="channels of the first level (the levels have 1, 2, 4, 4 times as many)")
    lr: float = option(1e-3, low=1e-12, help="Adam learning rate at the start")
    lr_end: float = option(1e-4, low=1e-12, help="learning rate at the end (exponential decay)")
    seed: int = option(0, help="random seed (sampling, degradations, initial weights)")
    save_every: int = option(250, low=1, help="checkpoint every N iterations")
    preview_every: int = option(100, low=1, help="refresh enhancer/preview.jpg every N iterations")
    stop_at: int | None = option(None, low=1, metavar="N", help="stop after iteration N; run again to continue")
    fresh: bool = option(False, action="store_true",
                         help="start a new enhancer; an existing one is moved aside to enhancer-old-<time>")
