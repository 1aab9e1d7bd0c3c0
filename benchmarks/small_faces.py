"""Small, low-light faces: test material built from the Hill clip, and convert measured on it.

The shared clips show one large, well-lit face (about 250 px wide in a 512 px frame); the
detail and sharpening steps of convert were tuned there. Stage and event footage shows the
face at 60-120 px under dim light with sensor noise, where those steps drew halos and the
swap shook more than the footage (issue 27). ``small_face_clip`` makes such footage with
ground truth: every frame of the Hill clip shrunk so the face is ``face_px`` wide (slowly
zooming between the two ends, and panning, so that jitter matters), pasted into a 640x360
canvas whose background is the same frame blown up and blurred, darkened like a stage
(gamma, gain), with Gaussian sensor noise, and encoded as H.264 (ffmpeg from imageio-ffmpeg,
as the rest of the tool). The truth (``<out>.truth.json``) holds each frame's scale and
offset: source pixel (x, y) lands at (x * scale + dx, y * scale + dy), and the look (gamma, gain, noise, softness).

``measure`` extracts the clip as the dst set of a copy of a trained workspace (src set and
model kept), converts and evaluates it, and prints sharpness, jitter and identity.

Usage: python -m benchmarks.small_faces --clip /tmp/small/clip.mp4 [--workspace TRAINED_WS --out /tmp/small]
       [--convert-args "--smooth 3"]
"""
from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import subprocess
import sys
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np

from pipeline.core.errors import UserError

ROOT = Path(__file__).resolve().parents[1]
KATIE = ROOT.parent / "shared" / "data" / "videos" / "WDA_KatieHill_000.mp4"
#: Width of the Hill clip's face (landmark extent) in its 512 px frames.
SOURCE_FACE_PX = 253.0
CANVAS = (640, 360)
#: The stage look ``render_frame`` gives by default (recorded in the truth file).
LOOK = {"gamma": 1.6, "gain": 0.55, "noise": 2.0, "soft": 0.8}
FPS = 25


def _plan(frames: int, face_px: tuple[float, float], canvas: tuple[int, int]) -> list[tuple[float, float, float]]:
    """(scale, dx, dy) per frame: a slow zoom between the two face widths and back, and a pan."""
    w, h = canvas
    out = []
    for i in range(frames):
        t = i / max(frames - 1, 1)
        zoom = 0.5 - 0.5 * np.cos(2 * np.pi * t)              # 0 -> 1 -> 0: smooth at both ends
        scale = (face_px[0] + (face_px[1] - face_px[0]) * zoom) / SOURCE_FACE_PX
        side = 512 * scale
        cx = w * (0.35 + 0.3 * t)                              # a slow pan from left of centre to right
        cy = h * (0.5 + 0.04 * np.sin(2 * np.pi * t))
        out.append((float(scale), float(cx - side / 2), float(cy - side / 2)))
    return out


def _darken(image: np.ndarray, gamma: float, gain: float) -> np.ndarray:
    return 255.0 * gain * (image / 255.0) ** gamma


def render_frame(frame: np.ndarray, scale: float, dx: float, dy: float, canvas: tuple[int, int],
                 rng: np.random.Generator, gamma: float = 1.6, gain: float = 0.55,
                 noise: float = 2.0, soft: float = 0.8) -> np.ndarray:
    """One frame of the small clip: ``frame`` shrunk by ``scale`` at (dx, dy) over its own blurred blow-up,
    softened by a Gaussian of ``soft`` px (a stage camera's lens and debayering at this size), darkened by
    ``gamma`` and ``gain``, with Gaussian noise of ``noise`` grey levels (per channel)."""
    import cv2
    w, h = canvas
    back = cv2.GaussianBlur(cv2.resize(frame, (w, h), interpolation=cv2.INTER_AREA), (0, 0), 12)
    back = back.astype(np.float32) * 0.6
    move = np.array([[scale, 0, dx], [0, scale, dy]], np.float64)
    small = cv2.warpAffine(frame.astype(np.float32), move, (w, h), flags=cv2.INTER_AREA,
                           borderMode=cv2.BORDER_CONSTANT)
    # the pasted frame's edge fades over a few pixels: no hard rectangle for a detector to lock onto
    inside = cv2.warpAffine(np.ones(frame.shape[:2], np.float32), move, (w, h), flags=cv2.INTER_LINEAR)
    inside = cv2.GaussianBlur(np.clip(inside * 2 - 1, 0, 1), (0, 0), 2.0)[..., None]
    mixed = small * inside + back * (1 - inside)
    if soft > 0:
        mixed = cv2.GaussianBlur(mixed, (0, 0), soft)
    out = _darken(mixed, gamma, gain) + rng.normal(0.0, noise, mixed.shape)
    return np.clip(out + 0.5, 0, 255).astype(np.uint8)


def encode_clip(out: Path, frames: Iterable[np.ndarray], size: tuple[int, int], crf: int, what: str) -> None:
    """RGB ``frames`` of ``size`` (w, h) encoded as H.264 at ``FPS`` into ``out``, which appears only when complete.

    Shared by the benchmarks' test clips (this one, ``benchmarks.real_footage``), which render frame by frame
    and never hold the clip in memory; ``what`` names the caller in the one-line error.
    """
    from pipeline.core.video import ffmpeg_exe
    w, h = size
    tmp = out.with_name(f".{out.stem}.{os.getpid()}.tmp{out.suffix}")
    proc = subprocess.Popen([ffmpeg_exe(), "-v", "error", "-y", "-f", "rawvideo", "-pix_fmt", "rgb24",
                             "-s", f"{w}x{h}", "-framerate", str(FPS), "-i", "pipe:0", "-c:v", "libx264",
                             "-crf", str(crf), "-preset", "veryfast", "-pix_fmt", "yuv420p", str(tmp)],
                            stdin=subprocess.PIPE)
    assert proc.stdin is not None
    try:
        for frame in frames:
            proc.stdin.write(np.ascontiguousarray(frame).tobytes())
    finally:
        proc.stdin.close()
        rc = proc.wait()
    if rc != 0:
        tmp.unlink(missing_ok=True)
        raise UserError(f"{what}: ffmpeg failed (exit {rc}) writing {out}")
    tmp.replace(out)


