"""A face enhancer for one person: the face model's output in, the same face restored toward the src person's own.

Why: a face model's output at its resolution is softer, smoother ("plastic") and more
blotchy in colour than the src person's real faces at that size (autoencoders blur, the
transformation network paints). This network learns, from the src set alone, to undo
exactly those faults on this one person's face: ``enhance`` degrades the src faces
(shrunk and enlarged, smoothed by an edge-keeping filter, low-frequency colour blotches,
noise, compression) and trains the network to restore the originals. Convert then runs it
on the model's output (``convert --enhance``), at the model's resolution, so every later
step (colour, detail, blending) is unchanged. No downloaded weights: a user's own faces
are all it sees, and it never sees the held-apart judge.

Shape: a small U-Net (three stride-2 levels) whose output is added to its input, so an
untrained or unsure network leaves the face as it is; the coarse levels see a quarter of
the face, which is what a colour blotch across the nose needs, the full-resolution level
restores pores and hair. Width 16: about 0.3M parameters.

The model lives in ``workspace/enhancer/`` in the model store's format (``model_type``
"enhancer"), apart from the face model.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from pipeline.models.enhancer_options import RESOLUTIONS, WIDTHS
from pipeline.models.interface import Predictor, SingleNetModel

LEVELS = 3
_RETRAIN = "restore the file or retrain with 'python main.py enhance --fresh'"


class _Block(nn.Sequential):
    def __init__(self, cin: int, cout: int) -> None:
        super().__init__(nn.Conv2d(cin, cout, 3, padding=1), nn.LeakyReLU(0.1, inplace=True),
                         nn.Conv2d(cout, cout, 3, padding=1), nn.LeakyReLU(0.1, inplace=True))


class EnhancerNet(nn.Module):
    """(N, 3, R, R) RGB in [0, 1] -> the same, restored: input + a learned correction."""

    def __init__(self, resolution: int = 128, width: int = 16) -> None:
        super().__init__()
        self.resolution, self.width = resolution, width
        ch = [width, width * 2, width * 4, width * 4]
        self.stem = _Block(3, ch[0])
        self.down = nn.ModuleList(nn.Sequential(nn.Conv2d(ch[i], ch[i + 1], 3, stride=2, padding=1),
                                                nn.LeakyReLU(0.1, inplace=True), _Block(ch[i + 1], ch[i + 1]))
                                  for i in range(LEVELS))
        self.up = nn.ModuleList(_Block(ch[i + 1] + ch[i], ch[i]) for i in reversed(range(LEVELS)))
        self.head = nn.Conv2d(ch[0], 3, 3, padding=1)
        nn.init.zeros_(self.head.weight)      # starts as the identity: the face as the model made it
        nn.init.zeros_(self.head.bias)  # type: ignore[arg-type]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips = [self.stem((x - 0.5) * 4.0)]
        for down in self.down:
            skips.append(down(skips[-1]))
        y = skips.pop()
        for up in self.up:
            skip = skips.pop()
            y = F.interpolate(y, size=skip.shape[-2:], mode="bilinear", align_corners=False)
            y = up(torch.cat([y, skip], 1))
        return x + self.head(y)


class _Restore(Predictor):
    """The enhancer for inference: channels-last, in bfloat16 where the CPU computes it natively.

    bfloat16 on such a CPU: 4x faster than float32 here (``pipeline.models.cpu_bfloat16``),
    and the correction it adds moves the convert's figures by less than their second
    decimal (measured in issue 31's round). ``precision`` "float" keeps float32.
    """

    def __init__(self, net: EnhancerNet, device: torch.device, precision: str = "auto") -> None:
        from pipeline.models import cpu_bfloat16
        # torch's type stubs lack Module.to(memory_format=...), which exists and is documented
        self.net = net.to(device).eval().to(memory_format=torch.channels_last)  # type: ignore[call-overload]
        self.bfloat16 = cpu_bfloat16.chosen(precision, device)
        self.description = cpu_bfloat16.description(self.bfloat16)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        from pipeline.models import cpu_bfloat16
        x = x.contiguous(memory_format=torch.channels_last)
        with cpu_bfloat16.autocast(self.bfloat16):
            y = self.net(x)
        return y.float().clamp_(0.0, 1.0).contiguous()


class EnhancerModel(SingleNetModel):
    """The enhancer behind the model interface, so the model store and the training loop handle it."""

    type_name = "enhancer"
    net_class = EnhancerNet
    resolutions, widths, what, retrain = RESOLUTIONS, WIDTHS, "enhancer options", _RETRAIN

    def predictor(self, device: torch.device, precision: str = "float",
                  calibration: list[np.ndarray] | None = None) -> Predictor:
        assert isinstance(self.net, EnhancerNet)
        return _Restore(self.net, device, precision)


def load_enhancer(folder: Path, device: torch.device, precision: str = "auto") -> tuple[Predictor, dict[str, Any]]:
    """The workspace's enhancer as a predictor on ``device`` (``precision`` "auto": bfloat16 on a CPU that
    computes it natively, else float32; "float": float32), and its options.json."""
    from pipeline.models.store import load_model
    model, meta = load_model(folder, device, kind=EnhancerModel,
                             retrain="train one with 'python main.py enhance'")
    return model.predictor(device, precision, []), meta
