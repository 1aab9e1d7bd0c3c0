"""Joining a Ray cluster, cutting frames into shards and running a stage's shard function over them.

Why Ray tasks and not a scheduler of our own: Ray already places tasks on free CPUs,
reruns a task whose worker process or node died (``max_retries``), moves the results back
and cleans up when the driver goes. What stays ours is small: how big a shard is, the
order results are stored in, one progress bar, and errors turned into one line.

Ray is imported inside :func:`connect` only, so commands without ``--ray`` never load it.
"""
from __future__ import annotations

import contextlib
import logging
import math
import os
import re
import socket
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tqdm import tqdm

from pipeline.core.errors import UserError, first_line

log = logging.getLogger("cluster")

#: The project root, put on every worker's import path (the project must sit at this path on each node).
PROJECT_ROOT = Path(__file__).resolve().parents[2]
#: Shards per CPU when the video is long enough: more than one, so a slow or lost node costs little.
SHARDS_PER_CPU = 2
#: Fewest frames in a shard: a shard pays a fixed cost (worker start, model load, seek and the
#: frames read around its edges), which this many frames keep small.
MIN_SHARD_FRAMES = 100
#: Most frames in a shard: what a killed worker or driver loses at worst.
MAX_SHARD_FRAMES = 2000
#: Times Ray runs a shard again when its worker process or node dies.
RETRIES = 3
_INSTALL = "pip install -r requirements-ray.txt (or pip install '.[ray]')"
_CLIENT = re.compile(r"^ray://[A-Za-z0-9_.\-\[\]:]+:\d{1,5}$")


@dataclass(frozen=True)
class Shard:
    """Frames ``start`` to ``end`` (end excluded) of the input; ``index`` is its place in the job."""

    index: int
    start: int
    end: int

    @property
    def frames(self) -> int:
        return self.end - self.start


def frame_ranges(frames: Sequence[int]) -> list[tuple[int, int]]:
    """Sorted frame numbers as (start, end) runs of consecutive frames."""
    out: list[tuple[int, int]] = []
    for f in sorted(frames):
        if out and out[-1][1] == f:
            out[-1] = (out[-1][0], f + 1)
        else:
            out.append((f, f + 1))
    return out


def plan_shards(ranges: Sequence[tuple[int, int]], cpus: int, shard_frames: int | None = None,
                min_frames: int = MIN_SHARD_FRAMES, per_cpu: int = SHARDS_PER_CPU) -> list[Shard]:
    """Shards covering ``ranges`` (frame runs still to do), sized from their length and the CPUs.

    Why these sizes: about ``SHARDS_PER_CPU`` shards a CPU keeps every node busy to the end
    and bounds what a lost worker reruns; ``MIN_SHARD_FRAMES`` keeps the per-shard fixed cost
    small against the frames; ``MAX_SHARD_FRAMES`` bounds the work a killed driver loses.
    A stage whose shards cost little more than their frames passes a smaller ``min_frames``
    and a larger ``per_cpu`` (convert: its segments can be encoded only in order, and the
    sooner the first ones finish, the more of the encode runs beside the rendering).
    A shard never spans a gap between ranges (frames done before are not redone).
    """
    total = sum(e - s for s, e in ranges)
    if total <= 0:
        return []
    if shard_frames is None:
        shard_frames = min(MAX_SHARD_FRAMES, max(min_frames, math.ceil(total / (max(1, cpus) * per_cpu))))
    shards: list[Shard] = []
    for start, end in ranges:
        count = max(1, round((end - start) / shard_frames))
        edges = [start + round(i * (end - start) / count) for i in range(count + 1)]
        for a, b in zip(edges, edges[1:]):
            if b > a:
                shards.append(Shard(len(shards), a, b))
    return shards


def check_address(address: str) -> str:
    """``--ray``'s value when it is one Ray understands; else one line saying what is accepted."""
    if address in ("local", "auto") or _CLIENT.match(address):
        return address
    raise UserError(f"--ray {address!r}: give 'local', 'auto' or 'ray://HOST:PORT' (Ray Client's port, 10001 by "
                    f"default)")


@dataclass(frozen=True)
class NodeResources:
    """What one alive node of the cluster offers (Ray's resources of that node)."""

    node_id: str
    cpus: int
    gpus: int


