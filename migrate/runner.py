"""``main.py migrate``: a workspace of an older schema brought to the current one now."""
from __future__ import annotations

from migrate.options import MigrateOptions
from pipeline.core.errors import UserError
from pipeline.workspace import layout
from pipeline.workspace.store import Workspace


def run_migrate(opts: MigrateOptions) -> str:
    """Bring a workspace to the current schema now (writers do it on their own)."""
    if not layout.is_workspace(opts.workspace):
        raise UserError(f"{opts.workspace} is not a workspace (no workspace.json); nothing to migrate")
    with Workspace(opts.workspace, write=True, command="migrate") as ws:
        if ws.migrated_from is not None:
            return f"workspace {ws.root}: migrated from schema {ws.migrated_from} to {ws.file_version}"
        return f"workspace {ws.root} is already at schema {ws.file_version}"
