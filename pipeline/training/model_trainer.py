"""The training half of the model interface: what a model family does in one step.

The loop (``pipeline/training/loop.py``) owns everything every family shares: options, the
data, the loop, the learning-rate schedule, batch sampling and random streams,
checkpoints and exact resume, previews, the log, divergence detection and several
processes. A family's :class:`ModelTrainer` owns its model, optimizer and losses. It is
registered in ``train.backends.TRAINERS`` under its model type's name; the model itself,
the :class:`pipeline.models.interface.FaceModel` convert uses, is in
``pipeline.registries.MODEL_TYPES``.
"""
from __future__ import annotations

import functools
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch

from pipeline.models.interface import FaceModel
from pipeline.training.data import FaceSet


@dataclass
class TrainContext:
    """What the trainer hands a model family."""

    model_options: Any             # the family's options dataclass
    content: FaceSet               # dst faces (and --content-extra), the faces to change
    style: FaceSet                 # src faces with their mirror images, the identity
    device: torch.device
    model_dir: Path
    generator: torch.Generator     # this process's random stream for the step (saved with checkpoints)
    lr: float = 1e-3               # the starting learning rate (the trainer sets each step's)
    world: int = 1                 # processes training together (DistributedDataParallel when > 1)
    main: bool = True              # the process that logs and writes files
    fresh: bool = False            # --fresh: an existing model is set aside, not continued
    precision: str = "auto"        # --precision: "auto" (mixed where the family allows it) or "float"


class ModelTrainer(ABC):
    """One model family's training: built once, then ``step`` per iteration."""

    #: (start, end) Adam learning rates when ``--lr`` / ``--lr-end`` are not given: what suits the family
    default_lr: ClassVar[tuple[float, float]] = (1e-3, 1e-4)
    #: whether the family's step may run in float16 autocast on CUDA (``autocast`` and ``optimise``)
    mixed_precision: ClassVar[bool] = False
    #: whether it may run in bfloat16 autocast on a CPU that computes bfloat16 natively (measured per family:
    #: the transformation network's losses at equal iterations, ``train.transform_trainer``)
    cpu_bfloat16: ClassVar[bool] = False

    def __init__(self, ctx: TrainContext) -> None:
        self.ctx = ctx
        self._scalers: dict[str, torch.amp.GradScaler] = {}

    # ------------------------------------------------------------------ mixed precision, shared by families
    @property
    def amp(self) -> bool:
        """Float16 autocast with loss scaling: on CUDA for families that allow it."""
        return self.mixed_precision and self.ctx.device.type == "cuda" and self.ctx.precision == "auto"

    @functools.cached_property
    def bfloat16(self) -> bool:
        """bfloat16 autocast, no loss scaling (its range is float32's): on a CPU that computes it natively, for
        families that allow it; other CPUs train in float32 (there bfloat16 is emulated, slower than float32)."""
        from pipeline.models import cpu_bfloat16
        return self.cpu_bfloat16 and cpu_bfloat16.chosen(self.ctx.precision, self.ctx.device)

    def precision_text(self) -> str:
        """For the log: how the step computes."""
        if self.amp:
            return "mixed precision (float16 autocast, scaled losses)"
        if self.bfloat16:
            return "mixed precision (bfloat16 autocast, the CPU's own)"
        return ""

    def autocast(self) -> Any:
        """The context the family's forward pass runs in (a no-op in float32)."""
        if self.bfloat16:
            return torch.autocast("cpu", dtype=torch.bfloat16)
        return torch.autocast(self.ctx.device.type, dtype=torch.float16, enabled=self.amp)

    def optimise(self, loss: torch.Tensor, optimizer: torch.optim.Optimizer, name: str = "model") -> None:
        """Zero the gradients, back-propagate ``loss`` and step ``optimizer``, through a loss scaler per
        ``name`` under mixed precision (small float16 gradients would otherwise flush to zero)."""
        scaler = self._scalers.get(name)
        if scaler is None:
            scaler = self._scalers[name] = torch.amp.GradScaler("cuda", enabled=self.amp)
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()

    def scaler_states(self) -> dict[str, Any]:
        """The loss scalers' states, for the checkpoint (empty on the CPU)."""
        return {name: s.state_dict() for name, s in self._scalers.items() if self.amp}

    def load_scaler_states(self, states: dict[str, Any]) -> None:
        for name, state in states.items():
            if self.amp and state:
                self._scalers.setdefault(name, torch.amp.GradScaler("cuda", enabled=True)).load_state_dict(state)

    @abstractmethod
    def options_json(self) -> dict[str, Any]:
        """What options.json records about how this model is trained (besides its architecture)."""

    @abstractmethod
    def architecture(self) -> dict[str, Any]:
        """The architecture the options ask for (known before ``build``; the model's, once built)."""

    def resume_conflicts(self, old: dict[str, Any]) -> list[str]:
        """Differences ('width 8 -> 16') that forbid continuing the model whose options are ``old``."""
        new = {**self.options_json(), **self.architecture(), "face_type": self.ctx.content.face_type}
        keys = (*self.architecture(), *self.resume_keys(), "face_type")
        return [f"{k} {old.get(k)} -> {new.get(k)}" for k in keys if old.get(k) != new.get(k)]

    def resume_keys(self) -> tuple[str, ...]:
        """Options besides the architecture that must stay the same to resume."""
        return ()

    def checkpoint_matches(self, old: dict[str, Any]) -> bool:
        """Whether model/checkpoint.pt (trained with ``old``) continues this run."""
        return True

    def start(self, old: dict[str, Any] | None) -> None:
        """Called instead of ``load_state_dict`` when no checkpoint continues: e.g. grow from ``old``."""

    @abstractmethod
    def build(self) -> None:
        """Create the model and its optimizer (the trainer has seeded torch just before)."""

    @property
    @abstractmethod
    def model(self) -> FaceModel:
        """The model being trained (what ``save_model`` writes); exists once built."""

    @abstractmethod
    def prepare(self) -> None:
        """Work done once before the first step (cached features, targets)."""

    @abstractmethod
    def step(self, idx: np.ndarray, iteration: int, total: int, lr: float) -> dict[str, float]:
        """One optimisation step on the content faces ``idx``; the loss terms, ``loss`` first."""

    @abstractmethod
    def state_dict(self) -> dict[str, Any]:
        """Tensors and plain values to checkpoint (network, optimizer), loadable with weights_only."""

    @abstractmethod
    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore ``state_dict``'s output; may raise anything for a damaged file."""

    def distribute(self) -> None:
        """Wrap what trains for several processes (DistributedDataParallel); called when world > 1."""

    @abstractmethod
    def preview_rows(self, picks: np.ndarray) -> list[np.ndarray]:
        """One uint8 RGB image row per picked content face: dst | output | what it learns from."""

    def log_lines(self) -> list[str]:
        """What to tell the user about the network before training (parameters, features, layers)."""
        return []