@dataclass(frozen=True)
class Lane:
    """One kind of shard: what each asks of the cluster, how many run at once, and its worker's device and threads.

    ``nodes`` confines the lane's shards to those nodes (Ray's soft node affinity: a node that
    dies lets its shard run elsewhere); empty means wherever Ray finds the resources.
    """

    cpus: int = 1
    gpus: int = 0
    slots: int = 1                 # shards in flight at once: the CPUs, or the GPUs when shards ask for one
    device: str = "cpu"            # the worker's --device
    threads: int = 1               # the worker's --workers
    nodes: tuple[tuple[str, int], ...] = ()     # (node id, slots there) when the lane keeps to some nodes

    def describe(self) -> str:
        if self.gpus:
            return f"{self.slots} GPUs (a GPU and {self.cpus} CPUs a shard)"
        if self.nodes:
            return f"{self.slots} CPUs of CPU-only nodes"
        return f"{self.slots} CPUs"


@dataclass(frozen=True)
class Placement:
    """Where a command's shards run: one lane, or a GPU lane and a CPU lane on a cluster mixing both."""

    lanes: tuple[Lane, ...] = (Lane(),)

    @property
    def slots(self) -> int:
        return sum(lane.slots for lane in self.lanes)

    def describe(self) -> str:
        return " and ".join(lane.describe() for lane in self.lanes)


