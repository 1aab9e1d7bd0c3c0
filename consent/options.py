"""Options of ``main.py consent``, each declared once."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from pipeline.core.options import option
from pipeline.workspace.options import WorkspaceOptions


@dataclass
class ConsentAddOptions(WorkspaceOptions):
    name: str = option(required=True, metavar="NAME",
                       help="who agreed (kept in the workspace only; the manifest states that consent was recorded "
                            "and the document's hash, not the name)")
    document: Path = option(required=True, metavar="FILE", help="the signed release; its SHA-256 is recorded")
    face_set: str = option("src", flag="--set", choices=("src", "dst"),
                           help="whose consent: the src person (the face put in) or the dst person (the face "
                                "replaced)")
    copy: bool = option(False, action="store_true",
                        help="also copy the document into the workspace (consent/); by default only its hash")


@dataclass
class ConsentListOptions(WorkspaceOptions):
    json: bool = option(False, action="store_true", help="print the records as JSON")
