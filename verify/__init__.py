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
    "verify", help="check the content credentials and the watermark convert puts in a video (exit 0 marked, "
                   "1 not, 3 damaged)",
    description="Read and validate the C2PA content credentials (signature, hashes), then find the faces of every "
                "frame and look for this tool's keyed watermark in each, without the original; a frame counts as "
                "marked when the evidence of --window frames around it passes. Exit code 0: marked (valid "
                "credentials, or the watermark in at least half the frames with a face), 1: not marked, 3: damaged "
                "(credentials present but invalid, or the watermark in part of the frames only).",
    options=(VerifyOptions,), run=_run,
    interrupted="interrupted; nothing was written")
