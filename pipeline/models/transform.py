"""The transformation network as a model family: what convert runs and train fits.

Inference: on the CPU a 128 model with the residual skip runs in int8 (about 8x faster,
``pipeline.models.int8_inference``), otherwise in float with BatchNorm folded into the
convolutions (``inference_copy``). Training is ``train.transform_trainer``.
"""
from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from pipeline.core.errors import UserError
from pipeline.core.options import declared_range
from pipeline.models import convert_defaults as family_defaults
from pipeline.models.interface import RESTORE, FaceModel, Predictor, check_sizes
from pipeline.models.transform_net import RESOLUTIONS, TransformNet, inference_copy
from pipeline.models.transform_options import TransformOptions

log = logging.getLogger("convert")


class _FloatPredictor(Predictor):
    def __init__(self, net: TransformNet, device: torch.device) -> None:
        self.net = inference_copy(net).to(device)
        self.description = "float32"

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x.contiguous(memory_format=torch.channels_last))


class _Int8Predictor(Predictor):
    def __init__(self, net: nn.Module, description: str) -> None:
        self.net, self.description = net, description

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class TransformModel(FaceModel):
    """Korshunova et al.'s multi-scale transformation network (``transform_net.TransformNet``)."""

    type_name = "transform"
    architecture_keys = ("resolution", "width", "skip")
    convert_defaults = family_defaults.TRANSFORM

    def __init__(self, net: TransformNet) -> None:
        self.net = net

    @property
    def network(self) -> TransformNet:
        return self.net

    @property
    def resolution(self) -> int:
        return self.net.resolution

    def architecture(self) -> dict[str, Any]:
        return {"resolution": self.net.resolution, "width": self.net.width, "skip": self.net.skip}

    @classmethod
    def check_options(cls, options: dict[str, Any], source: Path | None = None, fix: str = RESTORE) -> None:
        resolution, width, skip = options.get("resolution"), options.get("width"), options.get("skip")
        if (resolution not in RESOLUTIONS or not isinstance(width, int) or isinstance(width, bool)
                or width < 1 or not isinstance(skip, bool)):
            raise UserError(f"model options {source} have invalid resolution/width/skip ({resolution!r}, "
                            f"{width!r}, {skip!r}); {fix}")
        check_sizes(options, {"width": declared_range(TransformOptions, "width")}, source, fix)

    @classmethod
    def from_options(cls, options: dict[str, Any], source: Path | None = None) -> TransformModel:
        cls.check_options(options, source)
        return cls(TransformNet(options["resolution"], options["width"], options["skip"]))

    def precision_supported(self, device: torch.device, precision: str) -> bool:
        from pipeline.models import int8_inference
        if precision == "int8":
            return device.type == "cpu" and int8_inference.supported(self.net)
        return precision == "float"

    def predictor(self, device: torch.device, precision: str, calibration: list[np.ndarray]) -> Predictor:
        """int8 when asked, or on the CPU under ``auto`` when the model allows; float otherwise. The int8
        ranges come from the model's folder (what train stored there) when they were computed from these
        weights and these ``calibration`` crops, else from float passes over the crops."""
        from pipeline.models import calibration as stored_ranges
        from pipeline.models import int8_inference
        want_int8 = precision == "int8" or (precision == "auto" and device.type == "cpu")
        if want_int8 and self.precision_supported(device, "int8") and calibration:
            t0 = time.perf_counter()
            try:
                ranges = None
                if self.folder is not None:
                    ranges = stored_ranges.load_ranges(self.folder, stored_ranges.key(self.net, calibration))
                if ranges is not None:
                    try:
                        quantized, _ = int8_inference.calibrated(self.net, ranges=ranges)
                        return _Int8Predictor(quantized, f"int8 (ranges of {len(calibration)} dst faces stored "
                                                         f"by train, {time.perf_counter() - t0:.1f} s)")
                    except ValueError as exc:       # another architecture's observers: calibrate below
                        log.info("convert: stored int8 ranges do not fit this net (%s); calibrating again", exc)
                quantized, _ = int8_inference.calibrated(self.net, self._crops(calibration))
                return _Int8Predictor(quantized, f"int8 (calibrated on {len(calibration)} dst faces in "
                                                 f"{time.perf_counter() - t0:.1f} s)")
            except Exception as exc:  # noqa: BLE001 - an optional speed path; float always works
                log.warning("convert: int8 inference unavailable (%s); running in float32", exc)
        return _FloatPredictor(self.net, device)

    @staticmethod
    def _crops(calibration: list[np.ndarray]) -> torch.Tensor:
        return torch.from_numpy(np.stack(calibration)).permute(0, 3, 1, 2).float().div_(255.0)

    def store_calibration(self, folder: Path, calibration: list[np.ndarray]) -> Path | None:
        """The int8 activation ranges of these weights on ``calibration``, written to ``folder``
        (``pipeline.models.calibration``), when this model runs in int8 on a CPU."""
        from pipeline.models import calibration as stored_ranges
        from pipeline.models import int8_inference
        if not calibration or not int8_inference.supported(self.net):
            return None
        _, ranges = int8_inference.calibrated(self.net, self._crops(calibration))
        return stored_ranges.save_ranges(folder, stored_ranges.key(self.net, calibration), ranges)
