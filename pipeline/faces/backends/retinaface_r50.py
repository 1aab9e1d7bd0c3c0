"""RetinaFace with a ResNet-50 body, reading facexlib's ``detection_Resnet50_Final.pth``.

Why: dlib's detectors miss strongly turned, small and partly hidden faces that a
detector trained on WIDER FACE finds. facexlib publishes such a detector, but its code
imports torchvision, which cannot load here; so the network is defined in this module
(same parameter names as facexlib's ``RetinaFace``, so the published file loads key for
key) and facexlib is never imported. The weights are read from torch hub's checkpoints
folder and never downloaded by the tool (see ``pipeline.core.weights``).

Pipeline: RGB frame -> BGR minus the training mean (104, 117, 123), no scaling to 0..1
-> ResNet-50 stride 8/16/32 features -> FPN -> one SSH context module per level ->
1x1 heads (2 anchors per cell: face score, box offsets, 5 landmarks) -> boxes decoded
from the prior (anchor) boxes -> score threshold -> non-maximum suppression.
"""
from __future__ import annotations

import threading

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from pipeline.core.device import describe_device
from pipeline.faces.backends.base import Detection, FaceDetector, by_area, parse_upsample
from pipeline.faces.backends.checkpoint import ready_network
from pipeline.faces.backends.opencv_nets import nms as nms_indices
from pipeline.faces.backends.resnet import resnet50_body
from pipeline.faces.backends.retinaface import STRIDES, anchors, decode

WEIGHTS_KEY = "retinaface-r50"
#: Anchors, strides and box encoding are the MobileNet RetinaFace's (``pipeline.faces.backends.retinaface``).
#: Mean of the training images, BGR, on the 0..255 scale.
MEAN_BGR = (104.0, 117.0, 123.0)
#: facexlib's defaults: keep faces scoring above 0.8; boxes overlapping more than 0.4 IoU are one face.
SCORE_THRESHOLD = 0.8
NMS_THRESHOLD = 0.4
#: The cheap pass shrinks the frame so the smallest wanted face (``min_face``) is this many
#: pixels: twice the smallest anchor, a size the detector still finds reliably.
CHEAP_FACE = 32
#: The retry at twice the size is skipped on frames larger than this (cost grows with pixels).
RETRY_MAX_SIDE = 1000
CHANNELS = 256


