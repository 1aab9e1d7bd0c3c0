"""2D-FAN (Bulat & Tzimiropoulos 2017): the 68-point landmark network DeepFaceLab uses.

Four stacked hourglasses of Bulat's multi-scale residual blocks predict one 64x64 heatmap
per iBUG landmark from a 256x256 crop around the face box. The module names below are
those of face-alignment's ``FAN(4)`` (``face_alignment/models/fan.py``, BSD-3-Clause), so
its published state dict ``2DFAN4-11f355bf06.pth.tar`` loads with strict key matching;
the network is written here so face-alignment (numba, scikit-image) is not needed.

Weight format: face-alignment publishes this state dict since 2018 and its current code
loads it again with ``weights_only=True``; versions 1.2-1.4 used TorchScript archives
(``2DFAN4-cd938726ad.zip``, ``2DFAN4_1.6-c827573f02.zip``) instead. Loading a TorchScript
archive means ``torch.jit.load``, which builds and runs code from the archive, so those are
not supported: only the plain tensor file is read.

The crop and the heatmap decoding follow face-alignment (and DeepFaceLab's copy of it),
since the weights were trained for them: centre = box centre moved up by 0.12 of the box
height, scale = (width + height) / 195, crop side = 200 * scale, the same whole-pixel
window resized to 256 px; a landmark is the heatmap's arg-max moved a quarter pixel toward
the larger neighbour, plus half a pixel, mapped back to the image. Unlike face-alignment,
the result is not truncated to whole pixels.
"""
from __future__ import annotations

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from pipeline.core.device import describe_device
from pipeline.faces.backends.base import Landmarker
from pipeline.faces.backends.checkpoint import ready_network

WEIGHTS_KEY = "fan-2d"
STACKS = 4                 # 2DFAN-4
HOURGLASS_DEPTH = 4
WIDTH = 256
POINTS = 68
CROP = 256                 # network input side
HEATMAP = 64               # heatmap side (CROP / 4)
REFERENCE_SCALE = 195.0    # box (width + height) / scale, for S3FD-like boxes
SCALE_FACTOR = 200.0       # crop side in image pixels = SCALE_FACTOR * scale
CENTER_Y_OFFSET = 0.12     # box centre moved up by this fraction of the box height


