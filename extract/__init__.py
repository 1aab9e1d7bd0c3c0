"""``main.py extract``: faces of a video or photos, aligned and masked, into the workspace."""
from __future__ import annotations

import argparse

from extract.options import ExtractOptions
from pipeline.core.command import Command
from pipeline.core.options import from_namespace


def _run(args: argparse.Namespace) -> int:
    opts = from_namespace(ExtractOptions, args)     # checked before the stage (and torch) loads
    from extract.runner import run_extract
    print(run_extract(opts).line())
    return 0


COMMAND = Command(
    "extract", help="detect, align and mask faces of a video or photos into the workspace",
    description="Detect faces (68 landmarks), align them and write masks into the workspace. Resumable: run it "
                "again after an interruption.",
    options=(ExtractOptions,), run=_run)
