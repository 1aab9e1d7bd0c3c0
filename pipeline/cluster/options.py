"""``--ray`` and ``--shard-frames``, declared once for every command that can spread over a cluster."""
from __future__ import annotations

from dataclasses import dataclass

from pipeline.core.options import option


@dataclass(kw_only=True)
class ClusterOptions:
    """Where a command's frames are processed: this process (default) or a Ray cluster."""

    ray: str | None = option(None, metavar="ADDRESS",
                             help="spread the work over a Ray cluster: 'local' starts one on this machine, "
                                  "'auto' joins RAY_ADDRESS or the cluster running here, 'ray://HOST:PORT' joins "
                                  "through Ray Client (needs requirements-ray.txt); the workspace, the input and "
                                  "this project must be at the same paths on every node")
    shard_frames: int | None = option(None, low=1, metavar="N",
                                      default_text="from the video's length and the cluster's CPUs",
                                      help="with --ray: frames per shard (faces, for masks apply); a shard is "
                                           "the unit a worker runs, Ray retries and a rerun keeps")
