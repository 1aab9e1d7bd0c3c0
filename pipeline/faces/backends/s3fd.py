"""S3FD face detector (Zhang et al. 2017) with face-alignment's published PyTorch weights.

DeepFaceLab finds faces with S3FD: a VGG16 trunk with six anchor-based heads (strides 4
to 128, square anchors four strides wide), so it finds small and turned faces that dlib's
HOG misses. The layer names below are those of face-alignment's port
(``face_alignment/detection/sfd/net_s3fd.py``, BSD-3-Clause), so its file
``s3fd-619a316812.pth`` loads with strict key matching; the module itself is written here
so that face-alignment (and its torchvision/numba dependencies) is not needed. Decoding
follows that port: BGR input minus the Caffe means, face probability > 0.05 as candidates,
SSD box decoding with variances (0.1, 0.2), non-maximum suppression at IoU 0.3, and faces
kept above probability 0.5.
"""
from __future__ import annotations

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from pipeline.core.device import describe_device
from pipeline.faces.backends.base import Detection, FaceDetector, by_area
from pipeline.faces.backends.checkpoint import ready_network
from pipeline.faces.backends.opencv_nets import nms as nms_indices

WEIGHTS_KEY = "s3fd"
#: Caffe VGG means, in the BGR order the network was trained with.
BGR_MEAN = (104.0, 117.0, 123.0)
VARIANCES = (0.1, 0.2)
CANDIDATE_SCORE = 0.05      # face probability for a location to be decoded at all
KEEP_SCORE = 0.5            # face probability of a reported face (face-alignment's filter_threshold)
NMS_IOU = 0.3
MAX_CANDIDATES = 2000       # bounds NMS cost on pathological frames (highest scores kept)
#: The smallest anchor is 16 px; faces of about this size are the smallest found reliably.
SMALLEST_FACE = 20
#: The cheap pass shrinks the image so a face of ``min_face`` px becomes this size.
CHEAP_FACE = 32
#: The slow pass runs at full resolution up to this longer side (VGG16 memory and time grow
#: with the pixels; faces that are tiny in a larger frame are rarely worth swapping).
MAX_SIDE = 1280
#: (VGG layer, conv widths) of the trunk up to conv5_3.
TRUNK = ((1, (64, 64)), (2, (128, 128)), (3, (256, 256, 256)), (4, (512, 512, 512)), (5, (512, 512, 512)))
#: Source layer of each detection head, its channels and its L2-norm scale (None: no norm).
HEADS = (("conv3_3", 256, 10.0), ("conv4_3", 512, 8.0), ("conv5_3", 512, 5.0),
         ("fc7", 1024, None), ("conv6_2", 512, None), ("conv7_2", 256, None))


class L2Norm(nn.Module):
    """Per-location L2 normalisation across channels with a learned per-channel scale (ParseNet)."""

    def __init__(self, channels: int, scale: float) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.full((channels,), scale))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x / (x.pow(2).sum(dim=1, keepdim=True).sqrt() + 1e-10) * self.weight.view(1, -1, 1, 1)


class S3FDNet(nn.Module):
    """The network; ``forward`` returns (face probability, box offsets) per head, finest first."""

    def __init__(self) -> None:
        super().__init__()
        cin = 3
        for block, widths in TRUNK:
            for i, cout in enumerate(widths, 1):
                self.add_module(f"conv{block}_{i}", nn.Conv2d(cin, cout, 3, padding=1))
                cin = cout
        # fc6/fc7 of VGG as convolutions; face-alignment's port pads fc6 by 3 (no dilation)
        self.fc6 = nn.Conv2d(512, 1024, 3, padding=3)
        self.fc7 = nn.Conv2d(1024, 1024, 1)
        self.conv6_1 = nn.Conv2d(1024, 256, 1)
        self.conv6_2 = nn.Conv2d(256, 512, 3, stride=2, padding=1)
        self.conv7_1 = nn.Conv2d(512, 128, 1)
        self.conv7_2 = nn.Conv2d(128, 256, 3, stride=2, padding=1)
        for name, channels, scale in HEADS:
            prefix = name if scale is None else f"{name}_norm"
            if scale is not None:
                self.add_module(prefix, L2Norm(channels, scale))
            # the finest head scores 3 background classes + face ("max-out background")
            self.add_module(f"{prefix}_mbox_conf", nn.Conv2d(channels, 4 if name == "conv3_3" else 2, 3, padding=1))
            self.add_module(f"{prefix}_mbox_loc", nn.Conv2d(channels, 4, 3, padding=1))

    def _conv(self, name: str, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.get_submodule(name)(x))

    def forward(self, x: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor]]:
        taps: dict[str, torch.Tensor] = {}
        h = x
        for block, widths in TRUNK:
            for i in range(1, len(widths) + 1):
                h = self._conv(f"conv{block}_{i}", h)
            taps[f"conv{block}_{len(widths)}"] = h
            h = F.max_pool2d(h, 2, 2)
        for name in ("fc6", "fc7", "conv6_1", "conv6_2", "conv7_1", "conv7_2"):
            h = self._conv(name, h)
            taps[name] = h
        out = []
        for name, _, scale in HEADS:
            prefix = name if scale is None else f"{name}_norm"
            feat = taps[name] if scale is None else self.get_submodule(prefix)(taps[name])
            conf = self.get_submodule(f"{prefix}_mbox_conf")(feat)
            loc = self.get_submodule(f"{prefix}_mbox_loc")(feat)
            if conf.shape[1] == 4:
                conf = torch.cat([conf[:, :3].amax(dim=1, keepdim=True), conf[:, 3:]], dim=1)
            out.append((conf.softmax(dim=1)[:, 1], loc))
        return out