def small_face_clip(out: Path, frames: int = 200, face_px: tuple[float, float] = (64.0, 100.0),
                    canvas: tuple[int, int] = CANVAS, crf: int = 24, seed: int = 0) -> Path:
    """Write the small, low-light Hill clip to ``out`` (kept when already there with the same settings).

    Why a builder and not a file: videos are not committed; the tests and the benchmark
    build it into a temp folder in a few seconds. Raises UserError on settings that
    cannot make the clip.
    """
    from pipeline.core.video import FrameReader, probe
    if not 1 <= frames <= 200:
        raise UserError(f"small_face_clip: frames {frames} out of range; the Hill clip has 200 (1-200)")
    if not 20 <= face_px[0] <= face_px[1] <= min(canvas) * 0.8:
        raise UserError(f"small_face_clip: face_px {face_px} must be two widths 20 <= low <= high <= "
                        f"{min(canvas) * 0.8:g} px (0.8 of the canvas's shorter side)")
    out = Path(out)
    settings = {"frames": frames, "face_px": list(face_px), "canvas": list(canvas), "crf": crf, "seed": seed,
                "look": LOOK}
    truth_path = out.with_name(out.name + ".truth.json")
    if out.is_file() and truth_path.is_file():
        if json.loads(truth_path.read_text()).get("settings") == settings:
            return out
    out.parent.mkdir(parents=True, exist_ok=True)
    plan = _plan(frames, face_px, canvas)
    rng = np.random.default_rng(seed)
    info = probe(KATIE)
    w, h = canvas

    def rendered() -> Iterator[np.ndarray]:
        for i, frame in FrameReader(KATIE, info.width, info.height):
            if i >= frames:
                break
            scale, dx, dy = plan[i]
            yield render_frame(frame, scale, dx, dy, canvas, rng)
    encode_clip(out, rendered(), (w, h), crf, "small_face_clip")
    truth = {"settings": settings, "source": str(KATIE),
             "frames": [{"scale": s, "dx": dx, "dy": dy, "face_px": s * SOURCE_FACE_PX} for s, dx, dy in plan]}
    truth_path.write_text(json.dumps(truth, indent=1))
    return out


# ----------------------------------------------------------------------------- measuring


def _run(*args: object) -> str:
    done = subprocess.run([sys.executable, str(ROOT / "main.py"), *map(str, args)], cwd=ROOT,
                          capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"main.py {' '.join(map(str, args))} failed:\n{done.stderr[-3000:]}")
    return done.stdout + done.stderr


def workspace_for(clip: Path, trained: Path, out: Path) -> Path:
    """``out/ws``: ``clip`` extracted as the dst set, ``trained``'s src input as the src set, a copy of its model.

    ``trained`` is only read; a workspace already made there (it has the model) is reused.
    """
    ws = out / "ws"
    if not (ws / "model").is_dir():
        src = json.loads((trained / "workspace.json").read_text())["sets"]["src"]
        _run("extract", "--input", clip, "-w", ws, "--min-face", 40)
        _run("extract", "--input", src["input"], "-w", ws, "--set", "src")
        shutil.copytree(trained / "model", ws / "model")
    return ws


def measure(clip: Path, trained: Path, out: Path, convert_args: list[str]) -> dict:
    """Extract ``clip`` as the dst set of a new workspace with ``trained``'s src input and model, convert,
    evaluate. ``trained`` is only read."""
    ws = workspace_for(clip, trained, out)
    result = ws / "result.mp4"
    _run("convert", "-w", ws, "-o", result, *convert_args)
    _run("evaluate", "-w", ws, "--video", result, "--reference", clip)
    report = json.loads((ws / "report" / "report.json").read_text())
    jit = report["jitter"]
    return {"sharpness": report["sharpness"], "jitter": jit,
            "jitter_ratio": jit["output"] / jit["reference"] if jit["output"] and jit["reference"] else None,
            "identity_to_src": report["identity_to_src"], "identity_to_dst": report["identity_to_dst"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clip", type=Path, default=Path("/tmp/small/clip.mp4"))
    parser.add_argument("--frames", type=int, default=200)
    parser.add_argument("--workspace", type=Path, help="a trained workspace to copy (not changed)")
    parser.add_argument("--out", type=Path, default=Path("/tmp/small"))
    parser.add_argument("--convert-args", default="")
    args = parser.parse_args()
    clip = small_face_clip(args.clip, args.frames)
    print(f"clip: {clip}")
    if args.workspace:
        result = measure(clip, args.workspace, args.out, shlex.split(args.convert_args))
        s, j = result["sharpness"], result["jitter"]
        print(f"sharpness median {s['median']:.3f} mean {s['mean']:.3f} (worst {s['worst']:.3f}, {s['count']} faces); "
              f"jitter output {j['output']:.4f} reference {j['reference']:.4f} x{result['jitter_ratio']:.2f}")
        # a swap that fails on dark faces can be steady and sharp: whether it changed who it shows is part of it
        to_src, to_dst = result["identity_to_src"]["mean"], result["identity_to_dst"]["mean"]
        print(f"identity to src {to_src:.3f}, to dst {to_dst:.3f} (mean distances; the main job: 0.35 and 0.78)")


if __name__ == "__main__":
    main()
