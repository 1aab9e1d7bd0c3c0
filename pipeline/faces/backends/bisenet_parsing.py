"""Face-parsing mask (``--masker parsing``): BiSeNet reading facexlib's ``parsing_bisenet.pth``.

Why: the landmark hull covers whatever lies inside the face outline, including a hand,
a microphone or hair over the face, and the swap then paints a face over them. A
parsing network labels every pixel (19 CelebAMask-HQ classes); the mask keeps only the
face's own parts, so occluders fall outside it and stay visible after convert.

facexlib's code imports torchvision, which cannot load here, so the network is defined
in this module with facexlib's parameter names (the published file loads key for key)
and facexlib is never imported. The context path's ResNet-18 is the shared
torchvision-named body; the "spatial path" is, as in facexlib, the ResNet's stride-8
feature.
"""
from __future__ import annotations

import threading

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from pipeline.core.device import describe_device
from pipeline.faces.backends.base import Masker
from pipeline.faces.backends.checkpoint import ready_network
from pipeline.faces.backends.resnet import resnet18_body

WEIGHTS_KEY = "bisenet-parsing"
INPUT_SIZE = 512
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

#: The 19 labels, in the network's output order (CelebAMask-HQ as facexlib uses it).
CLASSES = ("background", "skin", "l_brow", "r_brow", "l_eye", "r_eye", "eye_g", "l_ear", "r_ear", "ear_r",
           "nose", "mouth", "u_lip", "l_lip", "neck", "neck_l", "cloth", "hair", "hat")
#: What the mask keeps: the face itself, the part a swap replaces. Glasses (``eye_g``) are
#: kept: the lenses lie over the eyes, and leaving them out would cut holes exactly where
#: the swapped identity matters most (and blend seams around the eyes). Ears, neck, hair,
#: hat, cloth and earrings/necklaces are left out: they are outside DeepFaceLab's face
#: area and not replaced; hands and microphones are no class of the face, so they drop
#: out of the mask without being named.
FACE_CLASSES = ("skin", "l_brow", "r_brow", "l_eye", "r_eye", "eye_g", "nose", "mouth", "u_lip", "l_lip")
FACE_LABELS = tuple(CLASSES.index(c) for c in FACE_CLASSES)


class ConvBNReLU(nn.Module):
    """conv (no bias) + batch norm + ReLU, keys ``conv.*`` and ``bn.*``."""

    def __init__(self, cin: int, cout: int, kernel: int = 3) -> None:
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, kernel, padding=kernel // 2, bias=False)
        self.bn = nn.BatchNorm2d(cout)

    def forward(self, x: Tensor) -> Tensor:
        return F.relu(self.bn(self.conv(x)))


