"""Face descriptors per second: our PyTorch DlibFaceNet, the same network in ONNX Runtime (what extract and
evaluate run on the CPU), and dlib, on the same 150x150 chips.

Both run in this one process on the same real chips (one clip's frames, cut by
dlib.get_face_chip), batch 16, so the ratio is comparable across machines; ONNX Runtime gets
torch's thread count. CUDA (float32 and half) is measured too when torch sees a GPU.
Usage: python -m benchmarks.descriptor_speed [--video PATH] [--batch 16] [--repeat 5]
"""
from __future__ import annotations

import argparse
import json
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from pipeline.core.video import ffmpeg_exe
from pipeline.core.weights import model_path
from pipeline.faces.face_net import load_face_net

ROOT = Path(__file__).resolve().parents[1]


DEFAULT_VIDEO = ROOT.parent / "shared" / "data" / "videos" / "WDA_KatieHill_000.mp4"
SIDE = 512


def real_chips(video: Path, count: int) -> np.ndarray:
    """``count`` dlib chips from evenly spaced frames of a 512x512 clip."""
    import dlib
    step = max(1, 200 // count)
    select = f"not(mod(n\\,{step}))"
    raw = subprocess.run([ffmpeg_exe(), "-v", "error", "-i", str(video), "-vf", f"select={select}",
                          "-fps_mode", "passthrough", "-frames:v", str(count), "-f", "rawvideo",
                          "-pix_fmt", "rgb24", "-"], check=True, capture_output=True).stdout
    frames = np.frombuffer(raw, np.uint8).reshape(-1, SIDE, SIDE, 3)
    detector = dlib.get_frontal_face_detector()
    predictor = dlib.shape_predictor(str(model_path("landmarks-68")))
    chips = []
    for frame in frames:
        boxes = detector(frame, 0)
        if boxes:
            chips.append(dlib.get_face_chip(frame, predictor(frame, boxes[0]), size=150, padding=0.25))
    if not chips:
        raise SystemExit(f"no face found in {video}")
    while len(chips) < count:                      # pad by repeating if some frames had none
        chips.append(chips[len(chips) % len(chips)])
    return np.stack(chips[:count])


def best_seconds(fn: Callable[[], object], repeat: int, sync: Callable[[], None] = lambda: None) -> float:
    """Best of ``repeat`` timed runs after one warm-up (first call pays allocation/JIT costs)."""
    fn()
    sync()
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--video", type=Path, default=DEFAULT_VIDEO)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--repeat", type=int, default=5, help="timed runs of each; the best is reported")
    ap.add_argument("--json", type=Path, default=None, help="also write the figures here")
    args = ap.parse_args()

    import dlib
    chips = real_chips(args.video, args.batch)
    recognizer = dlib.face_recognition_model_v1(str(model_path("dlib-face-recognition")))
    chip_list = list(chips)
    x = torch.from_numpy(chips).permute(0, 3, 1, 2).float().contiguous()

    results: dict[str, float] = {}
    results["dlib_cpu"] = best_seconds(lambda: recognizer.compute_face_descriptor(chip_list), args.repeat)

    net = load_face_net("cpu")
    with torch.inference_mode():
        reference = np.array([np.array(d) for d in recognizer.compute_face_descriptor(chip_list)])
        parity = float(np.abs(net(x).double().numpy() - reference).max())
        results["ours_cpu_fp32"] = best_seconds(lambda: net(x), args.repeat)
        from pipeline.faces.face_net_onnx import OnnxFaceNet
        onnx_net = OnnxFaceNet(model_path("dlib-face-recognition"), torch.get_num_threads())
        parity_onnx = float(np.abs(onnx_net(chips) - reference).max())
        results["ours_onnxruntime_cpu"] = best_seconds(lambda: onnx_net(chips), args.repeat)
        if torch.cuda.is_available():
            sync = torch.cuda.synchronize
            gpu = load_face_net("cuda")
            xg = x.cuda()
            results["ours_cuda_fp32"] = best_seconds(lambda: gpu(xg), args.repeat, sync)
            gpu_half = load_face_net("cuda").half()
            xh = xg.half()
            results["ours_cuda_fp16"] = best_seconds(lambda: gpu_half(xh), args.repeat, sync)

    print(f"batch {args.batch} chips of 150x150 from {args.video.name}; torch threads "
          f"{torch.get_num_threads()}; best of {args.repeat}; max |ours - dlib| = {parity:.1e} (PyTorch), "
          f"{parity_onnx:.1e} (ONNX Runtime)")
    ms = {k: 1000.0 * v / args.batch for k, v in results.items()}
    for name, value in ms.items():
        ratio = ms["dlib_cpu"] / value
        print(f"{name:16s} {value:8.2f} ms/face  {1000.0 / value:8.1f} faces/s  "
              f"{ratio:6.2f}x dlib's speed")
    if args.json:
        ratios = [{"name": f"descriptor {k} / dlib", "value": ms[k], "baseline": ms["dlib_cpu"], "unit": "ms/face",
                   "ratio": ms[k] / ms["dlib_cpu"], "target": None} for k in ms if k != "dlib_cpu"]
        args.json.write_text(json.dumps({"batch": args.batch, "ms_per_face": ms, "max_abs_diff": parity,
                                         "max_abs_diff_onnx": parity_onnx,
                                         "ratios": ratios}, indent=2))


if __name__ == "__main__":
    main()
