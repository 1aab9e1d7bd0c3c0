"""``main.py enhance``: the src person's face enhancer learns to restore their faces from degraded copies.

The shared training loop (``pipeline.training.loop.TrainingLoop``) runs it: resume with
the same random streams, atomic checkpoints, ``--max-minutes``, Ctrl-C, divergence guard,
previews and the log, here in ``workspace/enhancer/``. This module says what it learns
from (the kept src faces at the face model's resolution, mirrored at random), how a
sample is made (``enhance.degrade``) and the loss: the absolute error of the image plus
that of its fine detail (image minus its 3x3 average), so restored pores count as much
as restored colour.
"""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from enhance.degrade import degrade
from enhance.options import EnhanceOptions
from pipeline.core.errors import UserError
from pipeline.models.enhancer import EnhancerModel, EnhancerNet
from pipeline.models.interface import FaceModel, count_parameters
from pipeline.training.data import FaceSet, load_set, to_tensor
from pipeline.training.loop import TrainingLoop, TrainSummary, run_loop
from pipeline.training.model_trainer import ModelTrainer, SingleNetTrainer, TrainContext
from pipeline.workspace import layout
from pipeline.workspace.store import Workspace

#: the resolution when there is no face model to match
DEFAULT_RESOLUTION = 128


def fine(x: torch.Tensor) -> torch.Tensor:
    """The image minus its 3x3 average: the detail a soft or plastic face lacks."""
    return x - F.avg_pool2d(F.pad(x, (1, 1, 1, 1), mode="replicate"), 3, stride=1)


def face_model_resolution(workspace: Path) -> int | None:
    """The trained face model's resolution (model/options.json), or None when there is none or it is unreadable."""
    try:
        meta = json.loads((layout.model_dir(workspace) / "options.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    value = meta.get("resolution") if isinstance(meta, dict) else None
    return value if isinstance(value, int) and not isinstance(value, bool) else None


class EnhanceTrainer(SingleNetTrainer):
    """The enhancer's step and preview (a model family for the shared loop)."""

    def __init__(self, ctx: TrainContext) -> None:
        super().__init__(ctx)
        self.o: EnhanceOptions = ctx.model_options
        self.faces = ctx.content

    def options_json(self) -> dict[str, Any]:
        return {"src_faces": len(self.faces)}

    def architecture(self) -> dict[str, Any]:
        return {"resolution": self.o.resolution, "width": self.o.width}

    def new_net(self) -> EnhancerNet:
        assert self.o.resolution is not None
        return EnhancerNet(self.o.resolution, self.o.width)

    @property
    def model(self) -> FaceModel:
        assert isinstance(self.net, EnhancerNet)
        return EnhancerModel(self.net)

    def prepare(self) -> None:
        """Nothing to precompute: every sample is degraded anew."""

    def _samples(self, idx: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        # the numpy stream is seeded from the trainer's torch stream, so a resumed run makes the same samples
        seed = int(torch.randint(0, 2 ** 31 - 1, (1,), generator=self.ctx.generator).item())
        rng = np.random.default_rng(seed)
        clean = [self.faces.images[i][:, ::-1] if rng.random() < 0.5 else self.faces.images[i] for i in idx]
        clean = [np.ascontiguousarray(c) for c in clean]
        damaged = [degrade(c, rng) for c in clean]
        return to_tensor(np.stack(damaged), self.ctx.device), to_tensor(np.stack(clean), self.ctx.device)

    def step(self, idx: np.ndarray, iteration: int, total: int, lr: float) -> dict[str, float]:
        net, opt = self.training_net(lr)
        x, y = self._samples(idx)
        out = net(x)
        image = (out - y).abs().mean()
        detail = (fine(out) - fine(y)).abs().mean()
        loss = image + 2.0 * detail
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        with torch.no_grad():
            before = (x - y).abs().mean()
        return {"loss": loss.item(), "image": image.item(), "detail": detail.item(),
                "restored": float(1.0 - image.item() / max(before.item(), 1e-8))}

    @torch.no_grad()
    def preview_rows(self, picks: np.ndarray) -> list[np.ndarray]:
        """degraded src face | restored | the real face (a fixed degradation per picked face)."""
        assert self.net is not None
        self.net.eval()
        clean = self.faces.images[picks]
        damaged = np.stack([degrade(c, np.random.default_rng(int(i)), clean_share=0.0) for c, i in zip(clean, picks)])
        out = self.net(to_tensor(damaged, self.ctx.device)).clamp(0, 1)
        restored = (out.permute(0, 2, 3, 1).cpu().numpy() * 255 + 0.5).astype(np.uint8)
        return [np.hstack([d, r, c]) for d, r, c in zip(damaged, restored, clean)]

    def log_lines(self) -> list[str]:
        assert self.net is not None
        return [f"face enhancer: U-Net {self.o.resolution} px, width {self.o.width}, "
                f"{count_parameters(self.net) / 1e6:.2f}M parameters; learns from {len(self.faces)} src faces "
                f"(soft, plastic, blotchy, noisy copies -> the real ones)"]


class EnhanceLoop(TrainingLoop):
    """The shared loop, pointed at ``workspace/enhancer/`` and the src faces."""

    command = "enhance"

    def _model_options(self, opts: EnhanceOptions) -> EnhanceOptions:
        if opts.resolution is None:
            opts = dataclasses.replace(opts, resolution=face_model_resolution(opts.workspace) or DEFAULT_RESOLUTION)
        if opts.resolution % 8:
            raise UserError(f"--resolution {opts.resolution}: the enhancer takes a multiple of 8")
        self.opts = opts
        return opts

    def _model_dir(self, opts: EnhanceOptions) -> Path:
        return layout.enhancer_dir(opts.workspace)

    def _load_data(self, opts: EnhanceOptions, model_options: EnhanceOptions) -> tuple[FaceSet, FaceSet]:
        layout.require(opts.workspace)
        assert model_options.resolution is not None
        with Workspace(Path(opts.workspace), write=self.main, command="enhance") as ws:
            faces = load_set(ws, "src", model_options.resolution, self.main)
        return faces, faces

    def _make_family(self, ctx: TrainContext) -> tuple[ModelTrainer, str]:
        return EnhanceTrainer(ctx), EnhancerModel.type_name

    def _face_model_class(self) -> type[FaceModel]:
        return EnhancerModel

    def _memory_fix(self) -> str:
        return (f"lower --batch-size (now {self.opts.batch_size}), --width or --resolution, or free memory (close "
                f"other programs)")

    def _data_line(self) -> str:
        return f"enhance: {len(self.content)} src faces, degraded anew each step; model in {self.model_dir}"


def run_enhance(opts: EnhanceOptions) -> TrainSummary:
    """Train (or resume) the workspace's face enhancer."""
    return run_loop(EnhanceLoop, opts)
