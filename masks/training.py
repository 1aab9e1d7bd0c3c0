"""``main.py masks train``: the face segmenter learns from the artist's hand-painted masks.

The shared training loop (``pipeline.training.loop.TrainingLoop``) runs it: resume with the same random
streams, atomic checkpoints, ``--max-minutes``, Ctrl-C, divergence guard, previews and the
log, here in ``workspace/mask_model/``. This module says which faces it learns from (every
face of either set whose mask is ``hand``), how a sample is made (``masks.augment``)
and what the loss is: binary cross-entropy plus soft Dice, so both the many easy pixels
and the overlap of the thin, rare occluded parts count.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from masks.augment import augment
from masks.options import MaskTrainOptions
from pipeline.core.errors import UserError
from pipeline.models.interface import FaceModel, count_parameters
from pipeline.models.segmenter import RESOLUTIONS, SegmenterModel, SegmenterNet
from pipeline.training.data import FaceSet, load_mask_sets, to_tensor
from pipeline.training.loop import TrainingLoop, TrainSummary, run_loop
from pipeline.training.model_trainer import ModelTrainer, SingleNetTrainer, TrainContext
from pipeline.workspace import layout


def dice_loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """1 - soft Dice overlap per face, averaged."""
    p = torch.sigmoid(logits).flatten(1)
    t = target.flatten(1)
    return (1 - (2 * (p * t).sum(1) + 1) / (p.sum(1) + t.sum(1) + 1)).mean()


class MaskTrainer(SingleNetTrainer):
    """The segmenter's step and preview (a model family for the shared loop)."""

    def __init__(self, ctx: TrainContext) -> None:
        super().__init__(ctx)
        self.o: MaskTrainOptions = ctx.model_options
        self.labelled, self.pool = ctx.content, ctx.style

    def options_json(self) -> dict[str, Any]:
        return {"occluders": self.o.occluders, "hand_masks": len(self.labelled)}

    def architecture(self) -> dict[str, Any]:
        return {"resolution": self.o.resolution, "width": self.o.width}

    def new_net(self) -> SegmenterNet:
        return SegmenterNet(self.o.resolution, self.o.width)

    @property
    def model(self) -> FaceModel:
        assert isinstance(self.net, SegmenterNet)
        return SegmenterModel(self.net)

    def prepare(self) -> None:
        """Nothing to precompute: every sample is made anew."""

    def _samples(self, idx: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        # the numpy stream is seeded from the trainer's torch stream, so a resumed run makes the same samples
        seed = int(torch.randint(0, 2 ** 31 - 1, (1,), generator=self.ctx.generator).item())
        rng = np.random.default_rng(seed)
        pool = self.pool.images if len(self.pool) else self.labelled.images
        faces, targets = zip(*(augment(self.labelled.images[i], self.labelled.masks[i], rng, pool, self.o.occluders)
                               for i in idx))
        x = to_tensor(np.stack(faces), self.ctx.device)
        y = torch.from_numpy(np.stack(targets))[:, None].to(self.ctx.device)
        return x, y

    def step(self, idx: np.ndarray, iteration: int, total: int, lr: float) -> dict[str, float]:
        net, opt = self.training_net(lr)
        x, y = self._samples(idx)
        logits = net(x)
        bce = F.binary_cross_entropy_with_logits(logits, y)
        dice = dice_loss(logits, y)
        loss = bce + dice
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        with torch.no_grad():
            pred, truth = logits > 0, y > 0.5
            inter = (pred & truth).flatten(1).sum(1).float()
            union = (pred | truth).flatten(1).sum(1).float().clamp(min=1)
        return {"loss": loss.item(), "bce": bce.item(), "dice": dice.item(), "iou": float((inter / union).mean())}

    @torch.no_grad()
    def _predict(self, images: np.ndarray) -> np.ndarray:
        assert self.net is not None
        self.net.eval()
        prob = torch.sigmoid(self.net(to_tensor(images, self.ctx.device)))[:, 0]
        return (prob.cpu().numpy() * 255).astype(np.uint8)

    def preview_rows(self, picks: np.ndarray) -> list[np.ndarray]:
        """labelled face | its painted mask | prediction || a face without a hand mask | prediction."""
        faces = self.labelled.images[picks]
        pred = self._predict(faces)
        others = self.pool.images[np.linspace(0, len(self.pool) - 1, len(picks)).astype(int)] if len(self.pool) \
            else faces
        pred_others = self._predict(others)
        rows = []
        for i in range(len(picks)):
            rows.append(np.hstack([faces[i], _overlay(faces[i], self.labelled.masks[picks[i]]),
                                   _overlay(faces[i], pred[i]), others[i], _overlay(others[i], pred_others[i])]))
        return rows

    def log_lines(self) -> list[str]:
        assert self.net is not None
        return [f"mask segmenter: U-Net {self.o.resolution} px, width {self.o.width}, "
                f"{count_parameters(self.net) / 1e6:.2f}M parameters; {len(self.labelled)} hand-painted masks, "
                f"{len(self.pool)} other faces as occluder texture; occluders on {self.o.occluders:.0%} of samples"]


def _overlay(face: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """The face with what is outside the mask darkened and tinted, and the mask's edge drawn."""
    m = (mask.astype(np.float32) / 255.0)[..., None]
    out = face.astype(np.float32) * (0.35 + 0.65 * m) + np.array([60, 0, 90], np.float32) * (1 - m) * 0.5
    out = np.clip(out, 0, 255).astype(np.uint8)
    edges = cv2.Canny((mask > 127).astype(np.uint8) * 255, 50, 150) > 0
    out[edges] = (0, 255, 0)
    return out


class MaskTrainLoop(TrainingLoop):
    """The shared trainer, pointed at ``workspace/mask_model/`` and the hand-painted masks."""

    command = "masks train"

    def _model_options(self, opts: MaskTrainOptions) -> MaskTrainOptions:
        if opts.resolution not in RESOLUTIONS:
            raise UserError(f"--resolution {opts.resolution}: the segmenter takes a multiple of 16 from "
                            f"{RESOLUTIONS[0]} to {RESOLUTIONS[-1]}")
        return opts

    def _model_dir(self, opts: MaskTrainOptions) -> Path:
        return layout.mask_model_dir(opts.workspace)

    def _load_data(self, opts: MaskTrainOptions, model_options: MaskTrainOptions) -> tuple[FaceSet, FaceSet]:
        return load_mask_sets(Path(opts.workspace), opts.resolution, opts.seed, writer=self.main)

    def _make_family(self, ctx: TrainContext) -> tuple[ModelTrainer, str]:
        return MaskTrainer(ctx), SegmenterModel.type_name

    def _face_model_class(self) -> type[FaceModel]:
        return SegmenterModel

    def _memory_fix(self) -> str:
        return (f"lower --batch-size (now {self.opts.batch_size}), --width or --resolution, or free memory (close "
                f"other programs)")

    def _data_line(self) -> str:
        return (f"masks train: {len(self.content)} faces with hand-painted masks (both sets), {len(self.style)} "
                f"other faces for occluder texture; model in {self.model_dir}")


def run_mask_train(opts: MaskTrainOptions) -> TrainSummary:
    """Train (or resume) the workspace's mask segmenter."""
    return run_loop(MaskTrainLoop, opts)
