"""Figure: our light loss keeps shading but lets identity detail change.

Takes frame 0 of a real 512x512 clip, crops the face (default rows 130:430, cols 110:410,
which holds forehead to lips; resized to 128), and makes three variants:
  (a) identity-like detail change: sharpened skin/features and the lips' colour shifted,
  (b) relit: a left-to-right shading ramp multiplied in (left side darker),
  (c) both.
Prints ``light_loss`` of each against the original (inside an elliptic face mask, and
without a mask) and writes a side-by-side PNG strip with the values drawn on it.
Usage: python -m benchmarks.light_loss_figure [--video PATH] [--out PNG]
"""
from __future__ import annotations

import argparse
import subprocess
from pathlib import Path

import cv2
import numpy as np
import torch

from train.losses import light_loss

ROOT = Path(__file__).resolve().parents[1]


DEFAULT_VIDEO = ROOT.parent / "shared" / "data" / "videos" / "WDA_KatieHill_000.mp4"
SIDE, RES = 512, 128


def first_frame(video: Path) -> np.ndarray:
    """Frame 0 as (512,512,3) uint8 RGB, decoded by the imageio-ffmpeg binary."""
    import imageio_ffmpeg
    raw = subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-v", "error", "-i", str(video), "-frames:v", "1",
                          "-vf", f"scale={SIDE}:{SIDE}", "-f", "rawvideo", "-pix_fmt", "rgb24", "-"],
                         check=True, capture_output=True).stdout
    return np.frombuffer(raw, np.uint8)[: SIDE * SIDE * 3].reshape(SIDE, SIDE, 3)


def ellipse_mask(cx: float, cy: float, ax: float, ay: float, feather: float = 3.0) -> np.ndarray:
    """(RES,RES) float mask in [0,1]: 1 inside the ellipse, soft edge ``feather`` px wide."""
    yy, xx = np.mgrid[0:RES, 0:RES].astype(np.float32)
    r = np.sqrt(((xx - cx) / ax) ** 2 + ((yy - cy) / ay) ** 2)
    return np.clip((1.0 - r) * min(ax, ay) / feather + 0.5, 0.0, 1.0)


def detail_change(img: np.ndarray) -> np.ndarray:
    """Identity-like change: unsharp-masked features and lips shifted from red to plum."""
    blur = cv2.GaussianBlur(img, (0, 0), 1.5)
    out = np.clip(img + 1.5 * (img - blur), 0, 1)
    r, g, b = img[..., 0], img[..., 1], img[..., 2]
    redness = np.clip((r - 0.5 * (g + b) - 0.12) / 0.15, 0, 1)       # lips, not skin
    lips = redness * ellipse_mask(68, 107, 26, 13)
    plum = out.copy()
    plum[..., 0] = out[..., 0] * 0.85                                  # less red
    plum[..., 2] = np.clip(out[..., 2] * 1.4 + 0.05, 0, 1)             # more blue
    return np.clip(out * (1 - lips[..., None]) + plum * lips[..., None], 0, 1)


def relight(img: np.ndarray) -> np.ndarray:
    """Light from the right: a multiplicative ramp from 0.45 (left edge) to 1.15 (right edge)."""
    ramp = np.linspace(0.45, 1.15, RES, dtype=np.float32)[None, :, None]
    return np.clip(img * ramp, 0, 1)


def panel(img: np.ndarray, label: str, value: str, scale: int = 2) -> np.ndarray:
    """Upscaled BGR uint8 panel with a caption bar below."""
    big = cv2.resize((img * 255).round().astype(np.uint8), (RES * scale, RES * scale),
                     interpolation=cv2.INTER_NEAREST)[..., ::-1]
    bar = np.full((44, big.shape[1], 3), 255, np.uint8)
    cv2.putText(bar, label, (6, 17), cv2.FONT_HERSHEY_SIMPLEX, 0.48, (0, 0, 0), 1, cv2.LINE_AA)
    cv2.putText(bar, value, (6, 37), cv2.FONT_HERSHEY_SIMPLEX, 0.48, (0, 0, 160), 1, cv2.LINE_AA)
    return np.vstack([big, bar])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--video", type=Path, default=DEFAULT_VIDEO)
    ap.add_argument("--out", type=Path, default=Path("/tmp/light_loss_figure.png"))
    ap.add_argument("--crop", type=int, nargs=4, default=[130, 430, 110, 410], metavar=("Y0", "Y1", "X0", "X1"),
                    help="face region of the 512x512 frame")
    args = ap.parse_args()

    y0, y1, x0, x1 = args.crop
    face = cv2.resize(first_frame(args.video)[y0:y1, x0:x1], (RES, RES), interpolation=cv2.INTER_AREA)
    orig = face.astype(np.float32) / 255.0
    a = detail_change(orig)
    b = relight(orig)
    c = relight(a)
    mask_np = ellipse_mask(64, 66, 50, 62)

    def t(x: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray(x)).permute(2, 0, 1)[None].float()

    mask = torch.from_numpy(mask_np)[None, None]
    panels = [panel(orig, "original", "")]
    print(f"{'variant':22s} {'light (face mask)':>18s} {'light (no mask)':>16s} {'mean |diff|':>12s}")
    for name, img in (("(a) detail + lips", a), ("(b) relit", b), ("(c) both", c)):
        masked = light_loss(t(img), t(orig), mask).item()
        plain = light_loss(t(img), t(orig)).item()
        diff = float(np.abs(img - orig).mean())
        print(f"{name:22s} {masked:18.6f} {plain:16.6f} {diff:12.4f}")
        panels.append(panel(img, name, f"light = {masked:.5f}"))
    strip = np.hstack([np.pad(p, ((0, 0), (0, 4), (0, 0)), constant_values=255) for p in panels])
    args.out.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(args.out), strip)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
