"""``--ray`` on a loopback cluster: frames/s with one and two one-core nodes, the cost of a shard and of a frame
moved through Ray, and from those a projection for long footage on more nodes.

What it runs (each command as a user would, in its own process, on the Hill clip, 200 frames 512x512):
- a Ray head on 127.0.0.1 pinned to core 0 (``taskset``), one CPU; extract and convert with ``--ray auto``.
  Convert's workspace is what a user's is after the README's job: a model of the default size and type
  (untrained weights: speed does not depend on them) with what train stores beside them (the int8
  ranges), and the src set extracted (untimed), which convert's src colour and grain steps read
  (``--model tiny``: the untrained width-4 network of the tests, no src set, as before 2026-12-07);
- a second node pinned to core 1; the same two commands again. The driver is not pinned;
- extract on the one node with 1 shard and with 8 shards: the difference over 7 is the fixed cost of a
  shard (seek, the frames read around its edges, scheduling; the models load once per worker process);
- a Ray task returning one frame's extract payload (its aligned image and mask, the sizes measured
  in the workspace) 200 times: the cost per frame moved back to the driver.
The projection assumes the per-frame cost scales with the pixel count from 512x512 to 1920x1080
(decode, crop and encode do; the detector's input is shrunk, so this overstates extract) and says so.

Timings on a shared 2-core machine are noisy: run it on a quiet one for figures to quote.
Each command runs once untimed on each node count first (a node's first job pays one-off starts, about
3 s on 2026-12-08, that a farm's long-lived nodes do not), then ``--rounds`` times (3), and the medians
are compared.
Usage: python -m benchmarks.cluster [--json PATH] [--rounds N] [--speed-only] [--pin-driver CORE]
"""
from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CLIP = ROOT.parent / "shared" / "data" / "videos" / "WDA_KatieHill_000.mp4"
SRC_CLIP = CLIP.with_name("WDA_AlexandriaOcasioCortez_000.mp4")
FRAMES = 200
HOUR_FRAMES = 25 * 3600
PIXELS_1080 = 1920 * 1080 / (512 * 512)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


#: ``taskset`` prefix for the driver (the command's own process); empty: not pinned.
DRIVER_PIN: list[str] = []


def _timed(args: list[str], env: dict, log: list[str] | None = None) -> float:
    """Wall seconds of ``main.py args`` in its own process; its ``ray:`` log lines (the phases) are printed."""
    t0 = time.perf_counter()
    res = subprocess.run([*DRIVER_PIN, sys.executable, str(ROOT / "main.py"), *args], cwd=ROOT, env=env,
                         capture_output=True, text=True, timeout=1800)
    wall = time.perf_counter() - t0
    if res.returncode != 0:
        sys.exit(f"failed: main.py {' '.join(args)}\n{res.stderr[-2000:]}")
    if log is not None:
        log.append(res.stderr)
    for line in res.stderr.splitlines():
        if "ray:" in line:
            print(f"    {args[0]}: {line.strip()}", flush=True)
    print(f"    {args[0]}: wall {wall:.1f} s", flush=True)
    return wall


def _core_busy(core: int) -> tuple[float, float]:
    """(busy, all) jiffies of ``core`` so far, from /proc/stat."""
    for line in Path("/proc/stat").read_text().splitlines():
        if line.startswith(f"cpu{core} "):
            v = [float(x) for x in line.split()[1:]]
            return sum(v) - v[3] - v[4], sum(v)
    return 0.0, 1.0


def _settle(core: int, quiet: float = 0.1, limit: float = 30.0) -> None:
    """Wait until ``core`` is under ``quiet`` busy over a second: a node registers before its agents have
    finished starting (their imports took a core's seconds), and that start must not fall into the timing."""
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        b0, a0 = _core_busy(core)
        time.sleep(1.0)
        b1, a1 = _core_busy(core)
        if (b1 - b0) / max(1.0, a1 - a0) < quiet:
            return


