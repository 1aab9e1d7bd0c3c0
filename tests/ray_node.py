"""A second Ray node on this machine for the cluster tests: ``python -m tests.ray_node GCS_ADDRESS LIFETIME_S``.

Why not ``ray start --address``: on one machine that command swaps 127.0.0.1 for the
machine's outward address (and refuses to run when told to stay on loopback), so the
node would listen beyond this machine. Ray's own node class joins with loopback
addresses only. The process leaves after LIFETIME_S seconds or on SIGTERM, taking its
raylet and workers with it.
"""
from __future__ import annotations

import signal
import sys
import time


def main() -> int:
    address, lifetime = sys.argv[1], float(sys.argv[2])
    from ray._private.node import Node
    from ray._private.parameter import RayParams
    params = RayParams(gcs_address=address, node_ip_address="127.0.0.1", num_cpus=1, include_log_monitor=False)
    node = Node(params, head=False, shutdown_at_exit=True, spawn_reaper=True)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    print("node started", flush=True)
    try:
        time.sleep(lifetime)
    finally:
        node.kill_all_processes(check_alive=False, allow_graceful=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
