"""The multi-scale transformation network of Korshunova et al. 2017 (dst face -> src identity).

Shared by train (which fits it) and convert (which runs it on every aligned dst face).

Architecture (after Ulyanov et al.'s texture networks, as the paper describes it):
branches see the input average-pooled by 1, 2, 4, 8, 16 (128 -> 8 px at 128); each branch
is a conv block; the coarsest result is upsampled x2 (nearest), concatenated with the next
finer branch and passed through a join conv block, and so on up to full resolution, where a
1x1 convolution gives 3 channels. A conv block is 3x3, 3x3, 1x1 convolutions (zero padded),
each followed by BatchNorm and ReLU. Branches have ``width`` channels; a join keeps all the
channels it concatenates (k * width after k branches), so the top of the 128 net has
5 * width channels. With the default width 32 that is about 1.1M parameters, the size the
paper gives.

Deviation, on by default (``skip=True``): the net predicts a residual that is added to its
input, so an untrained net is (nearly) the identity and CPU training converges much faster.
``skip=False`` is the paper's plain form (output = the 1x1 conv alone).

Saving and loading is the model store's (``pipeline.models.store``); this module is the
network only.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

#: Resolution of the base network and how many branches it has (128, 64, 32, 16, 8).
BASE_RESOLUTION = 128
BASE_LEVELS = 5
RESOLUTIONS = (128, 256)

#: Scale of the orthogonal init of the output 1x1 conv when ``skip=True``: the initial
#: residual is about 1% of the pixel range, so the untrained net is close to the identity,
#: while every parameter still gets a non-zero gradient on the first step (a zero init
#: would starve all layers below the output conv of gradient until it has moved).
SKIP_OUTPUT_SCALE = 0.01


class ConvBlock(nn.Sequential):
    """3x3, 3x3, 1x1 convolutions, each with BatchNorm and ReLU (a texture-net conv block).

    Why BatchNorm: it is what texture networks and the paper used, it trains well with the
    batch sizes we use (8-16) and at inference it folds into a fixed affine map, so a face
    is transformed the same way whatever else is in the batch. Instance norm was avoided
    on purpose: it would normalise away each face's global brightness and colour, which is
    the dst lighting the swap must keep.
    """

    def __init__(self, cin: int, cout: int) -> None:
        layers: list[nn.Module] = []
        for i, k in enumerate((3, 3, 1)):
            layers += [nn.Conv2d(cin if i == 0 else cout, cout, k, padding=k // 2),
                       nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]
        super().__init__(*layers)


class MultiScale(nn.Module):
    """Branches on the input pooled by 2**i, joined coarsest first; returns top features.

    ``branches[i]`` and ``joins[i-1]`` work at resolution R / 2**(levels-1-i) (index 0 is
    the coarsest), so the last join is at full resolution with ``levels * width`` channels.
    """

    def __init__(self, levels: int, width: int) -> None:
        super().__init__()
        self.levels = levels
        self.branches = nn.ModuleList(ConvBlock(3, width) for _ in range(levels))
        self.joins = nn.ModuleList(ConvBlock((k + 1) * width, (k + 1) * width)
                                   for k in range(1, levels))
        self.out_channels = levels * width

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        inputs = [x]
        for _ in range(self.levels - 1):
            inputs.append(F.avg_pool2d(inputs[-1], 2))
        inputs.reverse()                                        # coarsest first
        y = self.branches[0](inputs[0])
        for branch, join, inp in zip(self.branches[1:], self.joins, inputs[1:]):
            up = F.interpolate(y, scale_factor=2.0, mode="nearest")
            y = join(torch.cat([up, branch(inp)], dim=1))
        return y


class TransformNet(nn.Module):
    """Feed-forward face transformation net: (N, 3, R, R) RGB in [0, 1] -> same shape.

    The output is not clamped (callers clamp for display and compositing).

    Resolution 128: ``base`` (5 branches, 128 .. 8 px) and ``head`` (1x1 conv to RGB).

    Resolution 256 (the paper's second stage): the whole 128 network runs on the input
    average-pooled to 128 px; its top features (5 * width channels) are upsampled x2
    (nearest) and joined with a new 256-px branch (``branch``), a new join block (``join``)
    and a new 1x1 output conv (``head``). Weights of the 128 model are copied in with
    ``grow_from`` and frozen with ``freeze_base``; only ``branch``, ``join`` and ``head``
    train.

    How the 128 model's own 1x1 output conv is treated at 256:
    - ``skip=True``: it is kept (as ``base_head``, frozen) and its residual, upsampled x2
      bilinearly, is added to the output: out = x + up(base_head(f128)) + head(join(...)).
      The new head starts at 1% scale, so a freshly grown 256 model reproduces the trained
      128 model's result at 256 px and the new branch only learns the fine detail on top.
    - ``skip=False`` (paper's plain form): it is dropped; the output comes only from the
      new highest-resolution branch, out = head(join(...)), as in the paper.

    Init: orthogonal conv weights (``nn.init.orthogonal_``), zero biases; with ``skip=True``
    each output 1x1 conv is orthogonal scaled by ``SKIP_OUTPUT_SCALE`` (0.01).
    """

    def __init__(self, resolution: int = 128, width: int = 32, skip: bool = True) -> None:
        super().__init__()
        if resolution not in RESOLUTIONS:
            raise ValueError(f"resolution must be one of {RESOLUTIONS}, not {resolution}")
        if width < 1:
            raise ValueError(f"width must be positive, not {width}")
        self.resolution = int(resolution)
        self.width = int(width)
        self.skip = bool(skip)
        self._base_frozen = False
        self.base = MultiScale(BASE_LEVELS, self.width)
        top = self.base.out_channels
        if self.resolution == BASE_RESOLUTION:
            self.head = nn.Conv2d(top, 3, 1)
            heads = [self.head]
        else:
            if self.skip:
                self.base_head = nn.Conv2d(top, 3, 1)
            self.branch = ConvBlock(3, self.width)
            self.join = ConvBlock(top + self.width, top + self.width)
            self.head = nn.Conv2d(top + self.width, 3, 1)
            heads = [self.head] + ([self.base_head] if self.skip else [])
        self._init_weights(heads)

    def _init_weights(self, heads: list[nn.Conv2d]) -> None:
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.orthogonal_(m.weight)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
        if self.skip:
            with torch.no_grad():
                for h in heads:
                    h.weight.mul_(SKIP_OUTPUT_SCALE)

    # ------------------------------------------------------------------ forward

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 4 or x.shape[1] != 3 or x.shape[-2:] != (self.resolution, self.resolution):
            raise ValueError(f"expected (N, 3, {self.resolution}, {self.resolution}) input, "
                             f"got {tuple(x.shape)}")
        if self.resolution == BASE_RESOLUTION:
            out = self.head(self.base(x))
            return x + out if self.skip else out
        small = F.avg_pool2d(x, 2)
        feats = self.base(small)
        up = F.interpolate(feats, scale_factor=2.0, mode="nearest")
        out = self.head(self.join(torch.cat([up, self.branch(x)], dim=1)))
        if not self.skip:
            return out
        base_residual = F.interpolate(self.base_head(feats), scale_factor=2.0, mode="bilinear",
                                      align_corners=False)
        return x + base_residual + out

    # ------------------------------------------------------------------ growth

    def grow_from(self, small: TransformNet) -> None:
        """Copy a trained 128 model into this 256 model's base (and base_head with skip).

        The 128 model's ``head`` becomes ``base_head`` when ``skip=True`` and is not used
        when ``skip=False``. Widths and skip settings must match.
        """
        if self.resolution != 2 * BASE_RESOLUTION:
            raise ValueError("grow_from is for a 256 model")
        if small.resolution != BASE_RESOLUTION or small.width != self.width or small.skip != self.skip:
            raise ValueError(f"cannot grow a {self.resolution} net (width {self.width}, skip "
                             f"{self.skip}) from a {small.resolution} net (width {small.width}, "
                             f"skip {small.skip})")
        self.base.load_state_dict(small.base.state_dict())
        if self.skip:
            self.base_head.load_state_dict(small.head.state_dict())

    def base_modules(self) -> list[nn.Module]:
        """The modules that come from the 128 model (all of the net at 128)."""
        if self.resolution == BASE_RESOLUTION:
            return [self.base, self.head]
        return [self.base] + ([self.base_head] if self.skip else [])

    def freeze_base(self) -> None:
        """Stop training the 128 part of a 256 model (paper: train the new branch only).

        Its parameters get ``requires_grad=False`` and its BatchNorm layers stay in eval
        mode (running statistics neither used from the batch nor updated) even when
        ``train()`` is called on the whole net, so the frozen part behaves exactly as the
        trained 128 model does at inference.
        """
        if self.resolution == BASE_RESOLUTION:
            raise ValueError("freeze_base is for a 256 model (a 128 model is all base)")
        for m in self.base_modules():
            for p in m.parameters():
                p.requires_grad_(False)
        self._base_frozen = True
        self.train(self.training)

    def train(self, mode: bool = True) -> TransformNet:
        super().train(mode)
        if self._base_frozen:
            for m in self.base_modules():
                m.eval()
        return self

    def trainable_parameters(self) -> list[nn.Parameter]:
        """Parameters an optimizer should get (all, or only the new ones once frozen)."""
        return [p for p in self.parameters() if p.requires_grad]


def inference_copy(net: TransformNet) -> nn.Module:
    """A copy for inference only: BatchNorm folded into the convolutions, channels-last.

    Same outputs (to float rounding, ~1e-6) in about 55% of the time on the CPU: one
    pass over each feature map instead of three, and the memory layout oneDNN's
    convolutions want. Feed it channels-last input.
    """
    import copy
    fused = copy.deepcopy(net).eval()
    with torch.no_grad():
        for block in fused.modules():
            if not isinstance(block, nn.Sequential):
                continue
            for i in range(len(block) - 1):
                conv, bn = block[i], block[i + 1]
                if isinstance(conv, nn.Conv2d) and isinstance(bn, nn.BatchNorm2d):
                    assert bn.running_var is not None and bn.running_mean is not None
                    scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
                    conv.weight.mul_(scale[:, None, None, None])
                    bias = conv.bias if conv.bias is not None else torch.zeros_like(bn.running_mean)
                    conv.bias = nn.Parameter((bias - bn.running_mean) * scale + bn.bias)
                    block[i + 1] = nn.Identity()
    # torch's type stubs lack Module.to(memory_format=...), which exists and is documented
    return fused.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
