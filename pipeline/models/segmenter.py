"""The learned face segmenter (DeepFaceLab's XSeg idea): aligned face in, face mask out.

It learns from the artist's hand-painted masks (``masks train``) and writes a mask for
every other face (``masks apply``), so hands, microphones, glasses and hair that cross
the face stay out of the mask the landmark hull would draw over them.

Why this shape: a small U-Net (two 3x3 conv + BatchNorm + ReLU per level, four stride-2
levels, bilinear upsampling with skip connections). The mask's edge must land within a
pixel or two of the painted one, which the skips carry from the full-resolution level;
the coarse levels see the whole face, which is what tells a hand from a cheek. With
width 16 it has about 1.2M parameters and trains at about 1.5 iterations a second
(batch 8, 128 px) on two CPU cores (``benchmarks/mask_quality.py`` measures it).

The model lives in ``workspace/mask_model/`` in the model store's format (``weights.pt``
state dict + ``options.json`` with ``model_type`` "segmenter"), apart from the face
model in ``workspace/model/``. Training is ``masks/training.py``.
"""
from __future__ import annotations

import hashlib
from pathlib import Path

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from pipeline.models.interface import Predictor, SingleNetModel
from pipeline.models.segmenter_options import RESOLUTIONS, WIDTHS
from pipeline.workspace.layout import MASK_MODEL_DIR  # noqa: F401 - its users import it from here

#: Folder of the workspace's mask model.
#: Sides the four stride-2 levels allow (a multiple of 16), and the widths (declared with ``masks train``'s
#: options, in a module without torch).
LEVELS = 4
#: Channels per level, as multiples of ``width``.
LEVEL_WIDTHS = (1, 2, 4, 6, 8)
#: The fix a tampered mask_model/options.json names.
_RETRAIN = "restore the file or retrain with 'python main.py masks train --fresh'"


class _Block(nn.Sequential):
    def __init__(self, cin: int, cout: int) -> None:
        super().__init__(nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True),
                         nn.Conv2d(cout, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class SegmenterNet(nn.Module):
    """U-Net: (N, 3, R, R) RGB in [0, 1] -> (N, 1, R, R) logits of "this pixel is face"."""

    def __init__(self, resolution: int = 128, width: int = 16) -> None:
        super().__init__()
        self.resolution, self.width = resolution, width
        ch = [width * k for k in LEVEL_WIDTHS]
        self.stem = _Block(3, ch[0])
        self.down = nn.ModuleList(
            nn.Sequential(nn.Conv2d(ch[i], ch[i + 1], 3, stride=2, padding=1, bias=False),
                          nn.BatchNorm2d(ch[i + 1]), nn.ReLU(inplace=True), _Block(ch[i + 1], ch[i + 1]))
            for i in range(LEVELS))
        self.up = nn.ModuleList(_Block(ch[i + 1] + ch[i], ch[i]) for i in reversed(range(LEVELS)))
        self.head = nn.Conv2d(ch[0], 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = (x - 0.5) * 4.0
        skips = [self.stem(x)]
        for down in self.down:
            skips.append(down(skips[-1]))
        y = skips.pop()
        for up in self.up:
            skip = skips.pop()
            y = F.interpolate(y, size=skip.shape[-2:], mode="bilinear", align_corners=False)
            y = up(torch.cat([y, skip], 1))
        return self.head(y)


class _Probabilities(Predictor):
    def __init__(self, net: SegmenterNet, device: torch.device) -> None:
        self.net = net.to(device).eval()
        self.description = "float32"

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.net(x))


class SegmenterModel(SingleNetModel):
    """The segmenter behind the model interface, so the model store saves and loads it."""

    type_name = "segmenter"
    net_class = SegmenterNet
    resolutions, widths, what, retrain = RESOLUTIONS, WIDTHS, "mask model options", _RETRAIN

    def predictor(self, device: torch.device, precision: str = "float",
                  calibration: list[np.ndarray] | None = None) -> Predictor:
        assert isinstance(self.net, SegmenterNet)
        return _Probabilities(self.net, device)


def weights_hash(folder: Path) -> str:
    """Short hash of the model's weights file: recorded with every mask the model writes."""
    h = hashlib.sha256()
    with open(Path(folder) / "weights.pt", "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()[:16]


def to_batch(faces: list[np.ndarray], resolution: int, device: torch.device) -> torch.Tensor:
    """Aligned RGB uint8 faces of any size -> (N, 3, R, R) float in [0, 1]."""
    small = [f if f.shape[0] == resolution else cv2.resize(f, (resolution, resolution), interpolation=cv2.INTER_AREA)
             for f in faces]
    return torch.from_numpy(np.stack(small)).to(device).permute(0, 3, 1, 2).float().div_(255.0)


def probabilities_to_masks(prob: torch.Tensor, size: int) -> list[np.ndarray]:
    """(N, 1, R, R) probabilities -> (size, size) uint8 masks, 0 or 255, thresholded after a smooth upsample."""
    up = F.interpolate(prob.float(), size=(size, size), mode="bilinear", align_corners=False)
    return [(m[0] >= 0.5).to(torch.uint8).mul_(255).cpu().numpy() for m in up]


@torch.inference_mode()
def predict_masks(predictor: Predictor, faces: list[np.ndarray], resolution: int, device: torch.device,
                  size: int | None = None) -> list[np.ndarray]:
    """Masks of aligned faces at ``size`` (default: each batch's own face size, all equal)."""
    if not faces:
        return []
    prob = predictor(to_batch(faces, resolution, device))
    return probabilities_to_masks(prob, size or faces[0].shape[0])
