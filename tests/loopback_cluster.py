"""A Ray cluster of two one-CPU nodes on 127.0.0.1 for the cluster tests, started and stopped by the test.

The head is ``ray start --head`` on loopback (optionally declaring GPUs it does not have, so
a test can see how shards are placed on a cluster mixing GPU and CPU-only nodes: Ray
believes the count it is given, and a worker's torch then finds no CUDA and runs on the
CPU); the second node is ``tests.ray_node``. Every process binds 127.0.0.1 and shares a
token of the cluster's own; ``ray stop --force`` at the end takes all of them down.
"""
from __future__ import annotations

import contextlib
import importlib.util
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import ROOT


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def ray_env() -> dict[str, str]:
    # loopback only: Ray then neither looks up nor binds the machine's outward address; a token of this
    # cluster's own (not ~/.ray's) for every process of the cluster
    return {**os.environ, "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0", "RAY_USAGE_STATS_ENABLED": "0",
            "PYTHONUNBUFFERED": "1", "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": uuid.uuid4().hex}


def alive_nodes(address: str, env: dict) -> int:
    code = (f"import ray; ray.init(address={address!r}, log_to_driver=False, logging_level='ERROR');"
            "print(sum(n['Alive'] for n in ray.nodes()))")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, env=env)
    return int(res.stdout.strip().splitlines()[-1]) if res.returncode == 0 and res.stdout.strip() else 0


def cli(*args, env: dict | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    """``main.py ARGS`` in its own process, as a user runs it (``env`` added to this process's environment)."""
    return subprocess.run([sys.executable, str(ROOT / "main.py"), *map(str, args)], cwd=ROOT, capture_output=True,
                          text=True, timeout=timeout, env={**os.environ, **(env or {})})


def require_ray() -> None:
    if importlib.util.find_spec("ray") is None:
        if os.environ.get("FACESWAP_SKIP_RAY_TESTS") == "1":
            pytest.skip("Ray is not installed (FACESWAP_SKIP_RAY_TESTS=1)")
        pytest.fail("Ray is not installed: pip install -r requirements-ray.txt (the dev lock has it)")


@contextlib.contextmanager
def loopback_cluster(head_gpus: int = 0) -> Iterator[dict[str, str]]:
    """Two one-CPU nodes; yields the CLI's environment with RAY_ADDRESS (and TEST_RAY_CLIENT, Ray Client's address)."""
    require_ray()
    ray_cli = str(Path(sys.executable).parent / "ray")
    temp = Path(tempfile.mkdtemp(prefix="ray", dir="/tmp"))      # short: Ray's socket paths must stay short
    env = ray_env()
    port, client_port = free_port(), free_port()
    address = f"127.0.0.1:{port}"
    node = None
    try:
        subprocess.run([ray_cli, "start", "--head", "--node-ip-address=127.0.0.1", f"--port={port}", "--num-cpus=1",
                        f"--num-gpus={head_gpus}", "--include-dashboard=false", f"--temp-dir={temp}",
                        "--disable-usage-stats", f"--ray-client-server-port={client_port}"],
                       env=env, check=True, capture_output=True, timeout=120)
        node = subprocess.Popen([sys.executable, "-m", "tests.ray_node", address, "900"], cwd=ROOT, env=env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 90
        while alive_nodes(address, env) < 2:
            assert time.monotonic() < deadline, "the second Ray node did not join"
            time.sleep(1)
        yield {**env, "RAY_ADDRESS": address, "TEST_RAY_CLIENT": f"ray://127.0.0.1:{client_port}"}
    finally:
        if node is not None:
            node.send_signal(signal.SIGTERM)
            try:
                node.wait(timeout=30)
            except subprocess.TimeoutExpired:
                node.kill()
        subprocess.run([ray_cli, "stop", "--force"], env=env, capture_output=True, timeout=120)
        shutil.rmtree(temp, ignore_errors=True)
