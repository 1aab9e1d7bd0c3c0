"""``main.py enhance``: a face enhancer for the src person, learned from the src set alone; convert runs it."""
from __future__ import annotations

import argparse

from enhance.options import EnhanceOptions
from pipeline.core.command import Command
from pipeline.core.options import from_namespace


def _run(args: argparse.Namespace) -> int:
    opts = from_namespace(EnhanceOptions, args)
    from enhance.training import run_enhance
    print(run_enhance(opts).line())
    return 0


COMMAND = Command(
    "enhance", help="learn a face enhancer for the src person (convert then restores the model's output with it)",
    description="Train a small network, on the src faces alone, to restore them from soft, plastic, blotchy and "
                "noisy copies; convert runs it on the face model's output (--enhance) before colour and blending. "
                "No downloaded weights. Resumable like train; it lives in workspace/enhancer/.",
    options=(EnhanceOptions,), run=_run,
    interrupted="interrupted; the last checkpoint in enhancer/ is kept (run the command again to continue)")
