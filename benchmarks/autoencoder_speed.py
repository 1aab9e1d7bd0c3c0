"""Autoencoder training speed: iterations per second and peak memory, per preset (cpu, gpu) x (df, liae).

Runs the real trainer step (sampling, random warp, both reconstructions, DSSIM + MSE +
mask losses, Adam) at 128 px (``--resolution``) and batch 8 on a workspace of the shared pair (the first
48 frames of each clip), and in the same process the network's own forward + backward +
Adam step on random faces as the baseline: their ratio is what the data and the losses
cost on top. Each configuration runs in its own process, so its peak resident memory
(``ru_maxrss``) is its own. A configuration stops after ``--iterations`` timed steps or
``--max-seconds``, whichever comes first (DeepFaceLab's full-size gpu preset takes tens
of seconds a step on two CPU cores). On CUDA when torch sees a GPU (peak GPU memory too).

Usage: python -m benchmarks.autoencoder_speed [--resolution R] [--presets cpu gpu] [--iterations N]
       [--max-seconds S] [--workspace WS] [--json PATH]
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

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "videos"
BATCH = 8


def make_workspace(folder: Path, frames: int = 48) -> Path:
    """dst: the first ``frames`` frames of one shared clip, src: of the other."""
    from pipeline.core.video import ffmpeg_exe
    ws = folder / "ws"
    for clip, set_name in (("WDA_KatieHill_000.mp4", "dst"), ("WDA_AlexandriaOcasioCortez_000.mp4", "src")):
        short = folder / f"{set_name}.mp4"
        subprocess.run([ffmpeg_exe(), "-v", "error", "-i", str(DATA / clip), "-frames:v", str(frames), "-c:v",
                        "mpeg4", "-q:v", "3", str(short)], check=True)
        subprocess.run([sys.executable, str(ROOT / "main.py"), "extract", "--input", str(short), "--set", set_name,
                        "--workspace", str(ws)], check=True, capture_output=True)
    return ws


def _timed(step, iterations: int, max_seconds: float, sync) -> tuple[float, int]:
    """Seconds per step over up to ``iterations`` steps (at least 3, then stopping at ``max_seconds``)."""
    step()                                          # warm-up: allocations, first-call kernels
    sync()
    start, done = time.perf_counter(), 0
    while done < iterations and (done < 3 or time.perf_counter() - start < max_seconds):
        step()
        done += 1
    sync()
    return (time.perf_counter() - start) / done, done


def measure_one(ws: Path, preset: str, kind: str, resolution: int, iterations: int, max_seconds: float) -> dict:
    """One configuration, in this process: the trainer's step, then the network alone."""
    import torch

    from pipeline.models.autoencoder_options import AutoencoderOptions
    from pipeline.models.interface import count_parameters
    from train.options import TrainOptions
    from train.trainer import Trainer
    logging.basicConfig(level=logging.WARNING)
    shutil.rmtree(ws / "model", ignore_errors=True)
    tr = Trainer(TrainOptions(workspace=ws, model=kind, batch_size=BATCH, iterations=100_000,
                              model_options=AutoencoderOptions(resolution=resolution, preset=preset)))
    device = tr.device
    cuda = device.type == "cuda"
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    try:
        full, steps = _timed(tr.step, iterations, max_seconds, sync)
    finally:
        tr.lock.release()
    peak_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    peak_gpu = torch.cuda.max_memory_allocated() / 2 ** 20 if cuda else None
    net = tr.family.net
    params = count_parameters(net)
    opt = torch.optim.Adam(net.parameters(), lr=1e-5)
    src = torch.rand(BATCH, 3, resolution, resolution, device=device)
    dst = torch.rand(BATCH, 3, resolution, resolution, device=device)

    def bare() -> None:
        opt.zero_grad()
        a, am, b, bm = net(src, dst)
        ((a - src).square().mean() + (b - dst).square().mean() + am.mean() + bm.mean()).backward()
        opt.step()

    alone, _ = _timed(bare, max(3, min(steps, 10)), max_seconds / 2, sync)
    return {"preset": preset, "model": kind, "parameters": params, "steps_timed": steps, "s_per_it": full,
            "it_per_s": 1 / full, "network_only_s": alone, "peak_rss_mib": peak_rss, "peak_gpu_mib": peak_gpu,
            "device": str(device), "threads": torch.get_num_threads()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--resolution", type=int, default=128, help="network resolution (a multiple of 16)")
    ap.add_argument("--presets", nargs="+", choices=("cpu", "gpu"), default=["cpu", "gpu"])
    ap.add_argument("--iterations", type=int, default=24, help="timed steps per configuration (at most)")
    ap.add_argument("--max-seconds", type=float, default=150.0,
                    help="stop timing a configuration after this long (at least 3 steps are timed)")
    ap.add_argument("--workspace", type=Path, default=None,
                    help="a workspace with dst and src faces (default: extract 48 frames of the shared pair)")
    ap.add_argument("--only", nargs=2, metavar=("PRESET", "MODEL"), default=None, help=argparse.SUPPRESS)
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    if args.only:                                      # one configuration, in a process of its own
        print(json.dumps(measure_one(args.workspace, *args.only, args.resolution, args.iterations,
                                     args.max_seconds)))
        return
    results, ratios = [], []
    with tempfile.TemporaryDirectory() as tmp:
        ws = args.workspace or make_workspace(Path(tmp))
        for preset, kind in [(preset, kind) for preset in args.presets for kind in ("df", "liae")]:
            res = subprocess.run([sys.executable, "-m", "benchmarks.autoencoder_speed", "--only", preset, kind,
                                  "--workspace", str(ws), "--resolution", str(args.resolution),
                                  "--iterations", str(args.iterations),
                                  "--max-seconds", str(args.max_seconds)],
                                 capture_output=True, text=True, cwd=ROOT)
            if res.returncode != 0:
                sys.exit(f"{preset} {kind} failed: {res.stderr.strip().splitlines()[-1:]}")
            r = json.loads(res.stdout.strip().splitlines()[-1])
            results.append(r)
            ratios.append({"name": f"{kind} {preset}: train step / network alone", "value": r["s_per_it"],
                           "baseline": r["network_only_s"], "unit": "s", "ratio": r["s_per_it"] / r["network_only_s"],
                           "target": None})
            gpu = f", peak GPU {r['peak_gpu_mib']:.0f} MiB" if r["peak_gpu_mib"] is not None else ""
            print(f"{kind:4s} preset {preset}: {r['parameters'] / 1e6:6.2f}M parameters, {r['it_per_s']:6.3f} it/s "
                  f"({r['s_per_it']:.2f} s/it over {r['steps_timed']} steps; network alone {r['network_only_s']:.2f} "
                  f"s, x{r['s_per_it'] / r['network_only_s']:.2f}); peak RSS {r['peak_rss_mib']:.0f} MiB{gpu}",
                  flush=True)
    print(f"resolution {args.resolution}, batch {BATCH}, device {results[0]['device']}, torch threads "
          f"{results[0]['threads']}")
    if args.json:
        args.json.write_text(json.dumps({"resolution": args.resolution, "batch": BATCH, "results": results,
                                         "ratios": ratios}, indent=2))


if __name__ == "__main__":
    main()
