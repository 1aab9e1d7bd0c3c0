"""Options of ``main.py migrate``."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from pipeline.core.options import option


@dataclass
class MigrateOptions:
    workspace: Path = option(Path("workspace"), flags=("-w",), help="workspace folder")
