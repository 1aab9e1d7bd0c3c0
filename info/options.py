"""Options of ``main.py info``."""
from __future__ import annotations

from dataclasses import dataclass

from pipeline.core.options import option
from pipeline.workspace.options import WorkspaceOptions


@dataclass
class InfoOptions(WorkspaceOptions):
    json: bool = option(False, action="store_true", help="print stable JSON for other tools")
