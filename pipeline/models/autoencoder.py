"""DeepFaceLab's DF and LIAE autoencoders as model families: what convert runs and train fits.

The swap is the network's dst -> src face (``swap_with_mask`` also gives the mask it
learned, for convert and export to use); inference runs in float32 (no int8 path: the
dense bottleneck and pixel shuffles are not in ``int8_inference``'s reach, so convert's
``--precision auto`` takes float). Networks: ``autoencoder_net``; training:
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
from pipeline.models.autoencoder_net import AutoencoderNet, DFNet, LIAENet
from pipeline.models.autoencoder_options import RESOLUTIONS, WIDTH_KEYS, AutoencoderOptions
from pipeline.models.interface import FaceModel, Predictor, check_sizes


class _SwapPredictor(Predictor):
    def __init__(self, net: AutoencoderNet, device: torch.device) -> None:
        self.net = net.to(device).eval()
        self.description = "float32"
        self.learned_mask = True

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return self.net.swap(x)[0]

    def with_mask(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.net.swap(x)


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
        """float32 for ``auto`` and ``float`` (``precision_supported`` refuses int8 before this is called)."""
        return _SwapPredictor(self.net, device)

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
