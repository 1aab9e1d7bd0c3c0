"""``main.py models``: every registered backend by kind, its weight files checked, its terms (catalogue.py)."""
from __future__ import annotations

import argparse
import json

from models.options import ModelsOptions
from pipeline.core.command import Command
from pipeline.core.options import from_namespace


def _run(args: argparse.Namespace) -> int:
    opts = from_namespace(ModelsOptions, args)
    from models.catalogue import catalogue, format_catalogue
    report = catalogue()
    print(json.dumps(report, indent=2) if opts.json else format_catalogue(report))
    return 0


COMMAND = Command(
    "models", help="list every backend by kind, its weight files (checked) and terms, and package versions",
    description="Every registered detector, landmarker, masker, feature network, colour transfer, blend mode and "
                "model type; for each weight file whether it is present, its size and checksum, and where to get a "
                "missing or damaged one; the installed versions of the packages the tool depends on, against the "
                "ranges it was tested with.",
    options=(ModelsOptions,), run=_run,
    check_environment=False)        # models shows the versions found, in range or not