def _conv_bn(cin: int, cout: int, kernel: int, relu: bool) -> nn.Sequential:
    """conv (no bias) + batch norm [+ ReLU]: keys ``<name>.0.weight``, ``<name>.1.*`` as facexlib's.

    facexlib builds these with LeakyReLU whose slope is 0 for 256 channels: a plain ReLU.
    """
    layers: list[nn.Module] = [nn.Conv2d(cin, cout, kernel, padding=kernel // 2, bias=False), nn.BatchNorm2d(cout)]
    if relu:
        layers.append(nn.ReLU(inplace=True))
    return nn.Sequential(*layers)


class FPN(nn.Module):
    """Feature pyramid: 1x1 lateral convs to 256 channels, top-down nearest upsampling and 3x3 merges."""

    def __init__(self, in_channels: tuple[int, ...], out: int) -> None:
        super().__init__()
        self.output1 = _conv_bn(in_channels[0], out, 1, relu=True)
        self.output2 = _conv_bn(in_channels[1], out, 1, relu=True)
        self.output3 = _conv_bn(in_channels[2], out, 1, relu=True)
        self.merge1 = _conv_bn(out, out, 3, relu=True)
        self.merge2 = _conv_bn(out, out, 3, relu=True)

    def forward(self, c3: Tensor, c4: Tensor, c5: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        p5 = self.output3(c5)
        p4 = self.merge2(self.output2(c4) + F.interpolate(p5, size=c4.shape[2:], mode="nearest"))
        p3 = self.merge1(self.output1(c3) + F.interpolate(p4, size=c3.shape[2:], mode="nearest"))
        return p3, p4, p5


class SSH(nn.Module):
    """Single Stage Headless context module: 3x3, "5x5" and "7x7" (stacked 3x3) branches, concatenated.

    Names follow facexlib's, including its lower-case ``conv7x7_3``.
    """

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.conv3X3 = _conv_bn(cin, cout // 2, 3, relu=False)
        self.conv5X5_1 = _conv_bn(cin, cout // 4, 3, relu=True)
        self.conv5X5_2 = _conv_bn(cout // 4, cout // 4, 3, relu=False)
        self.conv7X7_2 = _conv_bn(cout // 4, cout // 4, 3, relu=True)
        self.conv7x7_3 = _conv_bn(cout // 4, cout // 4, 3, relu=False)

    def forward(self, x: Tensor) -> Tensor:
        branch5 = self.conv5X5_1(x)
        out = torch.cat([self.conv3X3(x), self.conv5X5_2(branch5), self.conv7x7_3(self.conv7X7_2(branch5))], 1)
        return F.relu(out)


class _Head(nn.Module):
    """One level's 1x1 prediction conv; output (N, H*W*anchors, values) in row, column, anchor order."""

    def __init__(self, cin: int, values: int, anchors: int = 2) -> None:
        super().__init__()
        self.values = values
        self.conv1x1 = nn.Conv2d(cin, anchors * values, 1)

    def forward(self, x: Tensor) -> Tensor:
        out = self.conv1x1(x).permute(0, 2, 3, 1)
        return out.reshape(out.shape[0], -1, self.values)


class RetinaFaceR50(nn.Module):
    """The network; ``forward`` takes (N, 3, H, W) BGR minus ``MEAN_BGR`` and returns
    box offsets (N, P, 4), face probabilities (N, P, 2: background, face) and landmark
    offsets (N, P, 10) for the P prior boxes of ``prior_boxes(H, W)``."""

    def __init__(self) -> None:
        super().__init__()
        self.body = resnet50_body()
        self.fpn = FPN(self.body.channels, CHANNELS)
        self.ssh1 = SSH(CHANNELS, CHANNELS)
        self.ssh2 = SSH(CHANNELS, CHANNELS)
        self.ssh3 = SSH(CHANNELS, CHANNELS)
        self.ClassHead = nn.ModuleList(_Head(CHANNELS, 2) for _ in STRIDES)
        self.BboxHead = nn.ModuleList(_Head(CHANNELS, 4) for _ in STRIDES)
        self.LandmarkHead = nn.ModuleList(_Head(CHANNELS, 10) for _ in STRIDES)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        p3, p4, p5 = self.fpn(*self.body(x))
        feats = (self.ssh1(p3), self.ssh2(p4), self.ssh3(p5))
        loc = torch.cat([h(f) for h, f in zip(self.BboxHead, feats)], 1)
        conf = torch.cat([h(f) for h, f in zip(self.ClassHead, feats)], 1)
        landmarks = torch.cat([h(f) for h, f in zip(self.LandmarkHead, feats)], 1)
        return loc, F.softmax(conf, dim=-1), landmarks


def prior_boxes(height: int, width: int) -> np.ndarray:
    """(P, 4) anchors (cx, cy, w, h) as fractions of the input size, in the heads' order.

    The same anchors as the MobileNet RetinaFace's (``retinaface.anchors``), in fractions.
    """
    return (anchors(height, width) / np.array([width, height, width, height])).astype(np.float32)


def decode_boxes(loc: np.ndarray, priors: np.ndarray) -> np.ndarray:
    """(P, 4) corner boxes (x0, y0, x1, y1), in the priors' units, from the predicted offsets."""
    return decode(loc, np.zeros((len(loc), 10)), priors)[0]


def nms(boxes: np.ndarray, scores: np.ndarray, threshold: float = NMS_THRESHOLD) -> list[int]:
    """Indices of the boxes kept by non-maximum suppression, best first (OpenCV's)."""
    return [int(i) for i in nms_indices(boxes, scores, 0.0, threshold)]


class RetinaFaceDetector(FaceDetector):
    """``--detector retinaface-r50``: the FaceDetector interface around ``RetinaFaceR50``.

    ``min_face`` sets the cheap first pass (the frame shrunk so that size becomes
    ``CHEAP_FACE`` pixels); the thorough passes run at full size (``upsample`` = n: at
    2**n times the size) and, with ``auto``, once more at twice the size on small frames
    where nothing was found. One forward pass at a time (a lock): torch already spreads
    one pass over the CPU cores or runs it on the GPU, so concurrent threads would only
    compete for them.
    """

    name = "retinaface-r50"

    def __init__(self, upsample: str = "auto", min_face: int = 80) -> None:
        self.upsample, self.retry = parse_upsample(upsample)
        self.min_face = max(CHEAP_FACE, int(min_face))
        self.net, self.weights, self.device = ready_network(WEIGHTS_KEY, RetinaFaceR50())
        self._lock = threading.Lock()
        self.description = (f"RetinaFace ResNet-50 (facexlib weights {self.weights}) on "
                            f"{describe_device(self.device)}; first pass for faces >= {self.min_face} px")

    def _run(self, image: np.ndarray, scale: float) -> list[Detection]:
        h, w = image.shape[:2]
        if scale != 1.0:
            interp = cv2.INTER_AREA if scale < 1.0 else cv2.INTER_LINEAR
            image = cv2.resize(image, (max(1, round(w * scale)), max(1, round(h * scale))), interpolation=interp)
        sh, sw = image.shape[:2]
        bgr = image[:, :, ::-1].astype(np.float32) - np.asarray(MEAN_BGR, np.float32)
        x = torch.from_numpy(np.ascontiguousarray(bgr.transpose(2, 0, 1)))[None].to(self.device)
        with self._lock, torch.inference_mode():
            loc, conf, marks = self.net(x)
        scores = conf[0, :, 1].float().cpu().numpy()
        keep = np.flatnonzero(scores > SCORE_THRESHOLD)
        if keep.size == 0:
            return []
        priors = prior_boxes(sh, sw)[keep].astype(np.float64)
        boxes, points = decode(loc[0].float().cpu().numpy()[keep].astype(np.float64),
                               marks[0].float().cpu().numpy()[keep].astype(np.float64), priors)
        # fractions of the (resized) input are fractions of the frame: -> frame pixels (not clipped,
        # as facexlib: a face cut by the frame edge keeps its box shape for the landmarker)
        boxes = boxes * np.asarray([w, h, w, h])
        points = points * np.asarray([w, h])       # the five keypoints, eyes first
        scores = scores[keep]
        return [Detection(tuple(float(v) for v in boxes[i]), float(scores[i]), points[i])  # type: ignore[arg-type]
                for i in nms(boxes, scores)]

    def detect(self, image: np.ndarray, thorough: bool = True) -> list[Detection]:
        """Faces in an (H, W, 3) uint8 RGB image, largest first."""
        found: list[Detection] = []
        cheap = CHEAP_FACE / self.min_face
        if cheap < 0.9:
            found = self._run(image, cheap)
            if found or not thorough:
                return by_area(found)
        full = float(2 ** self.upsample)
        found = self._run(image, full)
        if not found and thorough and self.retry and max(image.shape[:2]) <= RETRY_MAX_SIDE:
            found = self._run(image, 2 * full)
        return by_area(found)