class ConvBlock(nn.Module):
    """Pre-activated 3x3 convs of widths out/2, out/4, out/4, concatenated, plus a shortcut
    (1x1 conv after BN+ReLU when the width changes)."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        half, quarter = cout // 2, cout // 4
        self.bn1, self.conv1 = nn.BatchNorm2d(cin), nn.Conv2d(cin, half, 3, padding=1, bias=False)
        self.bn2, self.conv2 = nn.BatchNorm2d(half), nn.Conv2d(half, quarter, 3, padding=1, bias=False)
        self.bn3, self.conv3 = nn.BatchNorm2d(quarter), nn.Conv2d(quarter, quarter, 3, padding=1, bias=False)
        self.downsample: nn.Module | None = None
        if cin != cout:
            self.downsample = nn.Sequential(nn.BatchNorm2d(cin), nn.ReLU(), nn.Conv2d(cin, cout, 1, bias=False))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = self.conv1(F.relu(self.bn1(x)))
        b = self.conv2(F.relu(self.bn2(a)))
        c = self.conv3(F.relu(self.bn3(b)))
        shortcut = x if self.downsample is None else self.downsample(x)
        return torch.cat([a, b, c], dim=1) + shortcut


class HourGlass(nn.Module):
    """Recursive hourglass: at each level ``b1_<level>`` keeps the resolution, ``b2_<level>``
    works at half of it (then the next level, or ``b2_plus_1`` at the bottom), ``b3_<level>``
    follows, and the nearest-upsampled result is added to the kept branch."""

    def __init__(self, depth: int, width: int) -> None:
        super().__init__()
        self.depth = depth
        for level in range(depth, 0, -1):
            for branch in ("b1", "b2", "b3"):
                self.add_module(f"{branch}_{level}", ConvBlock(width, width))
        self.add_module("b2_plus_1", ConvBlock(width, width))

    def _level(self, level: int, x: torch.Tensor) -> torch.Tensor:
        keep = self.get_submodule(f"b1_{level}")(x)
        low = self.get_submodule(f"b2_{level}")(F.avg_pool2d(x, 2, stride=2))
        low = self._level(level - 1, low) if level > 1 else self.get_submodule("b2_plus_1")(low)
        low = self.get_submodule(f"b3_{level}")(low)
        return keep + F.interpolate(low, scale_factor=2, mode="nearest")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._level(self.depth, x)


class FAN(nn.Module):
    """Stem (7x7/2 conv, blocks, 2x2 average pool: 256 -> 64 px), then ``stacks`` hourglasses;
    each stack's heatmaps are fed back into the next. ``forward`` returns the last stack's
    (N, 68, 64, 64) heatmaps."""

    def __init__(self, stacks: int = STACKS) -> None:
        super().__init__()
        self.stacks = stacks
        self.conv1 = nn.Conv2d(3, 64, 7, stride=2, padding=3)
        self.bn1 = nn.BatchNorm2d(64)
        self.conv2 = ConvBlock(64, 128)
        self.conv3 = ConvBlock(128, 128)
        self.conv4 = ConvBlock(128, WIDTH)
        for i in range(stacks):
            self.add_module(f"m{i}", HourGlass(HOURGLASS_DEPTH, WIDTH))
            self.add_module(f"top_m_{i}", ConvBlock(WIDTH, WIDTH))
            self.add_module(f"conv_last{i}", nn.Conv2d(WIDTH, WIDTH, 1))
            self.add_module(f"bn_end{i}", nn.BatchNorm2d(WIDTH))
            self.add_module(f"l{i}", nn.Conv2d(WIDTH, POINTS, 1))
            if i < stacks - 1:
                self.add_module(f"bl{i}", nn.Conv2d(WIDTH, WIDTH, 1))
                self.add_module(f"al{i}", nn.Conv2d(POINTS, WIDTH, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.bn1(self.conv1(x)))
        x = self.conv4(self.conv3(F.avg_pool2d(self.conv2(x), 2, stride=2)))
        heat = x
        for i in range(self.stacks):
            y = self.get_submodule(f"top_m_{i}")(self.get_submodule(f"m{i}")(x))
            y = F.relu(self.get_submodule(f"bn_end{i}")(self.get_submodule(f"conv_last{i}")(y)))
            heat = self.get_submodule(f"l{i}")(y)
            if i < self.stacks - 1:
                x = x + self.get_submodule(f"bl{i}")(y) + self.get_submodule(f"al{i}")(heat)
        return heat


def crop_frame(box: tuple[float, float, float, float]) -> tuple[np.ndarray, float]:
    """(centre, scale) of the network's crop for a face box (x0, y0, x1, y1)."""
    x0, y0, x1, y1 = box
    centre = np.array([(x0 + x1) / 2.0, (y0 + y1) / 2.0 - (y1 - y0) * CENTER_Y_OFFSET])
    return centre, ((x1 - x0) + (y1 - y0)) / REFERENCE_SCALE


def to_crop(centre: np.ndarray, scale: float, resolution: float) -> np.ndarray:
    """2x3 affine from image pixels to a ``resolution``-sided crop (face-alignment's transform:
    a crop of side 200*scale centred on ``centre``)."""
    s = resolution / (SCALE_FACTOR * scale)
    return np.array([[s, 0.0, resolution * (0.5 - centre[0] / (SCALE_FACTOR * scale))],
                     [0.0, s, resolution * (0.5 - centre[1] / (SCALE_FACTOR * scale))]])


