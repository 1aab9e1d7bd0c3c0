"""Options of ``main.py studio``, each declared once."""
from __future__ import annotations

from dataclasses import dataclass

from pipeline.core.options import option
from pipeline.workspace.options import WorkspaceOptions


@dataclass
class StudioOptions(WorkspaceOptions):
    port: int = option(0, low=0, high=65535, help="port to serve on (0: any free port; the address is printed)")
    host: str = option("127.0.0.1", help="address to bind; anything but 127.0.0.1/localhost serves your faces to "
                                         "the network (a warning is printed; the token is still required)")