class SingleNetTrainer(ModelTrainer):
    """A family that is one network with one Adam optimizer (the mask segmenter, the face enhancer): its build,
    checkpoint and several-process parts, written once; a subclass says which network (``new_net``) and its step."""

    def __init__(self, ctx: TrainContext) -> None:
        super().__init__(ctx)
        self.net: torch.nn.Module | None = None
        self.ddp: torch.nn.Module | None = None
        self.opt: torch.optim.Optimizer | None = None

    @abstractmethod
    def new_net(self) -> torch.nn.Module:
        """The untrained network (the loop has seeded torch just before)."""

    def build(self) -> None:
        self.net = self.new_net().to(self.ctx.device)
        self.opt = torch.optim.Adam(self.net.parameters(), lr=self.ctx.lr)

    def training_net(self, lr: float) -> tuple[torch.nn.Module, torch.optim.Optimizer]:
        """(what to run forward this step, in train mode, the DDP wrapper when there is one; the optimizer at
        ``lr``)."""
        assert self.net is not None and self.opt is not None
        for group in self.opt.param_groups:
            group["lr"] = lr
        self.net.train()
        return self.ddp or self.net, self.opt

    def distribute(self) -> None:
        self.ddp = torch.nn.parallel.DistributedDataParallel(self.net)

    def state_dict(self) -> dict[str, Any]:
        assert self.net is not None and self.opt is not None
        return {"net": self.net.state_dict(), "optimizer": self.opt.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        assert self.net is not None and self.opt is not None
        self.net.load_state_dict(state["net"])
        self.opt.load_state_dict(state["optimizer"])
