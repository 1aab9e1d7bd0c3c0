"""Options of ``main.py migrate``."""
from __future__ import annotations

from dataclasses import dataclass

from pipeline.workspace.options import WorkspaceOptions


@dataclass
class MigrateOptions(WorkspaceOptions):
    """Only which workspace: migrate brings it to the current schema and has nothing else to choose."""
