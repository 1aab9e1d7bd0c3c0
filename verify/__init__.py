"""``main.py verify VIDEO``: does the video carry this tool's watermark (a face swap made with our key)?"""
from __future__ import annotations

import argparse
import json

from pipeline.core.command import Command
from pipeline.core.options import from_namespace
from verify.options import VerifyOptions


def _run(args: argparse.Namespace) -> int:
    opts = from_namespace(VerifyOptions, args)
    from verify.checker import run_verify
    verdict = run_verify(opts)
    print(json.dumps(verdict.to_json(), indent=2) if opts.json else verdict.line())
    return verdict.exit_code


COMMAND = Command(
    "verify", help="look for the watermark convert puts in every swapped face (exit 0 marked, 1 not, 3 partly)",
    description="Find the faces of every frame and look for this tool's keyed watermark in each, without the "
                "original; a frame counts as marked when the evidence of --window frames around it passes. Exit "
                "code 0: marked (at least half the frames with a face), 1: not marked, 3: partly marked.",
    options=(VerifyOptions,), run=_run,
    interrupted="interrupted; nothing was written")
