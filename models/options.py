"""Options of ``main.py models``."""
from __future__ import annotations

from dataclasses import dataclass

from pipeline.core.options import option


@dataclass
class ModelsOptions:
    json: bool = option(False, action="store_true", help="print stable JSON for other tools")
