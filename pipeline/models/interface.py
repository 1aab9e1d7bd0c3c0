"""What every model family gives the stages: build, save and load, inference.

Train writes a model, convert runs it, and both only talk to this interface and to the
model-type registry (``pipeline.registries.MODEL_TYPES``), so a second family (an
autoencoder, say) plugs in without touching the trainer or convert. A model family is
one :class:`FaceModel` subclass here in ``pipeline/models/`` (what convert needs) and
one ``pipeline.training.model_trainer.ModelTrainer`` subclass in ``train/`` (its losses and step),
registered together under one name, which ``options.json`` records as ``model_type``.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn

from pipeline.core.errors import UserError

#: The fix a tampered options.json names when the caller names none.
RESTORE = "restore the file or retrain with 'python main.py train'"


def check_sizes(options: dict[str, Any], sizes: dict[str, tuple[float | None, float | None]], source: Path | None,
                fix: str = RESTORE, what: str = "model options") -> None:
    """Refuse architecture sizes read from a file that the command line would refuse.

    ``sizes`` maps an options.json key to the (low, high) range its option declares
    (``pipeline.core.options.declared_range``): a width of 4096 in a tampered
    ``options.json`` would otherwise build a network of tens of gigabytes before anything
    notices. UserError naming the file, the key and ``fix``.
    """
    for key, (low, high) in sizes.items():
        value = options.get(key)
        words = f"{low:g} to {high:g}" if low is not None and high is not None else \
            f"{low:g} or more" if low is not None else f"up to {high:g}"
        if not isinstance(value, int) or isinstance(value, bool):
            raise UserError(f"{what} {source}: {key} {value!r} is not a whole number (a model this tool trains has "
                            f"{key} {words}); the file was changed or damaged: {fix}")
        if (low is not None and value < low) or (high is not None and value > high):
            raise UserError(f"{what} {source}: {key} {value} is out of range (a model this tool trains has {key} "
                            f"{words}); the file was changed or damaged: {fix}")


def count_parameters(net: nn.Module, trainable_only: bool = False) -> int:
    """Number of scalar parameters (BatchNorm running statistics are buffers, not counted)."""
    return sum(p.numel() for p in net.parameters() if p.requires_grad or not trainable_only)


class Predictor(ABC):
    """A model prepared for inference on one device: face crops in, swapped crops out."""

    description: str = ""          # for the log: precision, device, how it was prepared
    #: whether the model paints its own mask beside the face (convert's ``--mask learned|both``)
    learned_mask: bool = False

    @abstractmethod
    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """(N, 3, R, R) RGB in [0, 1] on the predictor's device -> same shape, not clamped."""

    def with_mask(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(face as ``__call__`` gives it, the model's mask of it (N, 1, R, R) in [0, 1]); only when
        ``learned_mask``."""
        raise NotImplementedError(f"{type(self).__name__} paints no mask")


class FaceModel(ABC):
    """A trained (or new) dst -> src face model of one family."""

    type_name: ClassVar[str] = ""          # its MODEL_TYPES name, recorded as options.json "model_type"
    #: options.json keys that rebuild the architecture; a resumed training must keep them
    architecture_keys: ClassVar[tuple[str, ...]] = ()
    #: convert options whose default suits this family differently (filled in only where the user gave none)
    convert_defaults: ClassVar[dict[str, Any]] = {}
    #: the model folder ``pipeline.models.store.load_model`` read this model from (None: built in memory)
    folder: Path | None = None

    @property
    @abstractmethod
    def network(self) -> nn.Module:
        """The torch module whose state dict is the model file."""

    @property
    @abstractmethod
    def resolution(self) -> int:
        """Side of the square face crop the model takes and gives, in pixels."""

    @abstractmethod
    def architecture(self) -> dict[str, Any]:
        """The values of ``architecture_keys`` for this model (written to options.json)."""

    @classmethod
    def check_options(cls, options: dict[str, Any], source: Path | None = None, fix: str = RESTORE) -> None:
        """Refuse (UserError naming ``source`` and ``fix``) an architecture this family would not build or that
        is out of the range its options declare; nothing is allocated. ``from_options`` calls it first, and
        every reader of a model's options.json calls it before estimating or building (see ``store``)."""

    @classmethod
    @abstractmethod
    def from_options(cls, options: dict[str, Any], source: Path | None = None) -> FaceModel:
        """A new model with the architecture ``options`` describe (UserError naming ``source`` if invalid)."""

    def run_for_estimate(self, x: torch.Tensor, training: bool) -> object:
        """One forward pass on ``x`` as training (``training``) or convert runs the network: what
        ``pipeline.models.memory`` measures, on the meta device, before the real model is built."""
        return self.network(x)

    @abstractmethod
    def predictor(self, device: torch.device, precision: str, calibration: list[np.ndarray]) -> Predictor:
        """Inference form on ``device``; ``precision`` is auto/float/int8, ``calibration`` a few real crops.
        What ``store_calibration`` wrote in ``folder`` may spare work here (it is only read)."""

    def store_calibration(self, folder: Path, calibration: list[np.ndarray]) -> Path | None:
        """Store beside the weights in ``folder`` what ``predictor`` would otherwise compute from
        ``calibration`` on every convert (train calls this); the file written, or None when the family
        computes nothing."""
        return None

    def precision_supported(self, device: torch.device, precision: str) -> bool:
        """Whether ``precision`` (float, int8) can run on ``device``; float always can."""
        return precision == "float"


class SingleNetModel(FaceModel):
    """A model that is one network with ``resolution`` and ``width`` (the mask segmenter, the face enhancer):
    the model-interface parts they share, written once. A subclass names its network class, the sizes its
    options declare, what its options.json is called in a message and how to retrain it."""

    architecture_keys = ("resolution", "width")
    net_class: ClassVar[type[nn.Module]]
    resolutions: ClassVar[tuple[int, ...]]
    widths: ClassVar[tuple[int, int]]
    what: ClassVar[str]
    retrain: ClassVar[str]

    @classmethod
    def check_options(cls, options: dict[str, Any], source: Path | None = None, fix: str = "") -> None:
        fix = fix or cls.retrain
        resolution, width = options.get("resolution"), options.get("width")
        if resolution not in cls.resolutions or not isinstance(width, int) or isinstance(width, bool) or width < 1:
            raise UserError(f"{cls.what} {source} have an invalid resolution/width ({resolution!r}, {width!r}); "
                            f"{fix}")
        check_sizes(options, {"width": cls.widths}, source, fix, what=cls.what)

    @classmethod
    def from_options(cls, options: dict[str, Any], source: Path | None = None) -> SingleNetModel:
        cls.check_options(options, source)
        return cls(cls.net_class(options["resolution"], options["width"]))

    def __init__(self, net: nn.Module) -> None:
        self.net = net
        sizes: dict[str, Any] = {"resolution": net.resolution, "width": net.width}
        self.side, self.width = int(sizes["resolution"]), int(sizes["width"])

    @property
    def network(self) -> nn.Module:
        return self.net

    @property
    def resolution(self) -> int:
        return self.side

    def architecture(self) -> dict[str, Any]:
        return {"resolution": self.side, "width": self.width}
