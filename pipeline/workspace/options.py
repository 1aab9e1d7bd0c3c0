"""The options every workspace command shares, declared once: which workspace, and which torch device.

A command's options dataclass inherits :class:`WorkspaceOptions` (or
:class:`DeviceOptions` when it runs a network) instead of declaring ``--workspace`` and
``--device`` again, so their spelling, default and help cannot drift between commands.
The fields are keyword-only, so a command's own required options may still come first.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from pipeline.core.options import option


@dataclass(kw_only=True)
class WorkspaceOptions:
    """``--workspace`` / ``-w``: the folder every stage reads and writes."""

    workspace: Path = option(Path("workspace"), flags=("-w",), help="workspace folder")


@dataclass(kw_only=True)
class DeviceOptions(WorkspaceOptions):
    """``--device`` as well, for the commands that run a network."""

    device: str = option("auto", help="torch device: auto (CUDA when present), cpu, cuda")
