"""``convert --ray`` against one machine at the default settings: PSNR of every decoded frame, the lossless
segments' size, and the driver's final encode against the render.

What it runs (each command in its own process, as a user would): extract of the Hill clip (200 frames,
512x512, faces at 128 px) on one machine, an untrained tiny model, ``convert`` on one machine at the
default crf 18 / preset medium; then a loopback cluster of two one-core nodes (``benchmarks.cluster``'s)
and ``convert --ray auto --shard-frames 100`` (two shards, one edge at frame 100) with the same settings.
Every decoded frame of the cluster's video is compared with one machine's.
Usage: python -m benchmarks.cluster_encode [--shard-frames N] [--json PATH]
"""
from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from benchmarks.cluster import CLIP, ROOT, LoopbackCluster, _timed


def _frames(video: Path) -> list[np.ndarray]:
    from pipeline.core.video import FrameReader, probe
    info = probe(video)
    return [f.copy() for _, f in FrameReader(video, info.width, info.height)]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--shard-frames", type=int, default=100)
    ap.add_argument("--json", type=Path, help="write the figures here too")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="cluster-encode"))
    try:
        ws = work / "ws"
        env = dict(os.environ)
        _timed(["extract", "--input", str(CLIP), "-w", str(ws), "--size", "128"], env)
        subprocess.run([sys.executable, "-c", "import sys; from pathlib import Path; "
                        "from tests.conftest import write_tiny_model; write_tiny_model(Path(sys.argv[1]))",
                        str(ws / "model")], cwd=ROOT, check=True)
        one = work / "one.mp4"
        t_one = _timed(["convert", "-w", str(ws), "-o", str(one), "--no-credentials"], env)
        cluster = LoopbackCluster()
        try:
            cluster.add_node(1)
            logs: list[str] = []
            two = work / "two.mp4"
            t_two = _timed(["convert", "-w", str(ws), "-o", str(two), "--no-credentials", "--ray", "auto",
                            "--shard-frames", str(args.shard_frames)], cluster.env, logs)
        finally:
            cluster.stop()
        fa, fb = _frames(one), _frames(two)
        psnr = []
        for x, y in zip(fa, fb):
            mse = float(((x.astype(np.float64) - y) ** 2).mean())
            psnr.append(float("inf") if mse == 0 else 10 * np.log10(255 ** 2 / mse))
        split = re.search(r"shards ([\d.]+) s, final encode and mux ([\d.]+) s", logs[0])
        size = re.search(r"segments \(([\d.]+) MB, (\d+) kB a frame\)", logs[0])
        out = {"frames": [len(fa), len(fb)], "identical_frames": sum(p == float("inf") for p in psnr),
               "psnr_min": min(psnr), "one_machine_s": t_one, "cluster_s": t_two,
               "shards_s": float(split.group(1)) if split else None,
               "final_encode_s": float(split.group(2)) if split else None,
               "segments_mb": float(size.group(1)) if size else None,
               "segment_kb_per_frame": int(size.group(2)) if size else None,
               "same_bytes": one.read_bytes() == two.read_bytes()}
        print(json.dumps(out, indent=1))
        if args.json:
            args.json.write_text(json.dumps(out, indent=1))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
