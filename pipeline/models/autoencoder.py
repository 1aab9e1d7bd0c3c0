"""DeepFaceLab's DF and LIAE autoencoders as model families: what convert runs and train fits.

The swap is the network's dst -> src face (``swap_with_mask`` also gives the mask it
learned, for convert and export to use); inference runs in float32, or under
``--precision auto`` in bfloat16 on a CPU that computes it natively
(``pipeline.models.cpu_bfloat16``: DF 16 -> 6, LIAE 20 -> 9 ms a face on one core of an
AMX Xeon); there is no int8 path (the dense bottleneck and pixel shuffles are not in
``int8_inference``'s reach). Networks: ``autoencoder_net``; training:
``train.autoencoder_trainer``.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch

from pipeline.core.errors import UserError
from pipeline.core.options import declared_range
from pipeline.models import convert_defaults as family_defaults
from pipeline.models import cpu_bfloat16
from pipeline.models.autoencoder_net import AutoencoderNet, DFNet, LIAENet
from pipeline.models.autoencoder_options import RESOLUTIONS, WIDTH_KEYS, AutoencoderOptions
from pipeline.models.interface import FaceModel, Predictor, check_sizes


class _Float32(torch.nn.Module):
    """A layer run in float32 inside a bfloat16 autocast: the decoders' last 1x1 convolutions, whose
    outputs are the sigmoid's logits. In bfloat16 a logit of 3 is held to 1/64, a grey level of the
    face after the sigmoid (the DF model of 487 iterations: faces +0.1 level on average, up to 1.6);
    in float32 only the features before it carry bfloat16's rounding."""

    def __init__(self, layer: torch.nn.Module) -> None:
        super().__init__()
        self.layer = layer

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with torch.autocast(x.device.type, enabled=False):
            return self.layer(x.float())


def _logits_in_float32(net: AutoencoderNet) -> AutoencoderNet:
    """A copy of ``net`` whose decoders make their face and mask logits in float32 (``_Float32``)."""
    import copy

    from pipeline.models.autoencoder_net import Decoder
    net = copy.deepcopy(net)
    for decoder in [m for m in net.modules() if isinstance(m, Decoder)]:
        for branch in (decoder.face, decoder.mask):
            branch[-1] = _Float32(branch[-1])
    return net


class _SwapPredictor(Predictor):
    def __init__(self, net: AutoencoderNet, device: torch.device, bfloat16: bool = False) -> None:
        self.net = (_logits_in_float32(net) if bfloat16 else net).to(device).eval()
        self.bfloat16 = bfloat16
        self.description = cpu_bfloat16.description(bfloat16)
        self.learned_mask = True

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return self.with_mask(x)[0]

    def with_mask(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        with cpu_bfloat16.autocast(self.bfloat16):
            face, mask = self.net.swap(x)
        return face.float(), mask.float()


class AutoencoderModel(FaceModel):
    """One of the two layouts (``net_class``); the rest is shared."""

    net_class: ClassVar[type[AutoencoderNet]] = AutoencoderNet
    architecture_keys = ("resolution", *WIDTH_KEYS)
    #: no chroma smoothing, no part colour (why: ``pipeline.models.convert_defaults``)
    convert_defaults = family_defaults.AUTOENCODER

    def __init__(self, net: AutoencoderNet) -> None:
        self.net = net

    @property
    def network(self) -> AutoencoderNet:
        return self.net

    @property
    def resolution(self) -> int:
        return self.net.resolution

    def architecture(self) -> dict[str, Any]:
        n = self.net
        return {"resolution": n.resolution, "ae_dims": n.ae_dims, "e_dims": n.e_dims, "d_dims": n.d_dims,
                "d_mask_dims": n.d_mask_dims}

    @classmethod
    def check_options(cls, options: dict[str, Any], source: Path | None = None, fix: str | None = None) -> None:
        fix = fix or f"restore the file or retrain with 'python main.py train --model {cls.type_name}'"
        values = {k: options.get(k) for k in cls.architecture_keys}
        sizes = {k: v for k, v in values.items() if isinstance(v, int) and not isinstance(v, bool) and v >= 1}
        if len(sizes) != len(values) or sizes["resolution"] not in RESOLUTIONS:
            shown = ", ".join(f"{k} {v!r}" for k, v in values.items())
            raise UserError(f"model options {source} have an invalid {cls.type_name} architecture ({shown}); {fix}")
        check_sizes(options, {k: declared_range(AutoencoderOptions, k) for k in WIDTH_KEYS}, source, fix)

    @classmethod
    def from_options(cls, options: dict[str, Any], source: Path | None = None) -> AutoencoderModel:
        cls.check_options(options, source)
        return cls(cls.net_class(**{k: options[k] for k in cls.architecture_keys}))

    def run_for_estimate(self, x: torch.Tensor, training: bool) -> object:
        """Training rebuilds a src and a dst batch (the batch twice); convert swaps one."""
        return self.net(x, x) if training else self.net.swap(x)

    def predictor(self, device: torch.device, precision: str, calibration: list[np.ndarray]) -> Predictor:
        """bfloat16 for ``auto`` on a CPU that computes it natively, float32 otherwise and for ``float``
        (``precision_supported`` refuses int8 before this is called)."""
        return _SwapPredictor(self.net, device, cpu_bfloat16.chosen(precision, device))

    @torch.no_grad()
    def swap_with_mask(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """dst crops (N, 3, R, R) in [0, 1] -> (dst->src face (N, 3, R, R), its learned mask (N, 1, R, R))."""
        self.net.eval()
        return self.net.swap(x)

    @torch.no_grad()
    def swap_with_masks(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(dst->src face, its learned mask, the dst side's learned mask of ``x``): export's three DFM outputs."""
        self.net.eval()
        return self.net.swap_and_dst_mask(x)


class DFModel(AutoencoderModel):
    """DF: shared encoder and inter, a decoder per identity (strong src likeness)."""

    type_name = "df"
    net_class = DFNet


class LIAEModel(AutoencoderModel):
    """LIAE: shared encoder and decoder, inter_AB and inter_B (keeps the dst's light and colour better)."""

    type_name = "liae"
    net_class = LIAENet
