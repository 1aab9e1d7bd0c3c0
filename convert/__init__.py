"""``main.py convert``: the finished video, every dst face replaced and blended, audio kept."""
from __future__ import annotations

import argparse

import convert.backends  # noqa: F401  (declares --color and --blend, registers their entries)
from convert.options import ConvertOptions
from pipeline.core.command import Command
from pipeline.core.options import from_namespace


def _run(args: argparse.Namespace) -> int:
    opts = from_namespace(ConvertOptions, args)
    from convert.runner import run_convert
    print(run_convert(opts).line())
    return 0


COMMAND = Command(
    "convert", help="render the finished video: every dst face replaced, blended, audio kept",
    description="Replace every indexed dst face with the trained model's output: landmarks smoothed over time per "
                "face track, colour matched to the dst face, blended, encoded to H.264 with the dst audio copied. "
                "Faces the artist deleted and frames without a face pass through unchanged; hand-painted masks "
                "are used as painted.",
    options=(ConvertOptions,), run=_run,
    interrupted="interrupted; --output was left as it was (run the command again to render)")