class LoopbackCluster:
    """A head pinned to core 0; ``add_node`` pins a second one-CPU node to core 1."""

    def __init__(self) -> None:
        self.temp = Path(tempfile.mkdtemp(prefix="raybench", dir="/tmp"))
        self.env = {**os.environ, "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0", "RAY_USAGE_STATS_ENABLED": "0",
                    "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": uuid.uuid4().hex}
        self.address = f"127.0.0.1:{_free_port()}"
        self.ray = str(Path(sys.executable).parent / "ray")
        self.nodes: list[subprocess.Popen] = []
        subprocess.run(["taskset", "-c", "0", self.ray, "start", "--head", "--node-ip-address=127.0.0.1",
                        f"--port={self.address.split(':')[1]}", "--num-cpus=1", "--include-dashboard=false",
                        f"--temp-dir={self.temp}", "--disable-usage-stats", f"--ray-client-server-port={_free_port()}"],
                       env=self.env, check=True, capture_output=True, timeout=120)
        self.env["RAY_ADDRESS"] = self.address
        _settle(0)

    def alive(self) -> int:
        code = (f"import ray; ray.init(address={self.address!r}, log_to_driver=False, logging_level='ERROR');"
                "print(sum(n['Alive'] for n in ray.nodes()))")
        res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, env=self.env)
        return int(res.stdout.split()[-1]) if res.returncode == 0 and res.stdout.strip() else 0

    def add_node(self, core: int) -> None:
        self.nodes.append(subprocess.Popen(["taskset", "-c", str(core), sys.executable, "-m", "tests.ray_node",
                                            self.address, "3600"], cwd=ROOT, env=self.env,
                                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        deadline = time.monotonic() + 90
        while self.alive() < 1 + len(self.nodes):
            if time.monotonic() > deadline:
                sys.exit("the second node did not join")
            time.sleep(1)
        _settle(core)

    def stop(self) -> None:
        for node in self.nodes:
            node.send_signal(signal.SIGTERM)
            node.wait(timeout=30)
        subprocess.run([self.ray, "stop", "--force"], env=self.env, capture_output=True, timeout=120)
        shutil.rmtree(self.temp, ignore_errors=True)


def _convert_material(ws: Path, model: str, copy_from: Path | None) -> None:
    """What convert reads besides the dst set, made untimed: the model (copied from ``copy_from`` when given),
    and for the default model the src set (in its own process, as a user's earlier extract). The default
    model is made in each workspace: the int8 ranges train stores are keyed by that workspace's dst faces,
    and a copy whose key did not match would calibrate again in convert (about 1.5 s a worker)."""
    if copy_from is not None:
        shutil.copytree(copy_from, ws / "model")
    elif model == "tiny":
        subprocess.run([sys.executable, "-c", "import sys; from pathlib import Path; "
                        "from tests.conftest import write_tiny_model; write_tiny_model(Path(sys.argv[1]))",
                        str(ws / "model")], cwd=ROOT, check=True)
    else:
        subprocess.run([sys.executable, "-c", "import sys; from pathlib import Path; "
                        "from benchmarks.convert_profile import untrained_model; "
                        "untrained_model('transform', Path(sys.argv[1]))", str(ws / "model")], cwd=ROOT, check=True)
    if model == "default":
        subprocess.run([sys.executable, str(ROOT / "main.py"), "extract", "--input", str(SRC_CLIP), "-w", str(ws),
                        "--set", "src"], cwd=ROOT, check=True, capture_output=True, timeout=1800)


def _payload_bytes(ws: Path) -> int:
    files = [p for d in ("data_dst/aligned", "data_dst/masks") for p in (ws / d).iterdir()]
    return int(sum(p.stat().st_size for p in files) / FRAMES)


def _transfer_per_frame(env: dict, size: int) -> float:
    """Seconds per frame to bring ``size`` bytes (one frame's payload) from a task to the driver, 200 frames."""
    code = f"""
import time, ray
ray.init(address={env['RAY_ADDRESS']!r}, log_to_driver=False, logging_level='ERROR')
@ray.remote(num_cpus=1)
def frames(n, size):
    return [bytes(size) for _ in range(n)]
ray.get(frames.remote(1, 1))
t0 = time.perf_counter(); ray.get(frames.remote({FRAMES}, {size})); t1 = time.perf_counter()
t2 = time.perf_counter(); ray.get(frames.remote(1, 1)); t3 = time.perf_counter()
print(((t1 - t0) - (t3 - t2)) / {FRAMES})
"""
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, env=env)
    return float(res.stdout.split()[-1])


def _median(times: list[float]) -> float:
    """The median of the timed runs, which are printed when there are several."""
    if len(times) > 1:
        print(f"    runs: {', '.join(f'{t:.1f}' for t in times)} s; median {statistics.median(times):.1f} s",
              flush=True)
    return statistics.median(times)


def _projection(per_frame: float, per_shard: float, transfer: float, driver_frame: float, nodes: int,
                shard_frames: int = 1000) -> float:
    """Hours for one hour of 25 fps footage on ``nodes`` one-core nodes: the nodes' share of the frames and
    shards, or the driver's serial per-frame work if that is longer."""
    frames = HOUR_FRAMES
    shards = frames / shard_frames
    workers = frames * per_frame / nodes + shards * per_shard / nodes
    driver = frames * (transfer + driver_frame)
    return max(workers, driver) / 3600


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--json", type=Path, help="write the figures here too")
    ap.add_argument("--pin-driver", type=int, metavar="CORE",
                    help="pin the command's own process (the driver) to this core, in both runs")
    ap.add_argument("--repeat", type=int, default=1, metavar="N",
                    help="the 1- and 2-node runs on the clip played N times over (N x 200 frames, re-encoded once "
                         "before timing): how the speed-up grows when the fixed costs weigh less")
    ap.add_argument("--speed-only", action="store_true",
                    help="the 1- and 2-node runs only (no fixed cost per shard, transfer or projection)")
    ap.add_argument("--encode-chunk", type=int, default=0, metavar="N",
                    help="also time convert with --encode-chunk N (the nodes encode N-frame pieces, the driver joins "
                         "them) beside the default (one encode on the driver), in the same runs")
    ap.add_argument("--rounds", type=int, default=3, metavar="N",
                    help="per node count: one untimed run of each command first (a node's first job pays one-off "
                         "starts a farm's long-lived nodes do not), then N timed runs, the median reported; 0: one "
                         "timed run each, the first (as before 2026-12-08)")
    ap.add_argument("--model", choices=("default", "tiny"), default="default",
                    help="convert's model: the default model as train leaves it, with the src set (default), or the "
                         "tests' tiny untrained network without a src set")
    args = ap.parse_args()
    if args.pin_driver is not None:
        DRIVER_PIN[:] = ["taskset", "-c", str(args.pin_driver)]
    work = Path(tempfile.mkdtemp(prefix="cluster-bench"))
    clip, frames = CLIP, FRAMES
    if args.repeat > 1:
        from tests.conftest import ffmpeg
        clip, frames = work / f"hill_x{args.repeat}.mp4", FRAMES * args.repeat
        subprocess.run([ffmpeg(), "-v", "error", "-stream_loop", str(args.repeat - 1), "-i", str(CLIP), "-c:v",
                        "libx264", "-crf", "18", "-c:a", "aac", str(clip)], check=True)
    out: dict = {"clip": CLIP.name, "frames": frames, "repeat": args.repeat, "model": args.model,
                 "driver_pinned_to": args.pin_driver}
    cluster = LoopbackCluster()
    try:
        env = cluster.env
        for nodes in (1, 2):
            if nodes == 2:
                cluster.add_node(1)
            ws = work / f"ws{nodes}"
            logs: list[str] = []
            first: dict[str, float] = {}
            if args.rounds:
                first["extract_s"] = _timed(["extract", "--input", str(clip), "-w", str(work / f"warm{nodes}"),
                                             "--ray", "auto"], env)
            t_ex = _median([_timed(["extract", "--input", str(clip), "-w",
                                    str(ws if k == 0 else work / f"ws{nodes}_{k}"), "--ray", "auto"], env, logs)
                            for k in range(max(1, args.rounds))])
            found = re.search(r"driver stored \d+ frames in [\d.]+ s \(([\d.]+) ms a frame\)", logs[0])
            out[f"driver_store_ms_{nodes}"] = float(found.group(1)) if found else float("nan")
            _convert_material(ws, args.model, work / "ws1" / "model" if nodes == 2 and args.model == "tiny" else None)
            convert = ["convert", "-w", str(ws), "--no-credentials", "--ray", "auto"]
            if args.rounds:
                first["convert_s"] = _timed([*convert, "-o", str(work / f"warm{nodes}.mp4")], env)
            t_cv = _median([_timed([*convert, "-o", str(work / f"out{nodes}_{k}.mp4")], env)
                            for k in range(max(1, args.rounds))])
            out[f"{nodes}_nodes"] = {"extract_s": t_ex, "extract_fps": frames / t_ex,
                                     "convert_s": t_cv, "convert_fps": frames / t_cv}
            line = (f"{nodes} one-core node(s), {frames} frames: extract {t_ex:.1f} s ({frames / t_ex:.2f} frames/s), "
                    f"convert {t_cv:.1f} s ({frames / t_cv:.2f} frames/s)")
            if args.encode_chunk:
                pieces = [*convert, "--encode-chunk", str(args.encode_chunk)]
                if args.rounds:
                    first["convert_pieces_s"] = _timed([*pieces, "-o", str(work / f"warmpieces{nodes}.mp4")], env)
                t_pc = _median([_timed([*pieces, "-o", str(work / f"pieces{nodes}_{k}.mp4")], env)
                                for k in range(max(1, args.rounds))])
                out[f"{nodes}_nodes"]["convert_pieces_s"] = t_pc
                line += f", convert --encode-chunk {args.encode_chunk} {t_pc:.1f} s ({frames / t_pc:.2f} frames/s)"
            if first:
                out[f"{nodes}_nodes"]["first_run"] = first
                line += " (medians of the timed runs; the first, untimed runs: " + ", ".join(
                    f"{k[:-2]} {v:.1f} s" for k, v in first.items()) + ")"
            print(line, flush=True)
        one, two = out["1_nodes"], out["2_nodes"]
        out["speedup"] = {"extract": one["extract_s"] / two["extract_s"],
                          "convert": one["convert_s"] / two["convert_s"]}
        if args.encode_chunk:
            out["speedup"]["convert_pieces"] = one["convert_pieces_s"] / two["convert_pieces_s"]
        print(f"speed-up 2 nodes / 1 node: extract {out['speedup']['extract']:.2f}x, "
              f"convert {out['speedup']['convert']:.2f}x" +
              (f", convert --encode-chunk {args.encode_chunk} {out['speedup']['convert_pieces']:.2f}x"
               if args.encode_chunk else ""), flush=True)
        if args.speed_only or args.repeat > 1:
            return 0
        cluster.stop()
        cluster = LoopbackCluster()             # one node again, for the cost of a shard
        env = cluster.env
        t1 = _timed(["extract", "--input", str(CLIP), "-w", str(work / "s1"), "--ray", "auto", "--shard-frames",
                     str(FRAMES)], env)
        t8 = _timed(["extract", "--input", str(CLIP), "-w", str(work / "s8"), "--ray", "auto", "--shard-frames",
                     str(FRAMES // 8)], env)
        per_shard = (t8 - t1) / 7
        size = _payload_bytes(work / "s1")
        transfer = _transfer_per_frame(env, size)
        out["per_shard_s"], out["payload_bytes"], out["transfer_per_frame_s"] = per_shard, size, transfer
        print(f"fixed cost per extract shard: {per_shard:.2f} s (1 shard {t1:.1f} s, 8 shards {t8:.1f} s, one node)")
        print(f"per frame moved through Ray: {transfer * 1000:.2f} ms for {size / 1000:.0f} kB (aligned image + mask)")
        per_frame_ex = 1 / one["extract_fps"]          # one core's seconds per frame (the one-node run, fixed costs in)
        per_frame_cv = 1 / one["convert_fps"]
        print("projection, one hour of 25 fps 1080p (90,000 frames), per-frame cost scaled by pixels "
              f"({PIXELS_1080:.1f}x), shards of 1000 frames, one-core nodes, driver work per frame as measured:")
        out["projection_hours"] = {}
        driver_ex = out["driver_store_ms_2"] / 1000
        print(f"driver's own work per extracted frame (files and index rows): {driver_ex * 1000:.2f} ms")
        for stage, per_frame, driver in (("extract", per_frame_ex, driver_ex),
                                         ("convert", per_frame_cv, 0.0)):
            for nodes in (8, 32):
                hours = _projection(per_frame * PIXELS_1080, per_shard, transfer * PIXELS_1080 if stage == "extract"
                                    else 0.0, driver, nodes)
                out["projection_hours"][f"{stage}_{nodes}"] = hours
                print(f"  {stage} on {nodes} nodes (CPU): {hours:.2f} h")
        print("  GPU: not measured here (no GPU on this machine); see the README for how to read the figures")
    finally:
        cluster.stop()
        shutil.rmtree(work, ignore_errors=True)
        if args.json:
            args.json.write_text(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
