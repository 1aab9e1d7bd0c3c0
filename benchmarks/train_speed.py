"""Training speed at 128: iterations per second at batch 8 and 16, and peak memory.

Runs the real trainer (dlib features, all losses, identity loss on) for a few steps on
the shared pair and, in the same run, the network's own forward + backward + Adam step
as the baseline: their ratio is what the losses and feature networks cost on top. On
CUDA when torch sees a GPU.

Usage: python -m benchmarks.train_speed [--steps N] [--width W] [--json PATH]
"""
from __future__ import annotations

import argparse
import json
import logging
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]

DATA = ROOT.parent / "shared" / "data" / "videos"


def make_workspace(folder: Path) -> Path:
    ws = folder / "ws"
    for clip, set_name in (("WDA_KatieHill_000.mp4", "dst"), ("WDA_AlexandriaOcasioCortez_000.mp4", "src")):
        subprocess.run([sys.executable, str(ROOT / "main.py"), "extract", "--input", str(DATA / clip),
                        "--set", set_name, "--workspace", str(ws)], check=True, capture_output=True)
    return ws


def time_trainer(ws: Path, batch: int, width: int, steps: int) -> float:
    from pipeline.models.transform_options import TransformOptions
    from train.options import TrainOptions
    from train.trainer import Trainer
    shutil.rmtree(ws / "model", ignore_errors=True)
    tr = Trainer(TrainOptions(workspace=ws, batch_size=batch, iterations=10 * steps,
                              model_options=TransformOptions(width=width)))
    tr.step()                                   # warm-up
    sync = torch.cuda.synchronize if tr.device.type == "cuda" else (lambda: None)
    sync()
    start = time.perf_counter()
    for _ in range(steps):
        tr.step()
    sync()
    seconds = (time.perf_counter() - start) / steps
    tr.lock.release()
    return seconds


def time_network(batch: int, width: int, steps: int, device: torch.device) -> float:
    from pipeline.models.transform_net import TransformNet
    net = TransformNet(128, width).to(device)
    opt = torch.optim.Adam(net.parameters())
    x = torch.rand(batch, 3, 128, 128, device=device)

    def step() -> None:
        opt.zero_grad()
        net(x).square().mean().backward()
        opt.step()

    step()
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    sync()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    sync()
    return (time.perf_counter() - start) / steps


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--width", type=int, default=32, help="network width (32 = the paper's ~1M parameters)")
    ap.add_argument("--workspace", type=Path, default=None, help="a workspace with dst and src faces "
                                                                 "(default: extract the shared pair)")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    results, ratios = {}, []
    with tempfile.TemporaryDirectory() as tmp:
        ws = args.workspace or make_workspace(Path(tmp))
        for batch in (8, 16):
            if device.type == "cuda":
                torch.cuda.reset_peak_memory_stats()
            full = time_trainer(ws, batch, args.width, args.steps)
            net = time_network(batch, args.width, args.steps, device)
            peak_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
            gpu = torch.cuda.max_memory_allocated() / 2 ** 20 if device.type == "cuda" else None
            results[f"batch_{batch}"] = {"s_per_it": full, "it_per_s": 1 / full, "network_only_s": net,
                                         "peak_rss_mib": peak_rss, "peak_gpu_mib": gpu}
            ratios.append({"name": f"train step / network alone, batch {batch}", "value": full, "baseline": net,
                           "unit": "s", "ratio": full / net, "target": None})
            print(f"batch {batch:2d}: {1 / full:6.2f} it/s ({full:.2f} s/it; network alone {net:.2f} s, "
                  f"x{full / net:.2f}); peak RSS {peak_rss:.0f} MiB"
                  + (f", peak GPU {gpu:.0f} MiB" if gpu is not None else ""))
    print(f"device {device}, width {args.width}, torch threads {torch.get_num_threads()}")
    if args.json:
        args.json.write_text(json.dumps({"device": str(device), "width": args.width, "results": results,
                                         "ratios": ratios}, indent=2))


if __name__ == "__main__":
    main()
