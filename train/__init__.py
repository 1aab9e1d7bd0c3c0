"""``main.py train``: the chosen model type learns dst face -> the same face with the src identity."""
from __future__ import annotations

import argparse
import os
from collections.abc import Iterator

import train.backends  # noqa: F401  (registers the loss networks and trainers)
from pipeline.core.command import Command
from pipeline.core.options import from_namespace
from pipeline.registries import MODEL_TYPES
from train.options import TrainOptions


def _model_groups() -> Iterator[tuple[str, type]]:
    """One option group per registered model type (read when the parser is built)."""
    return ((f"options of --model {name}", MODEL_TYPES.load(name, "options")) for name in MODEL_TYPES.names())


def _run(args: argparse.Namespace) -> int:
    opts = from_namespace(TrainOptions, args)
    opts.model_options = from_namespace(MODEL_TYPES.load(opts.model, "options"), args)
    from train.trainer import run_train
    summary = run_train(opts)
    if os.environ.get("RANK", "0") == "0":
        print(summary.line())
    return 0


COMMAND = Command(
    "train", help="learn the model: dst face -> the same face with the src identity",
    description="Train the chosen model type (--model). The transformation network (Korshunova et al.): content = "
                "dst faces (pose, expression, lighting), style = src faces (identity). Resumes from workspace/model/ "
                "when run again; Ctrl-C saves a checkpoint. Multi-GPU: torchrun --nproc_per_node N main.py train ...",
    options=(TrainOptions,), groups=_model_groups, run=_run)
