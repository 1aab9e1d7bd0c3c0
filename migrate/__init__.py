"""``main.py migrate``: bring a workspace of an older schema to the current one (runner.py)."""
from __future__ import annotations

import argparse

from migrate.options import MigrateOptions
from pipeline.core.command import Command
from pipeline.core.options import from_namespace


def _run(args: argparse.Namespace) -> int:
    from migrate.runner import run_migrate
    print(run_migrate(from_namespace(MigrateOptions, args)))
    return 0


COMMAND = Command(
    "migrate", help="bring a workspace of an older schema to the current one",
    description="Writers (extract, train) migrate on their own; this does it now. Both files are backed up first.",
    options=(MigrateOptions,), run=_run)
