"""convert's network: the trained model on its device, run on batches of crops (uint8 in, uint8 out).

Two ways to hold it, one interface (``resolution``, ``meta``, ``convert_defaults``,
``learned_mask``, ``prepare``, ``use_enhancer``, ``threads``, ``ready``, ``__call__``, ``close``):

- ``Network``, in this process: the studio, the cluster's workers and tools that render
  a few frames keep one for many calls;
- ``convert.network_process.NetworkProcess``, in a child process: convert's own run,
  where the model's load (torch's import, most of it) then runs beside the rest of the
  start-up instead of before it, and the network's Python work beside the frames' (two
  interpreters, no shared lock).
"""
from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from pipeline.core.errors import UserError
from pipeline.core.profile import StepTimes

if TYPE_CHECKING:
    from convert.enhancing import FaceEnhancer
    from pipeline.models.interface import Predictor

log = logging.getLogger("convert")


def check_model(resolution: int, model_meta: dict, set_meta: Any, model_dir: Path) -> None:
    """The model fits the workspace's dst faces (their face type, a size at least its resolution)."""
    dst_type, dst_size = set_meta.extract.face_type, set_meta.extract.size
    model_type = model_meta.get("face_type")
    if model_type != dst_type:
        raise UserError(f"model in {model_dir} was trained on '{model_type}' faces but the workspace's dst "
                        f"faces are '{dst_type}'; retrain with 'python main.py train --fresh' or re-extract "
                        f"with --face-type {model_type}")
    if isinstance(dst_size, int) and resolution > dst_size:
        raise UserError(f"model in {model_dir} has resolution {resolution} but the dst faces are "
                        f"only {dst_size} px; re-extract with --size {resolution} or use a "
                        f"{dst_size} model")


class Network:
    """The trained model on its device, in this process."""

    def __init__(self, model_dir: Path, device_name: str, batch: int = 1) -> None:
        import torch

        from pipeline.core.device import choose_device
        from pipeline.models.store import load_model
        self.torch = torch
        self.device = choose_device(device_name)
        self.model_dir = model_dir
        self.model, self.meta = load_model(model_dir, self.device, batch=batch, initialise=False)
        self.resolution = self.model.resolution
        self.predictor: Predictor | None = None
        self.enhancer: FaceEnhancer | None = None     # ``--enhance``: the src person's face enhancer, if trained
        self.times = StepTimes()       # 'network': each batch's call

    @property
    def device_type(self) -> str:
        return str(self.device.type)

    @property
    def convert_defaults(self) -> dict[str, Any]:
        """The model family's own defaults for convert's options (``FaceModel.convert_defaults``)."""
        return dict(self.model.convert_defaults)

    @property
    def learned_mask(self) -> bool:
        """Whether the prepared model paints its own mask (``--mask learned|both``)."""
        return bool(self.predictor and self.predictor.learned_mask)

    def prepare(self, precision: str, calibration: list[np.ndarray]) -> None:
        """Pick float or int8 (``auto``: int8 on the CPU when the model allows it) and log it."""
        from pipeline.core.device import describe_device
        if precision != "auto" and not self.model.precision_supported(self.device, precision):
            raise UserError(f"--precision {precision} is not available for this {self.meta['model_type']} model on "
                            f"{self.device.type} (int8 needs --device cpu and a 128 model with the residual skip); "
                            f"use --precision float")
        self.predictor = self.model.predictor(self.device, precision, calibration)
        arch = ", ".join(f"{k} {v}" for k, v in self.model.architecture().items())
        log.info("convert: model %s (%s: %s, iteration %s), device %s, %s", self.model_dir / "weights.pt",
                 self.meta["model_type"], arch, self.meta.get("iteration", "?"), describe_device(self.device),
                 self.predictor.description)

    def use_enhancer(self, workspace: Path, strength: float, precision: str = "auto") -> None:
        """``--enhance``: the workspace's face enhancer on the model's output, when one was trained."""
        from convert.enhancing import find_enhancer
        self.enhancer = find_enhancer(workspace, strength, self.device, self.resolution, precision)

    def ready(self) -> bool:
        """Loaded and prepared in this process: always (``NetworkProcess.ready`` may say not yet)."""
        return True

    @contextlib.contextmanager
    def threads(self, count: int | None) -> Iterator[None]:
        """Torch's CPU threads set to ``count`` for the block when the model runs on the CPU (None: as they are);
        the studio and tests keep theirs after it."""
        if count is None or self.device.type != "cpu":
            yield
            return
        before = self.torch.get_num_threads()
        self.torch.set_num_threads(count)
        try:
            yield
        finally:
            self.torch.set_num_threads(before)

    def __call__(self, crops: list[np.ndarray],
                 masks: bool = False) -> tuple[list[np.ndarray], list[np.ndarray | None]]:
        """(swapped crops, and with ``masks`` the model's mask of each (R x R uint8), else Nones)."""
        if not crops:
            return [], []
        assert self.predictor is not None
        torch = self.torch

        def u8(t: Any) -> np.ndarray:
            return t.clamp_(0.0, 1.0).mul_(255.0).add_(0.5).to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()

        with self.times.step("network"), torch.inference_mode():
            x = torch.from_numpy(np.stack(crops)).to(self.device).permute(0, 3, 1, 2).float().div_(255.0)
            if masks:
                y, m = self.predictor.with_mask(x)
                learned = [a[..., 0] for a in u8(m)]
            else:
                y, learned = self.predictor(x), [None] * len(crops)
            if self.enhancer is not None:
                y = self.enhancer(y)
            faces = list(u8(y))
        return faces, learned

    def close(self) -> None:
        """Nothing to release in this process (``NetworkProcess`` ends its child)."""
