"""Feature networks for the training losses, behind ``--features`` names.

``dlib`` (default, offline): our PyTorch port of dlib's face-recognition ResNet. It was
trained on 150x150 chips, so each aligned face is warped to its chip first, per face,
from its own landmarks, with a differentiable grid sample. Levels: ``level1`` (32
channels at 35x35) and ``level2`` (64 at 17x17) sit at the resolutions of VGG's relu3_1
and relu4_1 for a 128 face, which the paper uses for style; ``level2`` for content
keeps the layout of the face (pose, expression, gaze) while leaving texture free.

``vgg19``: the paper's ImageNet VGG19 (relu3_1, relu4_1 style; relu4_2 content), on the
aligned crop directly; its weights are downloaded once on a connected machine.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from pipeline.core.errors import UserError
from pipeline.faces.face_chip import CHIP_SIZE, MIN_BLUR, aligned_chip_warp, aligned_to_chip
from pipeline.faces.face_net import load_face_net
from pipeline.training.data import FaceSet


@dataclass
class ChipGeometry:
    """Per-face chip warps of a batch: affine_grid thetas (B, 2, 3), blur sigmas (B,) in crop px."""

    thetas: torch.Tensor
    sigmas: torch.Tensor

    def with_thetas(self, thetas: torch.Tensor) -> ChipGeometry:
        return ChipGeometry(thetas, self.sigmas)


def chip_geometry(landmarks: np.ndarray, source_scale: np.ndarray, downscale: np.ndarray, resolution: int,
                  device: torch.device, pyramid: bool = True) -> ChipGeometry:
    """The warps that cut each face's chip out of its crop as dlib would out of the frame.

    The matrix and blur are ``face_chip.aligned_chip_warp``'s (dlib's pyramid blur and grid
    offset at the face's source scale), less the blur the crop already got when it was
    averaged down from the stored aligned size to ``resolution`` (a box of ``downscale``
    pixels: variance (d^2 - 1) / 12 d^2 in crop pixels). Gap to the frame-chip descriptors,
    Hill/Ocasio-Cortez workspace, 50 faces each, 128 px: 0.057/0.042 with a bare warp,
    0.046/0.033 with this; dlib's full blur was worse at 128 (0.048/0.037). ``pyramid``
    False gives the bare warp (for comparisons).
    """
    to_norm_in = np.array([[2.0 / resolution, 0, 1.0 / resolution - 1], [0, 2.0 / resolution, 1.0 / resolution - 1],
                           [0, 0, 1]])
    half = CHIP_SIZE / 2.0
    from_norm_out = np.array([[half, 0, half - 0.5], [0, half, half - 0.5], [0, 0, 1]])
    thetas, sigmas = [], []
    for pts, scale, down in zip(landmarks, source_scale, downscale):
        matrix, sigma = aligned_chip_warp(pts, float(scale)) if pyramid else (aligned_to_chip(pts), 0.0)
        thetas.append((to_norm_in @ np.linalg.inv(np.vstack([matrix, [0, 0, 1]])) @ from_norm_out)[:2])
        sigmas.append(np.sqrt(max(0.0, sigma ** 2 - (down ** 2 - 1) / (12 * down ** 2))))
    return ChipGeometry(torch.as_tensor(np.stack(thetas), dtype=torch.float32, device=device),
                        torch.as_tensor(np.array(sigmas), dtype=torch.float32, device=device))


def blur_each(images: torch.Tensor, sigmas: torch.Tensor) -> torch.Tensor:
    """Gaussian blur with one sigma per image (reflect-101 border, as cv2.GaussianBlur); differentiable."""
    widest = float(sigmas.max())
    if widest <= MIN_BLUR:
        return images
    b, c, h, w = images.shape
    radius = int(np.ceil(3 * widest))
    x = torch.arange(-radius, radius + 1, device=images.device, dtype=images.dtype)
    s = sigmas.to(images.dtype).clamp_min(1e-3)[:, None]
    kernel = torch.exp(-0.5 * (x[None] / s) ** 2)
    kernel = torch.where((sigmas > MIN_BLUR)[:, None], kernel, (x == 0).to(images.dtype)[None])
    kernel = (kernel / kernel.sum(1, keepdim=True)).repeat_interleave(c, 0)     # (B*C, K)
    flat = images.reshape(1, b * c, h, w)
    flat = F.conv2d(F.pad(flat, (radius, radius, 0, 0), mode="reflect"), kernel[:, None, None, :], groups=b * c)
    flat = F.conv2d(F.pad(flat, (0, 0, radius, radius), mode="reflect"), kernel[:, None, :, None], groups=b * c)
    return flat.reshape(b, c, h, w)


def to_chips(images: torch.Tensor, geom: ChipGeometry, blur: bool = True) -> torch.Tensor:
    """(B,3,R,R) in [0,1] -> (B,3,150,150) in 0..255, differentiable."""
    if blur:
        images = blur_each(images, geom.sigmas)
    grid = F.affine_grid(geom.thetas, (images.shape[0], images.shape[1], CHIP_SIZE, CHIP_SIZE), align_corners=False)
    # "border": where the chip reaches past the crop, repeat the crop's edge (as
    # pipeline.faces.face_chip.chip_from_aligned does; closer to the frame chip than black)
    return F.grid_sample(images, grid.to(images.dtype), mode="bilinear", padding_mode="border",
                         align_corners=False) * 255.0


@dataclass
class Layers:
    content: list[str]
    style: list[str]


class LossFeatures:
    """A feature network for the losses: per-batch geometry, named feature maps, masks to match."""

    name = ""
    default_layers = Layers(content=[], style=[])

    def __init__(self, device: torch.device, resolution: int) -> None:
        self.device, self.resolution = device, resolution
        self.net = self.load(device)
        self.taps: set[str] = self.tap_names()

    def load(self, device: torch.device) -> torch.nn.Module:
        """The network with its weights, frozen, on ``device``."""
        raise NotImplementedError

    def tap_names(self) -> set[str]:
        """The layer names ``features`` accepts."""
        raise NotImplementedError

    def prepare(self, faces: FaceSet, idx) -> ChipGeometry | None:
        """Per-batch geometry (e.g. chip warps); computed once per batch, reused by every call."""
        return None

    def features(self, images: torch.Tensor, geom, taps: list[str]) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    def masks(self, masks: torch.Tensor, geom) -> torch.Tensor:
        """Face masks in the pixels the features see."""
        return masks

    def points(self, landmarks: torch.Tensor, geom) -> torch.Tensor:
        """(B,K,2) landmarks in crop pixels -> normalised coordinates (-1..1) of the feature maps."""
        return (landmarks * 2.0 + 1.0) / self.resolution - 1.0


class FaceFeatures(LossFeatures):
    """dlib ResNet features of aligned faces, warped to their chips (see module docstring)."""

    name = "dlib"
    default_layers = Layers(content=["level2"], style=["level1", "level2"])

    def load(self, device: torch.device) -> torch.nn.Module:
        return load_face_net(device)

    def tap_names(self) -> set[str]:
        return set(self.net.taps)

    def prepare(self, faces: FaceSet, idx) -> ChipGeometry:
        return chip_geometry(faces.landmarks[idx], faces.source_scale[idx], faces.downscale[idx], self.resolution,
                             self.device)

    def features(self, images: torch.Tensor, geom: ChipGeometry, taps: list[str]) -> dict[str, torch.Tensor]:
        return self.net.features(to_chips(images, geom), taps)

    def masks(self, masks: torch.Tensor, geom: ChipGeometry) -> torch.Tensor:
        return to_chips(masks.expand(-1, 3, -1, -1), geom, blur=False)[:, :1] / 255.0

    def points(self, landmarks: torch.Tensor, geom: ChipGeometry) -> torch.Tensor:
        """Crop pixels -> the chip's normalised coordinates (the inverse of each chip warp)."""
        crop = super().points(landmarks, geom)
        b = geom.thetas.shape[0]
        full = torch.cat([geom.thetas, torch.tensor([0, 0, 1.0], device=geom.thetas.device).expand(b, 1, 3)], dim=1)
        inv = torch.linalg.inv(full.double()).to(crop.dtype)
        return crop @ inv[:, :2, :2].transpose(1, 2) + inv[:, None, :2, 2]

    def descriptor(self, images: torch.Tensor, geom: ChipGeometry) -> torch.Tensor:
        return self.net(to_chips(images, geom))


