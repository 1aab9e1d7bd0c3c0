"""VGG19 feature layers (the paper's loss network), defined here so torchvision is not needed.

torchvision cannot load its compiled ops on this machine, so we define the 16 conv layers
of VGG configuration E ourselves, with the same ``features.<index>`` parameter names as
torchvision's ``vgg19``: the official ImageNet file loads directly into it (its
``classifier.*`` keys are ignored).
"""
from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import torch
from torch import nn

from pipeline.core.errors import UserError
from pipeline.core.weights import WEIGHTS

_WEIGHTS = WEIGHTS["vgg19-imagenet"]
WEIGHTS_URL: str = _WEIGHTS.url or ""
WEIGHTS_FILE = _WEIGHTS.file

#: VGG configuration E: output channels of each conv, "M" = 2x2 max pooling.
CONFIG = (64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M",
          512, 512, 512, 512, "M", 512, 512, 512, 512, "M")

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def _layers_and_taps() -> tuple[list[nn.Module], dict[str, int]]:
    """The Sequential's layers (same indices as torchvision) and relu<block>_<i> -> index."""
    layers: list[nn.Module] = []
    taps: dict[str, int] = {}
    cin, block, conv = 3, 1, 0
    for item in CONFIG:
        if item == "M":
            layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
            block, conv = block + 1, 0
            continue
        layers.append(nn.Conv2d(cin, int(item), kernel_size=3, padding=1))
        # not in place: a tapped activation must stay as it was when later layers run
        layers.append(nn.ReLU(inplace=False))
        conv += 1
        taps[f"relu{block}_{conv}"] = len(layers) - 1
        cin = int(item)
    return layers, taps


_, TAPS = _layers_and_taps()
#: Tap names shallow to deep: relu1_1, relu1_2, relu2_1, ..., relu5_4.
TAP_NAMES = tuple(TAPS)


class VGG19Features(nn.Module):
    """The conv part of VGG19 with named ReLU taps; input (N, 3, H, W) RGB in 0..1.

    ImageNet mean/std normalisation happens inside (non-persistent buffers, so the state
    dict holds exactly torchvision's ``features.*`` keys). The layer stack is registered
    under the name ``features`` for those keys; the ``features`` *method* shadows it as an
    attribute, so use ``self.layers`` to reach the Sequential.
    """

    def __init__(self) -> None:
        super().__init__()
        layers, _ = _layers_and_taps()
        self.features = nn.Sequential(*layers)   # registered as submodule "features"
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    @property
    def layers(self) -> nn.Sequential:
        """The Sequential of torchvision-indexed layers (``features.<i>`` in the state dict)."""
        return self._modules["features"]  # type: ignore[return-value]

    def features(self, x: torch.Tensor, taps: Iterable[str]) -> dict[str, torch.Tensor]:  # type: ignore[override]
        """Activations at the requested taps; runs only as deep as the deepest one."""
        wanted = list(dict.fromkeys(taps))
        unknown = [t for t in wanted if t not in TAPS]
        if unknown or not wanted:
            raise ValueError(f"unknown VGG19 taps {unknown or '(none given)'}; "
                             f"choose from {', '.join(TAP_NAMES)}")
        by_index = {TAPS[t]: t for t in wanted}
        last = max(by_index)
        y = (x - self.mean) / self.std
        out: dict[str, torch.Tensor] = {}
        for i, layer in enumerate(self.layers):
            y = layer(y)
            if i in by_index:
                out[by_index[i]] = y
            if i == last:
                break
        return out

    def forward(self, x: torch.Tensor, taps: Iterable[str]) -> dict[str, torch.Tensor]:
        return self.features(x, taps)


def weights_path(model_dir: Path | None = None) -> Path:
    """Where the ImageNet weights file is read from (torch hub's checkpoint cache by default)."""
    folder = Path(model_dir) if model_dir is not None else Path(torch.hub.get_dir()) / "checkpoints"
    return folder / WEIGHTS_FILE


def load_vgg19(device: str | torch.device = "cpu", model_dir: Path | None = None) -> VGG19Features:
    """VGG19 features with the official ImageNet weights, frozen and in eval mode.

    Reads ``vgg19-dcbb9e9d.pth`` from the cache (``model_dir`` or torch hub's
    ``checkpoints`` folder), downloading it first when absent and online. Offline with no
    file, it raises UserError saying where the file comes from and where to put it: the
    loss network is never silently replaced by anything else.
    """
    path = weights_path(model_dir)
    try:
        state = torch.hub.load_state_dict_from_url(
            WEIGHTS_URL, model_dir=str(path.parent), map_location="cpu", progress=True,
            check_hash=False, file_name=WEIGHTS_FILE, weights_only=True)
    except Exception as err:
        reason = " ".join(str(err).split())[:200] or type(err).__name__
        if path.is_file():
            raise UserError(f"VGG19 weights {path} are unreadable ({reason}); delete the file and "
                            f"download {WEIGHTS_FILE} again from {WEIGHTS_URL} to that path") from err
        raise UserError(f"VGG19 ImageNet weights {WEIGHTS_FILE} are missing and could not be "
                        f"downloaded ({reason}); download {WEIGHTS_URL} on a connected machine "
                        f"and put it at {path}") from err
    features = {k: v for k, v in state.items() if k.startswith("features.")}
    net = VGG19Features()
    try:
        net.load_state_dict(features, strict=True)
    except RuntimeError as err:
        reason = " ".join(str(err).split())[:200]
        raise UserError(f"VGG19 weights {path} do not fit VGG19's conv layers ({reason}); "
                        f"replace it with {WEIGHTS_URL}") from err
    net.requires_grad_(False)
    net.eval()
    return net.to(device)
