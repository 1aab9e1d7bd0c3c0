"""``main.py info``: what a workspace holds, per set (summary.py), as stable JSON and as text."""
from __future__ import annotations

import argparse
import json

from info.options import InfoOptions
from pipeline.core.command import Command
from pipeline.core.options import from_namespace


def _run(args: argparse.Namespace) -> int:
    opts = from_namespace(InfoOptions, args)
    from info.summary import format_info, run_info
    summary = run_info(opts)
    print(json.dumps(summary, indent=2) if opts.json else format_info(summary))
    return 0


COMMAND = Command(
    "info", help="summarise what the workspace holds",
    description="Per set: input, frames, faces, dropped faces, masks by origin, frames without a face, identities.",
    options=(InfoOptions,), run=_run)