def crop_corners(centre: np.ndarray, scale: float) -> tuple[np.ndarray, np.ndarray]:
    """Whole-pixel (x, y) corners [ul, br) of the image window the crop is cut from.

    As in face-alignment: the inverse transform of the 1-based crop corners (1, 1) and
    (CROP, CROP), truncated toward zero.
    """
    inv = np.linalg.inv(np.vstack([to_crop(centre, scale, CROP), [0.0, 0.0, 1.0]]))
    ul = np.fix(inv @ [1.0, 1.0, 1.0])[:2].astype(int)
    br = np.fix(inv @ [CROP, CROP, 1.0])[:2].astype(int)
    return ul, np.maximum(br, ul + 1)


def crop_image(image: np.ndarray, centre: np.ndarray, scale: float) -> np.ndarray:
    """The CROP x CROP network input, cut exactly as face-alignment cuts it.

    The window [ul, br) is copied (black outside the image) and resized with bilinear
    interpolation, so the network sees the same pixels as with face-alignment.
    """
    ul, br = crop_corners(centre, scale)
    window = np.zeros((br[1] - ul[1], br[0] - ul[0], image.shape[2]), dtype=np.uint8)
    x0, y0 = max(0, ul[0]), max(0, ul[1])
    x1, y1 = min(br[0], image.shape[1]), min(br[1], image.shape[0])
    if x1 > x0 and y1 > y0:
        window[y0 - ul[1]:y1 - ul[1], x0 - ul[0]:x1 - ul[0]] = image[y0:y1, x0:x1]
    return cv2.resize(window, (CROP, CROP), interpolation=cv2.INTER_LINEAR)


def heatmap_peaks(heatmaps: np.ndarray) -> np.ndarray:
    """(P, 2) sub-pixel (x, y) of each of P (H, W) heatmaps, in heatmap pixels.

    The arg-max moves a quarter pixel toward its larger neighbour on each axis (where it
    has both neighbours), then half a pixel: face-alignment's and DeepFaceLab's decoding.
    """
    p, h, w = heatmaps.shape
    flat = heatmaps.reshape(p, h * w).argmax(axis=1)
    ys, xs = np.divmod(flat, w)
    pts = np.stack([xs, ys], axis=1).astype(np.float64)
    for i, (x, y) in enumerate(zip(xs, ys)):
        if 0 < x < w - 1 and 0 < y < h - 1:
            hm = heatmaps[i]
            pts[i] += 0.25 * np.sign([hm[y, x + 1] - hm[y, x - 1], hm[y + 1, x] - hm[y - 1, x]])
    return pts + 0.5


def heatmap_to_image(points: np.ndarray, centre: np.ndarray, scale: float) -> np.ndarray:
    """Heatmap-pixel points back to image pixels (the inverse of ``to_crop`` at HEATMAP side)."""
    return (points - to_crop(centre, scale, HEATMAP)[:, 2]) * (SCALE_FACTOR * scale / HEATMAP)


class FanLandmarker(Landmarker):
    """2D-FAN landmarks in a face box, on CUDA when available, else the CPU."""

    name = "fan"

    def __init__(self) -> None:
        self.net, path, self.device = ready_network(WEIGHTS_KEY, FAN(STACKS))
        self.description = (f"2D-FAN-4 (face-alignment's weights, our PyTorch definition) on "
                            f"{describe_device(self.device)}, weights {path}")

    @torch.no_grad()
    def landmarks(self, image: np.ndarray, box: tuple[float, float, float, float]) -> np.ndarray:
        centre, scale = crop_frame(box)
        crop = crop_image(image, centre, scale)
        x = torch.from_numpy(crop).to(self.device, torch.float32).permute(2, 0, 1)[None] / 255.0
        heat = self.net(x)[0].float().cpu().numpy()
        return heatmap_to_image(heatmap_peaks(heat), centre, scale).astype(np.float64)
