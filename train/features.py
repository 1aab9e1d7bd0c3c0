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

from pipeline.face_chip import CHIP_SIZE, aligned_to_chip
from pipeline.face_net import load_face_net
from pipeline.errors import UserError


def chip_grid(landmarks: np.ndarray, resolution: int, device: torch.device) -> torch.Tensor:
    """affine_grid thetas (B, 2, 3) sampling each face's chip out of its aligned crop."""
    to_norm_in = np.array([[2.0 / resolution, 0, 1.0 / resolution - 1], [0, 2.0 / resolution, 1.0 / resolution - 1],
                           [0, 0, 1]])
    half = CHIP_SIZE / 2.0
    from_norm_out = np.array([[half, 0, half - 0.5], [0, half, half - 0.5], [0, 0, 1]])
    thetas = []
    for pts in landmarks:
        m = np.vstack([aligned_to_chip(pts), [0, 0, 1]])          # aligned px -> chip px
        thetas.append((to_norm_in @ np.linalg.inv(m) @ from_norm_out)[:2])
    return torch.as_tensor(np.stack(thetas), dtype=torch.float32, device=device)


def to_chips(images: torch.Tensor, thetas: torch.Tensor) -> torch.Tensor:
    """(B,3,R,R) in [0,1] -> (B,3,150,150) in 0..255, differentiable."""
    grid = F.affine_grid(thetas, (images.shape[0], images.shape[1], CHIP_SIZE, CHIP_SIZE), align_corners=False)
    # "border": where the chip reaches past the crop, repeat the crop's edge (as
    # pipeline.face_chip.chip_from_aligned does; closer to the frame chip than black)
    return F.grid_sample(images, grid.to(images.dtype), mode="bilinear", padding_mode="border",
                         align_corners=False) * 255.0


@dataclass
class Layers:
    content: list[str]
    style: list[str]


class FaceFeatures:
    """dlib ResNet features of aligned faces (see module docstring)."""

    name = "dlib"
    default_layers = Layers(content=["level2"], style=["level1", "level2"])

    def __init__(self, device: torch.device, resolution: int) -> None:
        self.net = load_face_net(device)
        self.device, self.resolution = device, resolution
        self.taps = set(self.net.taps)

    def prepare(self, landmarks: np.ndarray) -> torch.Tensor:
        """Per-batch geometry (the chip warps); computed once per batch, reused by every call."""
        return chip_grid(landmarks, self.resolution, self.device)

    def features(self, images: torch.Tensor, geom: torch.Tensor, taps: list[str]) -> dict[str, torch.Tensor]:
        return self.net.features(to_chips(images, geom), taps)

    def masks(self, masks: torch.Tensor, geom: torch.Tensor) -> torch.Tensor:
        return to_chips(masks.expand(-1, 3, -1, -1), geom)[:, :1] / 255.0

    def descriptor(self, images: torch.Tensor, geom: torch.Tensor) -> torch.Tensor:
        return self.net(to_chips(images, geom))


class VGGFeatures:
    """ImageNet VGG19 features of the aligned crop (the paper's loss network)."""

    name = "vgg19"
    default_layers = Layers(content=["relu4_2"], style=["relu3_1", "relu4_1"])

    def __init__(self, device: torch.device, resolution: int) -> None:
        from train.vgg19 import load_vgg19
        self.net = load_vgg19(device)
        self.device, self.resolution = device, resolution
        self.taps = {f"relu{b}_{i}" for b, n in ((1, 2), (2, 2), (3, 4), (4, 4), (5, 4)) for i in range(1, n + 1)}

    def prepare(self, landmarks: np.ndarray) -> None:
        return None

    def features(self, images: torch.Tensor, geom, taps: list[str]) -> dict[str, torch.Tensor]:
        return self.net.features(images, taps)

    def masks(self, masks: torch.Tensor, geom) -> torch.Tensor:
        return masks


FEATURES = {"dlib": FaceFeatures, "vgg19": VGGFeatures}


def create_features(name: str, device: torch.device, resolution: int):
    if name not in FEATURES:
        raise UserError(f"unknown --features {name}; choose one of: {', '.join(FEATURES)}")
    return FEATURES[name](device, resolution)


def check_layers(extractor, layers: Layers) -> None:
    unknown = [t for t in layers.content + layers.style if t not in extractor.taps]
    if unknown:
        raise UserError(f"--features {extractor.name} has no layer(s) {', '.join(unknown)}; choose from "
                        f"{', '.join(sorted(extractor.taps))}")