def decode_level(prob: np.ndarray, loc: np.ndarray, stride: int,
                 threshold: float = CANDIDATE_SCORE) -> np.ndarray:
    """Candidate boxes (N, 5: x0, y0, x1, y1, score) of one head, in network-input pixels.

    ``prob`` is (H, W) face probability, ``loc`` (4, H, W) offsets. The anchor at cell (i, j)
    is centred at (stride/2 + j*stride, stride/2 + i*stride), 4*stride wide and high; offsets
    move the centre by ``loc * 0.1 * size`` and scale the size by ``exp(loc * 0.2)``.
    """
    rows, cols = np.nonzero(prob > threshold)
    if rows.size == 0:
        return np.zeros((0, 5), np.float64)
    size = 4.0 * stride
    cx = stride / 2 + cols * stride + loc[0, rows, cols] * VARIANCES[0] * size
    cy = stride / 2 + rows * stride + loc[1, rows, cols] * VARIANCES[0] * size
    w = size * np.exp(loc[2, rows, cols] * VARIANCES[1])
    h = size * np.exp(loc[3, rows, cols] * VARIANCES[1])
    return np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2, prob[rows, cols]], axis=1).astype(np.float64)


def nms(boxes: np.ndarray, iou: float = NMS_IOU) -> np.ndarray:
    """Rows of (N, 5) boxes kept by non-maximum suppression, highest score first (the shared one)."""
    return boxes[nms_indices(boxes[:, :4], boxes[:, 4], 0.0, iou)]


class S3FDDetector(FaceDetector):
    """S3FD on CUDA when available, else the CPU.

    ``upsample`` is accepted and ignored: S3FD's 16 px anchors already find small faces.
    ``min_face`` sets the cheap first pass: the image is shrunk so a face of ``min_face``
    pixels is still 32 px (comfortably above the 16 px anchors); thorough passes search
    again at full resolution (longer side capped at 1280) where the cheap pass found nothing.
    """

    name = "s3fd"

    def __init__(self, upsample: str = "auto", min_face: int = 80) -> None:  # noqa: ARG002 - see docstring
        self.net, path, self.device = ready_network(WEIGHTS_KEY, S3FDNet())
        self.min_face = max(SMALLEST_FACE, int(min_face))
        self.description = (f"S3FD (face-alignment's weights, our PyTorch definition) on "
                            f"{describe_device(self.device)}, first pass for faces >= {self.min_face} px, "
                            f"weights {path}")

    @torch.no_grad()
    def _run(self, image: np.ndarray, scale: float) -> np.ndarray:
        """Faces (N, 5) in image pixels, with the image resized by ``scale`` for the network."""
        h, w = image.shape[:2]
        if scale != 1.0:
            size = (max(1, round(w * scale)), max(1, round(h * scale)))
            image = cv2.resize(image, size, interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)
        sy, sx = image.shape[0] / h, image.shape[1] / w
        x = torch.from_numpy(np.ascontiguousarray(image[:, :, ::-1])).to(self.device, torch.float32)
        x = (x - torch.tensor(BGR_MEAN, device=self.device)).permute(2, 0, 1)[None]
        # at least 64 px a side so every pooling level has a cell (zero = the mean colour)
        x = F.pad(x, (0, max(0, 64 - x.shape[3]), 0, max(0, 64 - x.shape[2])))
        levels = []
        for k, (prob, loc) in enumerate(self.net(x)):
            levels.append(decode_level(prob[0].float().cpu().numpy(), loc[0].float().cpu().numpy(), 2 ** (k + 2)))
        found = np.concatenate(levels)
        if len(found) > MAX_CANDIDATES:
            found = found[np.argsort(-found[:, 4], kind="stable")[:MAX_CANDIDATES]]
        found = nms(found) if len(found) else found
        found = found[found[:, 4] > KEEP_SCORE]
        found[:, [0, 2]] /= sx
        found[:, [1, 3]] /= sy
        return found

    def detect(self, image: np.ndarray, thorough: bool = True) -> list[Detection]:
        longest = max(image.shape[:2])
        full = min(1.0, MAX_SIDE / longest)
        cheap = min(full, CHEAP_FACE / self.min_face)
        found = self._run(image, cheap)
        if not len(found) and thorough and cheap < full:
            found = self._run(image, full)
        return by_area([Detection((float(a), float(b), float(c), float(d)), float(s)) for a, b, c, d, s in found])