def placement(device: str, nodes: Sequence[NodeResources]) -> Placement:
    """Where shards run for ``--device``, on a cluster of these alive ``nodes``.

    Why a shard asks Ray for a GPU: Ray gives a task that asks for one its own GPU
    (``CUDA_VISIBLE_DEVICES``), while a task that asks only for a CPU sees every GPU of its
    node, so with ``--device auto`` every shard of a GPU node would run its network on the
    same first GPU at once. So on a cluster with GPUs, ``auto`` and ``cuda`` shards each
    ask for one GPU and a share of a GPU node's CPUs (for the decoding, blending and encoding
    beside the network: the smallest CPUs-per-GPU of the GPU nodes, so a shard fits on every
    one of them; the cluster's total would ask more CPUs than a GPU node has where CPU-only
    nodes add theirs, and Ray would never start it), and as many run at once as there are
    GPUs. With ``auto`` the CPU-only nodes of such a cluster take shards too, one a CPU, on
    the CPU (kept to those nodes, so they do not take the CPUs the GPU shards need);
    ``cuda`` keeps to the GPUs. The GPU lane's worker device is ``auto``: its one visible
    GPU, or the CPU where that node's torch sees none. ``--device cpu``, or a cluster without
    GPUs, keeps one CPU a shard anywhere. ``--device cuda`` on a cluster without GPUs is one
    line, before anything is written.
    """
    cpus = max(1, sum(n.cpus for n in nodes))
    gpu_nodes = [n for n in nodes if n.gpus > 0]
    gpus = sum(n.gpus for n in gpu_nodes)
    if device != "cpu" and gpus > 0:
        share = max(1, min(n.cpus // n.gpus for n in gpu_nodes))
        lanes = [Lane(cpus=share, gpus=1, slots=gpus, device="auto", threads=share)]
        cpu_only = tuple((n.node_id, n.cpus) for n in nodes if n.gpus == 0 and n.cpus > 0)
        if device == "auto" and cpu_only:
            lanes.append(Lane(slots=sum(c for _, c in cpu_only), device="cpu", nodes=cpu_only))
        return Placement(tuple(lanes))
    if device.startswith("cuda"):
        raise UserError(f"--device {device}: the Ray cluster has no GPUs (Ray counts {cpus} CPUs, 0 GPUs); use "
                        f"--device auto or cpu, or start the nodes with their GPUs (ray start --num-gpus N)")
    return Placement((Lane(slots=cpus, device=device),))


class Cluster:
    """A joined Ray cluster; ``run`` maps a shard function over shards."""

    def __init__(self, ray: Any, address: str, dashboard: str | None) -> None:
        self.ray, self.address, self.dashboard = ray, address, dashboard
        alive = [n for n in ray.nodes() if n.get("Alive")]
        self.nodes = len(alive)
        self.node_resources = [NodeResources(str(n.get("NodeID", "")), int(n.get("Resources", {}).get("CPU", 0)),
                                             int(n.get("Resources", {}).get("GPU", 0))) for n in alive]
        self.cpus = max(1, sum(n.cpus for n in self.node_resources))
        self.gpus = sum(n.gpus for n in self.node_resources)
        #: where shards run (``placement``), set by ``connect`` from the command's ``--device``
        self.where = placement("cpu", self.node_resources)

    def put(self, value: Any) -> Any:
        """``value`` in the object store once, for every shard to read (e.g. the plans of a whole video)."""
        return self.ray.put(value)

    def run(self, fn: Callable[..., Any], shards: Sequence[Shard], args: tuple | Callable[[Lane], tuple], desc: str,
            total: int, initial: int = 0, extra: Callable[[Shard], tuple] | None = None, unit: str = "frame"
            ) -> Iterator[tuple[Shard, Any]]:
        """``fn(*args, shard, *extra(shard))`` on the cluster for every shard; (shard, result) in shard order.

        ``args`` are the same for every shard (put them in the object store with ``put``), or a
        function of the shard's ``Lane`` giving them (a stage's spec names the worker's device
        and threads, which differ between a GPU lane and a CPU lane; each lane's are put in the
        object store once). ``extra`` gives a shard's own arguments (e.g. the plans of its frames
        only). What a shard asks of the cluster, and how many run at once, is ``self.where``.

        One tqdm bar over ``total`` frames (``initial`` done before) moves as shards finish, so
        its rate is the whole cluster's. A shard whose worker dies is run again by Ray; an
        exception raised by ``fn`` stops the job (a UserError keeps its one line).

        Why shards are sent one a CPU at a time, in frame order (Ray's "limit pending tasks with
        ray.wait" pattern), not all at once: Ray does not start queued tasks in the order they were
        sent, and results are used in frame order (extract stores them so, convert's encode takes
        segments so). With every shard queued, a convert on two one-core nodes got shard 25-50 back
        3.5 s after shards 50-150, and the encode waited for it; and results that arrive ahead of
        an unfinished one are held in the driver's memory. With a shard for every CPU in flight
        and the next sent as one finishes, shards start in order and few results wait. The next
        shard goes to the first lane with a free slot (the GPUs before the CPU-only nodes); in a
        lane kept to some nodes, to the one with the most free slots.
        """
        ray = self.ray
        lanes = self.where.lanes
        remotes = [ray.remote(num_cpus=lane.cpus, num_gpus=lane.gpus, max_retries=RETRIES)(fn) for lane in lanes]
        lane_args = [tuple(self.put(a) for a in args(lane)) if callable(args) else args for lane in lanes]
        busy: list[dict[str, int]] = [dict.fromkeys((n for n, _ in lane.nodes), 0) for lane in lanes]
        in_flight = [0] * len(lanes)
        ran = [0] * len(lanes)
        sent = time.perf_counter()
        order = sorted(shards, key=lambda s: s.index)
        refs: dict[Any, tuple[Shard, int, str | None]] = {}
        finished: dict[int, Any] = {}
        following = submitted = 0
        pending: list[Any] = []

        def send(shard: Shard, k: int) -> Any:
            lane, remote, node = lanes[k], remotes[k], None
            if lane.nodes:
                node = max(lane.nodes, key=lambda n: n[1] - busy[k][n[0]])[0]
                busy[k][node] += 1
                remote = remote.options(scheduling_strategy=_on_node(node))
            ref = remote.remote(*lane_args[k], shard, *(extra(shard) if extra else ()))
            refs[ref] = (shard, k, node)
            in_flight[k] += 1
            ran[k] += 1
            return ref

        def submit() -> None:
            nonlocal submitted
            while submitted < len(order):
                free = [k for k, lane in enumerate(lanes) if in_flight[k] < lane.slots]
                if not free:
                    return
                pending.append(send(order[submitted], free[0]))
                submitted += 1

        bar = tqdm(total=total, initial=initial, unit=unit,
                   desc=f"{desc} ({self.nodes} nodes, {self.where.describe()})", dynamic_ncols=True, mininterval=0.5)
        try:
            submit()
            while pending:
                ready, pending[:] = ray.wait(pending, num_returns=1, timeout=1.0)
                for ref in ready:
                    shard, k, node = refs.pop(ref)
                    in_flight[k] -= 1
                    if node is not None:
                        busy[k][node] -= 1
                    finished[shard.index] = self._result(ref, shard)
                    bar.update(shard.frames)
                    log.debug("ray: shard %d-%d finished %.2f s after the first was sent", shard.start, shard.end,
                              time.perf_counter() - sent)
                submit()
                while following < len(order) and order[following].index in finished:
                    shard = order[following]
                    following += 1
                    yield shard, finished.pop(shard.index)
            if len(lanes) > 1:
                log.info("ray: shards sent: %s", ", ".join(f"{n} to the {lane.describe()}"
                                                           for n, lane in zip(ran, lanes)))
        finally:
            for ref in pending:
                with contextlib.suppress(Exception):
                    ray.cancel(ref, force=True)
            bar.close()

    def _result(self, ref: Any, shard: Shard) -> Any:
        ray = self.ray
        try:
            return ray.get(ref)
        except ray.exceptions.RayTaskError as exc:
            cause = getattr(exc, "cause", None)
            if isinstance(cause, UserError):
                raise UserError(str(cause), cause.exit_code) from None
            raise RuntimeError(f"shard {shard.start}-{shard.end} failed on the cluster: "
                               f"{first_line(cause or exc)}") from cause
        except ray.exceptions.RayError as exc:      # a worker or node lost more often than RETRIES
            raise UserError(f"shard of frames {shard.start}-{shard.end} was lost {RETRIES + 1} times on the cluster "
                            f"({first_line(exc)}); check the nodes and run the same command again (finished "
                            f"shards are kept)") from None


def _on_node(node_id: str) -> Any:
    """Ray's scheduling strategy for a shard kept to one node, soft: if that node is lost, Ray runs it elsewhere."""
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy
    return NodeAffinitySchedulingStrategy(node_id, soft=True)


def _import_ray() -> Any:
    try:
        import ray
    except ImportError:
        raise UserError(f"--ray needs Ray, which is not installed here: {_INSTALL}") from None
    return ray


@contextlib.contextmanager
def connect(address: str, device: str = "cpu") -> Iterator[Cluster]:
    """The cluster ``address`` names, joined for the block (a ``local`` one is started and stopped), with
    its shards placed for ``--device`` (``placement``).

    Failing to join, or a ``--device`` the cluster cannot give, is one line naming the address;
    nothing of the workspace has been touched by then, since commands join before they write anything.
    """
    address = check_address(address)
    ray = _import_ray()
    if ray.is_initialized():
        raise UserError("--ray: this process is already connected to a Ray cluster; run the command in its own process")
    kwargs: dict[str, Any] = {**_code_path(address), "log_to_driver": False,
                              "logging_level": logging.WARNING, "configure_logging": True}
    if address == "local":
        kwargs.update(num_cpus=os.cpu_count() or 1, include_dashboard=False)
    if address == "auto":
        _check_auto(ray)
    t0 = time.perf_counter()
    try:
        if address.startswith("ray://"):
            context = _client_init(ray, address, kwargs)
        else:
            context = ray.init(address=None if address == "local" else address, **kwargs)
    except ImportError as exc:          # Ray Client's extra (grpcio) missing
        raise UserError(f"--ray {address}: Ray Client is not installed ({first_line(exc)}): {_INSTALL}") from None
    except Exception as exc:  # noqa: BLE001 - Ray raises ConnectionError, RuntimeError, TimeoutError...
        with contextlib.suppress(Exception):
            ray.shutdown()
        raise UserError(f"--ray {address}: cannot join the cluster ({first_line(exc)}); start it (ray start "
                        f"--head), or check the address") from None
    try:
        dashboard = getattr(context, "dashboard_url", None) or None
        cluster = Cluster(ray, address, f"http://{dashboard}" if dashboard and "://" not in dashboard else dashboard)
        cluster.where = placement(device, cluster.node_resources)
        log.info("ray: joined %s in %.1f s: %d nodes, %d CPUs, %d GPUs%s", address, time.perf_counter() - t0,
                 cluster.nodes, cluster.cpus, cluster.gpus,
                 f"; dashboard {cluster.dashboard}" if cluster.dashboard else "")
        if cluster.dashboard:
            print(f"ray dashboard: {cluster.dashboard}", flush=True)
        yield cluster
    finally:
        ray.shutdown()


def _code_path(address: str) -> dict[str, Any]:
    """``ray.init``'s arguments that put the project (and the caller's PYTHONPATH) on every worker's import path.

    Why Ray's ``code_search_path`` and not ``runtime_env={"env_vars": {"PYTHONPATH": ...}}``: a runtime
    environment makes each node start this job's worker processes only once the runtime-environment
    agent has answered, where workers of the job's plain settings start as the driver connects. On the
    loopback cluster, two noop tasks came back 0.46 s after joining with the path against 0.76-0.84 s
    with the environment variable (``ray start`` nodes, 2026-12-07): that start is paid by every
    command. Ray then imports the shard functions by module name on the workers (all of ours are
    module-level functions of this project) instead of unpickling them. Ray Client cannot send a job
    configuration (it must be JSON there), so through ``ray://`` the environment variable stays.
    """
    paths = list(dict.fromkeys([str(PROJECT_ROOT),
                                *(p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p)]))
    if address.startswith("ray://"):
        return {"runtime_env": {"env_vars": {"PYTHONPATH": os.pathsep.join(paths)}}}
    from ray.job_config import JobConfig
    return {"job_config": JobConfig(code_search_path=paths)}


def _client_init(ray: Any, address: str, kwargs: dict[str, Any]) -> Any:
    """``ray.init`` through Ray Client, tried once more when the server side failed to start the session.

    Why: the client server starts a process per client session, and that start can fail for
    a moment ("Initialization failure from server", seen once in a test run on a quiet
    machine, the same command passing before and after); a render farm's submit script
    would then fail for nothing. Any other failure, and a second one, is the caller's.
    """
    for attempt in (1, 2):
        try:
            with _client_timeout():
                return ray.init(address=address, **kwargs)
        except Exception as exc:  # noqa: BLE001 - Ray raises ConnectionError, RuntimeError...
            if attempt == 2 or CLIENT_RETRY_MESSAGE not in str(exc):
                raise
            with contextlib.suppress(Exception):
                ray.shutdown()
            log.warning("ray: %s did not start this client's session (%s); trying once more", address,
                        first_line(exc))
            time.sleep(CLIENT_RETRY_PAUSE)
    raise AssertionError("unreachable")


#: Ray Client's answer when the server could not start the client's session; and the pause before the retry
CLIENT_RETRY_MESSAGE = "Initialization failure from server"
CLIENT_RETRY_PAUSE = 2.0


@contextlib.contextmanager
def _client_timeout() -> Iterator[None]:
    """Ray Client retries an unreachable server for minutes; a wrong address should fail in seconds."""
    before = os.environ.get("RAY_CLIENT_RECONNECT_GRACE_PERIOD")
    os.environ.setdefault("RAY_CLIENT_RECONNECT_GRACE_PERIOD", "5")
    try:
        yield
    finally:
        if before is None:
            os.environ.pop("RAY_CLIENT_RECONNECT_GRACE_PERIOD", None)


def _check_auto(ray: Any) -> None:
    """``auto`` names a cluster that answers, or one line now (Ray itself waits minutes for a stopped one)."""
    try:
        from ray._private.services import get_ray_address_from_environment
        target = get_ray_address_from_environment("auto", None)
    except (ImportError, AttributeError):      # another Ray: let ray.init find it
        return
    except Exception as exc:  # noqa: BLE001 - Ray's own "no cluster found" is a ConnectionError
        raise UserError(f"--ray auto: no running Ray cluster found ({first_line(exc)}); set RAY_ADDRESS=HOST:PORT "
                        f"or start one (ray start --head)") from None
    if not target or target == "auto" or "://" in target:
        return
    host, _, port = target.rpartition(":")
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=5):
            pass
    except (OSError, ValueError):
        raise UserError(f"--ray auto: the Ray cluster at {target} (RAY_ADDRESS, or the last one started here) does "
                        f"not answer; start it (ray start --head) or set RAY_ADDRESS") from None
