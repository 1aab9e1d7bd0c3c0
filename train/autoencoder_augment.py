"""Training samples of the autoencoders, DeepFaceLab's way: a warped input, an unwarped target.

An autoencoder shown the very image it must reproduce learns to copy pixels; one shown a
smoothly distorted face and asked for the undistorted one has to learn what the face
looks like, and that is what lets it paint the src face from a dst face's code. So per
sample:

* **random warp** (input only): a coarse grid of 2, 4 or 8 cells a side whose inner
  nodes move by a random normal offset (about a quarter of a cell), spread smoothly
  (bilinearly, as DeepFaceLab) over the crop;
* **random jitter** (input and target alike, and the masks): rotation up to 10 degrees,
  scale by up to 5 %, shift by up to 5 % of the side;
* **random flip** (input and target alike): half the faces are mirrored.

Everything is drawn from the trainer's torch generator, in a fixed amount per sample
whichever parts are switched on, so a resumed run draws the same samples as an
uninterrupted one. Geometry is applied with ``grid_sample`` on whole batches.
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

MAX_ROTATION_DEG = 10.0
MAX_SCALE = 0.05
MAX_SHIFT = 0.05              # of the side
FLIP_P = 0.5
WARP_CELLS = (2, 4, 8)        # cells a side of the warp grid, one chosen per sample
WARP_STRENGTH = 0.24          # node offset: standard deviation, in cells
_NODES = max(WARP_CELLS) + 1


@dataclass
class Augmentation:
    """One batch's random geometry: drawn once, applied to the input, the target and their masks."""

    theta: Tensor              # (N, 2, 3): output -> source, normalised coordinates (affine_grid's theta)
    offsets: Tensor            # (N, R, R, 2): the warp, in normalised coordinates (zeros when off)

    def grid(self, warp: bool) -> Tensor:
        """(N, R, R, 2) sampling grid: the jitter and flip, with the warp (the input) or without (the target)."""
        n, r = self.offsets.shape[:2]
        base = F.affine_grid(torch.eye(2, 3, device=self.theta.device).expand(n, 2, 3), [n, 1, r, r],
                             align_corners=False)
        points = base + self.offsets if warp else base
        return points @ self.theta[:, :, :2].transpose(1, 2)[:, None] + self.theta[:, None, None, :, 2]

    def apply(self, images: Tensor, warp: bool) -> Tensor:
        """``images`` (N, C, R, R) float, resampled; edges repeat outward."""
        return F.grid_sample(images, self.grid(warp).to(images.dtype), mode="bilinear", padding_mode="border",
                             align_corners=False)


def draw(n: int, resolution: int, generator: torch.Generator, *, warp: bool = True, flip: bool = True,
         jitter: bool = True, device: torch.device | None = None) -> Augmentation:
    """``n`` samples' random geometry from ``generator`` (the same draws whatever is switched off)."""
    u = torch.rand(n, 6, generator=generator, device=generator.device).to(torch.float64)
    nodes = torch.randn(n, 2, _NODES, _NODES, generator=generator, device=generator.device).to(torch.float64)
    angle = np.radians(MAX_ROTATION_DEG) * (2 * u[:, 0] - 1)
    scale = 1 + MAX_SCALE * (2 * u[:, 1] - 1)
    shift = 2 * MAX_SHIFT * (2 * u[:, 2:4] - 1)          # the side is 2 in normalised coordinates
    mirror = (u[:, 4] < FLIP_P) & flip
    if not jitter:
        angle, scale, shift = torch.zeros_like(angle), torch.ones_like(scale), torch.zeros_like(shift)
    cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale
    theta = torch.zeros(n, 2, 3, dtype=torch.float64)
    theta[:, 0, 0], theta[:, 0, 1], theta[:, 1, 0], theta[:, 1, 1] = cos, -sin, sin, cos
    theta[:, :, 2] = shift
    theta[:, :, 0] *= torch.where(mirror, -1.0, 1.0)[:, None]       # mirror: x -> -x before the jitter
    dev = device or torch.device("cpu")
    if warp:
        # every sample's node grid refined to the finest grid, exactly (a bilinear surface over a coarse cell is
        # bilinear over each finer cell inside it), so one interpolation, on the device, spreads them all
        cells = torch.tensor(WARP_CELLS)[(u[:, 5] * len(WARP_CELLS)).long().clamp(max=len(WARP_CELLS) - 1)]
        fine = torch.zeros(n, 2, _NODES, _NODES, dtype=torch.float64)
        for c in WARP_CELLS:
            which = (cells == c).nonzero()[:, 0]
            grid = torch.zeros(len(which), 2, c + 1, c + 1, dtype=torch.float64)
            grid[:, :, 1:-1, 1:-1] = nodes[which, :, :c - 1, :c - 1] * WARP_STRENGTH * 2 / c   # border nodes stay
            fine[which] = F.interpolate(grid, size=(_NODES, _NODES), mode="bilinear", align_corners=True)
        offsets = F.interpolate(fine.float().to(dev), size=(resolution, resolution), mode="bilinear",
                                align_corners=True).permute(0, 2, 3, 1)
    else:
        offsets = torch.zeros(n, resolution, resolution, 2, device=dev)
    return Augmentation(theta.float().to(dev), offsets)


def eyes_mouth_masks(landmarks: np.ndarray, resolution: int) -> np.ndarray:
    """(N, R, R) uint8: the eyes and the mouth of each face from its 68 aligned landmarks, grown and softened.

    The hulls of each eye (36-41, 42-47) and of the mouth's outer lip line (48-59), dilated
    by side/32 and blurred by side/16, as DeepFaceLab draws its eyes-and-mouth priority mask.
    """
    grow = max(1, resolution // 32)
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (grow, grow))
    blur = resolution // 16 | 1
    out = np.zeros((len(landmarks), resolution, resolution), np.uint8)
    for i, pts in enumerate(landmarks):
        m = np.zeros((resolution, resolution), np.uint8)
        for part in (pts[36:42], pts[42:48], pts[48:60]):
            cv2.fillConvexPoly(m, cv2.convexHull(np.round(part).astype(np.int32)), 255)
        m = cv2.dilate(m, kernel)
        out[i] = cv2.GaussianBlur(m, (blur, blur), 0)
    return out
