"""Options of ``main.py evaluate``, each declared once (name, default, range, help)."""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from pipeline.cluster.options import ClusterOptions
from pipeline.core.options import option


def _cores() -> int:
    return os.cpu_count() or 1


@dataclass
class EvaluateOptions(ClusterOptions):
    workspace: Path = option(Path("workspace"), flags=("-w",), help="workspace folder")
    video: Path | None = option(None, default_text="the workspace's result.mp4", help="video to evaluate")
    reference: Path | None = option(None, default_text="the dst input recorded by extract", help="original video")
    device: str = option("auto", help="torch device for the identity network: auto, cpu, cuda")
    samples: int = option(4, low=0, high=100,
                          help="evenly spaced sample frames shown on the page (the worst frames are added)")
    person: str | None = option(None, metavar="N|all", default_text="the person whose faces the output changed",
                                help="whose faces to measure when the dst video shows several people: a person's "
                                     "number as 'python main.py info' lists them, or all. By default the person "
                                     "(or people) whose faces the output changed; the others' untouched faces "
                                     "would read as a perfect swap of nobody")
    workers: int = option(factory=_cores, low=1, high=256, default_text="number of CPU cores",
                          help="threads that find and measure faces")