class VGGFeatures(LossFeatures):
    """ImageNet VGG19 features of the aligned crop (the paper's loss network)."""

    name, default_layers = "vgg19", Layers(content=["relu4_2"], style=["relu3_1", "relu4_1"])

    def features(self, images: torch.Tensor, geom, taps: list[str]) -> dict[str, torch.Tensor]:
        return self.net.features(images, taps)     # on the aligned crop itself: no chip, no geometry

    def load(self, device: torch.device) -> torch.nn.Module:
        from train.vgg19 import load_vgg19
        return load_vgg19(device)

    def tap_names(self) -> set[str]:
        blocks = ((1, 2), (2, 2), (3, 4), (4, 4), (5, 4))          # (block, convolutions in it)
        return {f"relu{b}_{i}" for b, n in blocks for i in range(1, n + 1)}


def create_features(name: str, device: torch.device, resolution: int) -> LossFeatures:
    """The ``--features`` network by its registry name."""
    from pipeline.registries import FEATURES
    features: LossFeatures = FEATURES.load(name)(device, resolution)
    return features


def check_layers(extractor: LossFeatures, layers: Layers) -> None:
    unknown = [t for t in layers.content + layers.style if t not in extractor.taps]
    if unknown:
        raise UserError(f"--features {extractor.name} has no layer(s) {', '.join(unknown)}; choose from "
                        f"{', '.join(sorted(extractor.taps))}")
