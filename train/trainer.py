"""``main.py train``'s loop: the shared training loop pointed at the face models.

The loop itself (resume, seeds, previews, logs, several processes, divergence) is
``pipeline.training.loop.TrainingLoop``, shared with ``masks train``. What is train's
here: the faces it learns from (the dst faces as content, the src faces as style, the
artist's deletions and masks honoured), each model type's own learning rates, and the
trainer of the chosen model type (``train.backends.TRAINERS``).
"""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from pipeline.faces.people import parse_person
from pipeline.training.data import FaceSet, load_training_sets
from pipeline.training.loop import TrainingLoop, TrainSummary, run_loop
from pipeline.training.model_trainer import ModelTrainer, TrainContext
from train.backends import TRAINERS
from train.options import TrainOptions


def with_default_lr(opts: Any) -> Any:
    """``opts`` with the model type's own learning rates (``ModelTrainer.default_lr``) where ``--lr`` /
    ``--lr-end`` were not given: what suits a family differs (an autoencoder's wide layers diverge at the
    transformation network's rate)."""
    if opts.lr is not None and opts.lr_end is not None:
        return opts
    start, end = TRAINERS.load(opts.model).default_lr
    return dataclasses.replace(opts, lr=start if opts.lr is None else opts.lr,
                               lr_end=end if opts.lr_end is None else opts.lr_end)


class Trainer(TrainingLoop):
    """The loop of ``main.py train``: any registered model type, on the workspace's dst and src faces."""

    command = "train"

    def _with_default_lr(self, opts: Any) -> Any:
        return with_default_lr(opts)

    def _load_data(self, opts: Any, model_options: Any) -> tuple[FaceSet, FaceSet]:
        return load_training_sets(Path(opts.workspace), model_options.resolution, opts.content_extra,
                                  writer=self.main, person=parse_person(getattr(opts, "person", None)))

    def _make_family(self, ctx: TrainContext) -> tuple[ModelTrainer, str]:
        return TRAINERS.load(self.opts.model)(ctx), self.opts.model

    def _data_line(self) -> str:
        return (f"train: {len(self.content)} dst faces (content), {len(self.style)} src faces with flips (style); "
                f"model {self.model_type}")


def run_train(opts: TrainOptions, trainer_class: type[TrainingLoop] | None = None) -> TrainSummary:
    """Train until ``opts.iterations`` (or a stop), saving as it goes; ``trainer_class`` for another loop."""
    return run_loop(trainer_class or Trainer, opts)
