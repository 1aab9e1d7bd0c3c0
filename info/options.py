"""Options of ``main.py info``."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from pipeline.core.options import option


@dataclass
class InfoOptions:
    workspace: Path = option(Path("workspace"), flags=("-w",), help="workspace folder")
    json: bool = option(False, action="store_true", help="print stable JSON for other tools")