class AttentionRefinement(nn.Module):
    """3x3 conv, then channels re-weighted by a sigmoid of their global average."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.conv = ConvBNReLU(cin, cout)
        self.conv_atten = nn.Conv2d(cout, cout, 1, bias=False)
        self.bn_atten = nn.BatchNorm2d(cout)

    def forward(self, x: Tensor) -> Tensor:
        feat = self.conv(x)
        weight = torch.sigmoid(self.bn_atten(self.conv_atten(feat.mean((2, 3), keepdim=True))))
        return feat * weight


class ContextPath(nn.Module):
    """ResNet-18 plus attention refinement of its stride-16/32 features and a global context term."""

    def __init__(self) -> None:
        super().__init__()
        self.resnet = resnet18_body()
        self.arm16 = AttentionRefinement(256, 128)
        self.arm32 = AttentionRefinement(512, 128)
        self.conv_head32 = ConvBNReLU(128, 128)
        self.conv_head16 = ConvBNReLU(128, 128)
        self.conv_avg = ConvBNReLU(512, 128, kernel=1)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        feat8, feat16, feat32 = self.resnet(x)
        context = self.conv_avg(feat32.mean((2, 3), keepdim=True))     # (N, 128, 1, 1), broadcast below
        up32 = self.conv_head32(F.interpolate(self.arm32(feat32) + context, size=feat16.shape[2:], mode="nearest"))
        up16 = self.conv_head16(F.interpolate(self.arm16(feat16) + up32, size=feat8.shape[2:], mode="nearest"))
        return feat8, up16, up32


class FeatureFusion(nn.Module):
    """Concatenate the two paths, 1x1 conv, and add a channel-attention re-weighted copy."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.convblk = ConvBNReLU(cin, cout, kernel=1)
        self.conv1 = nn.Conv2d(cout, cout // 4, 1, bias=False)
        self.conv2 = nn.Conv2d(cout // 4, cout, 1, bias=False)

    def forward(self, spatial: Tensor, context: Tensor) -> Tensor:
        feat = self.convblk(torch.cat([spatial, context], 1))
        weight = torch.sigmoid(self.conv2(F.relu(self.conv1(feat.mean((2, 3), keepdim=True)))))
        return feat * weight + feat


class Output(nn.Module):
    """3x3 ConvBNReLU then a 1x1 conv to the class scores."""

    def __init__(self, cin: int, mid: int, classes: int) -> None:
        super().__init__()
        self.conv = ConvBNReLU(cin, mid)
        self.conv_out = nn.Conv2d(mid, classes, 1, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv_out(self.conv(x))


class BiSeNet(nn.Module):
    """(N, 3, H, W) ImageNet-normalised RGB -> (N, classes, H, W) class scores.

    The two auxiliary outputs (``conv_out16``/``conv_out32``, training only) are defined
    so the published file loads strictly, but inference does not run them.
    """

    def __init__(self, classes: int = len(CLASSES)) -> None:
        super().__init__()
        self.cp = ContextPath()
        self.ffm = FeatureFusion(256, 256)
        self.conv_out = Output(256, 256, classes)
        self.conv_out16 = Output(128, 64, classes)
        self.conv_out32 = Output(128, 64, classes)

    def forward(self, x: Tensor) -> Tensor:
        feat8, context8, _ = self.cp(x)
        out = self.conv_out(self.ffm(feat8, context8))
        return F.interpolate(out, size=x.shape[2:], mode="bilinear", align_corners=True)


def labels_to_mask(labels: np.ndarray, size: int, keep: tuple[int, ...] = FACE_LABELS) -> np.ndarray:
    """(size, size) uint8 0/255 mask of the pixels whose label is in ``keep``.

    The binary map is resized with linear interpolation and thresholded at half, so a
    512 px label map gives smooth edges at any aligned size instead of nearest-neighbour steps.
    """
    face: np.ndarray = np.where(np.isin(labels, keep), 255, 0).astype(np.uint8)
    if face.shape != (size, size):
        interp = cv2.INTER_AREA if size < face.shape[0] else cv2.INTER_LINEAR
        face = cv2.resize(face, (size, size), interpolation=interp)
    return np.where(face >= 128, 255, 0).astype(np.uint8)


class ParsingMasker(Masker):
    """``--masker parsing``: the union of the face classes of BiSeNet's parsing of the aligned face."""

    name = "parsing"

    def __init__(self) -> None:
        self.net, self.weights, self.device = ready_network(WEIGHTS_KEY, BiSeNet())
        self._lock = threading.Lock()
        self.description = (f"BiSeNet face parsing (facexlib weights {self.weights}) on "
                            f"{describe_device(self.device)}; mask = {', '.join(FACE_CLASSES)}")

    def labels(self, aligned: np.ndarray) -> np.ndarray:
        """(512, 512) class index of every pixel of an RGB uint8 face."""
        rgb = cv2.resize(aligned, (INPUT_SIZE, INPUT_SIZE), interpolation=cv2.INTER_LINEAR)
        x = (rgb.astype(np.float32) / 255.0 - np.asarray(IMAGENET_MEAN, np.float32)) / np.asarray(IMAGENET_STD,
                                                                                                 np.float32)
        t = torch.from_numpy(np.ascontiguousarray(x.transpose(2, 0, 1)))[None].to(self.device)
        with self._lock, torch.inference_mode():
            scores = self.net(t)
        return scores[0].argmax(0).to(torch.uint8).cpu().numpy()

    def mask(self, aligned: np.ndarray | None, landmarks: np.ndarray, size: int,  # noqa: ARG002
             dense: np.ndarray | None = None) -> np.ndarray:
        if aligned is None:
            raise ValueError("the parsing masker needs the aligned face image (it was given None); "
                             "landmark-only callers must use --masker hull")
        if aligned.ndim != 3 or aligned.shape[2] != 3:
            raise ValueError(f"the parsing masker needs an (H, W, 3) RGB image, not shape {aligned.shape}")
        return labels_to_mask(self.labels(aligned), size)
