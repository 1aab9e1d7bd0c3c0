"""``main.py evaluate``: a converted video measured against the original, report.json + index.html."""
from __future__ import annotations

import argparse

import evaluate.backends  # noqa: F401  (declares the held-apart judges)
from evaluate.options import EvaluateOptions
from pipeline.core.command import Command
from pipeline.core.options import from_namespace


def _run(args: argparse.Namespace) -> int:
    opts = from_namespace(EvaluateOptions, args)
    from evaluate.html_report import format_table
    from evaluate.runner import run_evaluate
    report, folder = run_evaluate(opts)
    print(format_table(report))
    for note in report["notes"]:
        print(f"note: {note}")
    print(f"report: {folder / 'index.html'}")
    return 0


COMMAND = Command(
    "evaluate", help="measure a converted video against the original: report.json + index.html",
    description="Per frame, for the swapped face matched to the original face: identity distance to the src person "
                "and to the original, expression and pose error, SSIM; jitter per face track and the seam's colour "
                "step for output and original side by side; coverage and audio. Faces are found with the detector "
                "and landmarker the dst set was extracted with. Writes report/report.json and report/index.html "
                "into the workspace.",
    options=(EvaluateOptions,), run=_run)
