"""``main.py studio``: the artist's local page for the work between stages (face browser first)."""
from __future__ import annotations

import argparse

from pipeline.core.command import Command
from pipeline.core.options import from_namespace
from studio.options import StudioOptions


def _run(args: argparse.Namespace) -> int:
    opts = from_namespace(StudioOptions, args)
    from studio.server import run_studio
    print(run_studio(opts))
    return 0


COMMAND = Command(
    "studio", help="the artist's local page: faces, mask editor, carry-forward, convert preview",
    description="Serve a local web page (127.0.0.1, a random token in the printed address) that shows the "
                "workspace's faces: sorted by frame and track, blur, yaw, pitch, mask origin or likeness to a chosen "
                "face, filtered by person (a row of the people the set shows, as info lists them: picking one also "
                "makes the preview swap that person) and mask origin, each with its source frame; select many, "
                "delete and "
                "restore (the same as deleting the aligned files by hand). A mask editor (polygons, brush, undo, "
                "zoom, the mask model's prediction) whose saves are hand masks and never overwrite a mask changed "
                "elsewhere meanwhile; carrying a mask forward along a track; any frame rendered as convert would. "
                "Ctrl-C stops it.",
    options=(StudioOptions,), run=_run)
