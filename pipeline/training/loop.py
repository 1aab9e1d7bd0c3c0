"""The training loop any trained model shares: resumable, seeded, previewed, logged; one process or DDP.

``train`` (the face models, ``train.trainer.Trainer``) and ``masks train`` (the segmenter,
``masks.training.MaskTrainLoop``) are subclasses that say where the model lives, which
faces it learns from and which family steps it; the loop is here, in pipeline, so
neither stage imports the other.

State lives in ``workspace/model/``: ``checkpoint.pt`` (the model family's state, the
iteration and every process's random-generator states; tensors and plain values only,
loaded with weights_only), ``weights.pt`` + ``options.json`` (the model convert uses),
``preview.jpg`` and ``history/``, ``log.jsonl``. Running ``train`` again resumes at the
saved iteration with the same optimizer state and random streams in every process, so
the next losses are the ones an uninterrupted run would have had. A run whose loss
diverges stops without saving; the model stays the last good checkpoint.

What a model family does in a step is its
:class:`pipeline.training.model_trainer.ModelTrainer`, which the subclass makes
(``_make_family``); this module never names a family.
"""
from __future__ import annotations

import json
import logging
import math
import os
import shutil
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch

from pipeline.core.device import choose_device, describe_device
from pipeline.core.errors import UserError
from pipeline.core.files import DiskFullError, is_disk_full, write_atomic
from pipeline.core.images import encode
from pipeline.core.options import as_dict, check
from pipeline.faces.people import parse_person
from pipeline.models.interface import FaceModel, count_parameters
from pipeline.models.memory import require
from pipeline.models.store import save_model
from pipeline.registries import MODEL_TYPES
from pipeline.training.data import FaceSet
from pipeline.training.model_trainer import ModelTrainer, TrainContext
from pipeline.workspace import layout
from pipeline.workspace.lock import WorkspaceLock

log = logging.getLogger("train")

#: A loss this many times the recent typical loss (and never under DIVERGED_FLOOR) means divergence.
DIVERGED_FACTOR = 1e3
DIVERGED_FLOOR = 1e3
DIVERGED_WINDOW = 50


@dataclass
class TrainSummary:
    iterations_done: int
    start_iteration: int
    seconds: float
    last: dict
    model_dir: Path
    parameters: int
    command: str = "train"

    def line(self) -> str:
        ran = self.iterations_done - self.start_iteration
        rate = ran / self.seconds if self.seconds > 0 else 0.0
        terms = ", ".join(f"{k} {v:.4g}" for k, v in self.last.items()
                          if k not in ("iteration", "alpha", "lr", "seconds"))
        return (f"{self.command}: iteration {self.iterations_done} ({ran} this run, {rate:.2f} it/s, "
                f"{self.seconds:.0f} s); {terms}; model in {self.model_dir}")


class DivergenceGuard:
    """Notices a loss that is not finite or has exploded, before its step is saved anywhere."""

    def __init__(self) -> None:
        self.recent: deque[float] = deque(maxlen=DIVERGED_WINDOW)

    def check(self, loss: float) -> str | None:
        """Why ``loss`` means the run diverged, or None (and remember it as typical)."""
        if not math.isfinite(loss):
            return f"the loss is {loss}"
        typical = float(np.median(self.recent)) if self.recent else 0.0
        limit = max(DIVERGED_FLOOR, DIVERGED_FACTOR * typical)
        if loss > limit:
            return f"the loss jumped to {loss:.3g} (typical so far {typical:.3g})"
        self.recent.append(loss)
        return None


def _dist() -> tuple[int, int]:
    """(rank, world size) under torchrun; (0, 1) otherwise."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and not torch.distributed.is_initialized():
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        torch.distributed.init_process_group(backend)
    rank = torch.distributed.get_rank() if world > 1 else 0
    return rank, world


def ranks_agree(checksums: list[torch.Tensor]) -> bool:
    """Whether every process ended with the same parameters (their checksums match)."""
    return all(torch.allclose(c, checksums[0]) for c in checksums)


class TrainingLoop:
    """The shared loop; ``train.trainer.Trainer`` and ``masks.training.MaskTrainLoop`` are its subclasses.

    What differs between the face models and the mask segmenter is only where the model
    lives, which faces it learns from and which family steps it: the hooks
    ``_with_default_lr``, ``_model_options``, ``_model_dir``, ``_load_data``,
    ``_make_family``, ``_face_model_class`` and ``_data_line``.
    """

    #: the command that holds the workspace lock and names the summary line
    command = "train"

    def __init__(self, opts: Any) -> None:
        check(opts)
        parse_person(getattr(opts, "person", None))     # a bad --person stops here, before any work
        opts = self._with_default_lr(opts)
        model_options = self._model_options(opts)
        check(model_options)
        self.opts, self.model_options = opts, model_options
        self.rank, self.world = _dist()
        self.main = self.rank == 0
        self.device = choose_device(opts.device)
        if self.world > 1 and self.device.type == "cuda":
            self.device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        self.model_dir = self._model_dir(opts)
        self.lock = WorkspaceLock(Path(opts.workspace), self.command)
        if self.main and layout.is_workspace(opts.workspace):
            self.lock.acquire()        # held for the whole run: one writer of the workspace and its model
        try:
            self._setup(opts, model_options)
        except BaseException:
            self.lock.release()
            raise

    # ------------------------------------------------------------------ what a subclass changes
    def _with_default_lr(self, opts: Any) -> Any:
        """``opts`` with the learning rates filled in where the user left them to the model."""
        return opts

    def _model_options(self, opts: Any) -> Any:
        options_cls = MODEL_TYPES.load(opts.model, "options")
        return opts.model_options if opts.model_options is not None else options_cls()

    def _model_dir(self, opts: Any) -> Path:
        return layout.model_dir(opts.workspace)

    def _load_data(self, opts: Any, model_options: Any) -> tuple[FaceSet, FaceSet]:
        """(content, style): the faces the model learns from."""
        raise NotImplementedError

    def _make_family(self, ctx: TrainContext) -> tuple[ModelTrainer, str]:
        """(the family's trainer, its model type name)."""
        raise NotImplementedError

    def _data_line(self) -> str:
        """The log's first line: what the run learns from."""
        raise NotImplementedError

    def _face_model_class(self) -> type[FaceModel]:
        """The model class of what this loop trains: its options.json is checked against it."""
        cls: type[FaceModel] = MODEL_TYPES.load(self.model_type)
        return cls

    def _check_memory(self) -> None:
        """Refuse, before anything is allocated, a model and batch the device's memory cannot train."""
        require(self._face_model_class(), self.family.architecture(), self.opts.batch_size, True, self.device,
                f"training the {self.model_type} model", self._memory_fix())

    def _memory_fix(self) -> str:
        """What to lower when the model does not fit (the summary line of a refusal)."""
        return (f"lower --batch-size (now {self.opts.batch_size}) or the model's size (--width, --preset cpu, "
                f"--resolution), or free memory (close other programs)")

    # ------------------------------------------------------------------ setup
    def _setup(self, opts: Any, model_options: Any) -> None:
        content, style = self._load_data(opts, model_options)
        self.content, self.style = content, style
        self.sampler = np.random.Generator(np.random.PCG64(opts.seed + 1000 * self.rank))
        self.gen = torch.Generator(device="cpu").manual_seed(opts.seed + 1 + 1000 * self.rank)
        ctx = TrainContext(model_options, content, style, self.device, self.model_dir, self.gen, opts.lr,
                           self.world, self.main, opts.fresh, getattr(opts, "precision", "auto"))
        self.family, self.model_type = self._make_family(ctx)
        if opts.fresh:
            self._check_memory()        # before the old model is moved aside
        old = self._check_existing_model()
        if not opts.fresh:
            self._check_memory()        # the continued model's sizes: its options.json was checked just now

        torch.manual_seed(opts.seed)
        self.family.build()
        self.iteration = 0
        self.family.prepare()
        self._resume_or_start(old)
        self.run_start = self.iteration
        if self.world > 1:
            self.family.distribute()
        self.guard = DivergenceGuard()
        self.last_saved: int | None = self.iteration if self.iteration > 0 else None

    def _options_json(self) -> dict[str, Any]:
        o = self.opts
        return {**self.family.options_json(), "face_type": self.content.face_type, "batch_size": o.batch_size,
                "iterations": o.iterations, "lr": o.lr, "lr_end": o.lr_end, "seed": o.seed,
                "model_type": self.model_type}

    def _old_options(self) -> dict[str, Any] | None:
        opts_path = self.model_dir / "options.json"
        if not opts_path.exists():
            return None
        try:
            old = json.loads(opts_path.read_text())
        except ValueError as exc:
            raise UserError(f"{opts_path} is not valid JSON ({exc}); restore it or train with --fresh") from exc
        if not isinstance(old, dict):
            raise UserError(f"{opts_path} is not a JSON object; restore it or train with --fresh")
        old.setdefault("model_type", "transform")
        return old

    def _check_existing_model(self) -> dict[str, Any] | None:
        old = self._old_options()
        if old is None:
            return None
        if self.opts.fresh:
            if self.main:
                aside = self.model_dir.with_name(f"{self.model_dir.name}-old-{time.strftime('%Y%m%d-%H%M%S')}")
                shutil.move(str(self.model_dir), aside)
                log.info("--fresh: the previous model was moved to %s", aside)
            if self.world > 1:
                torch.distributed.barrier()
            return None
        if old["model_type"] != self.model_type:
            raise UserError(f"{self.model_dir} holds a '{old['model_type']}' model, not '{self.model_type}'; "
                            f"train with --model {old['model_type']} to resume, or add --fresh to start a new "
                            f"model (the old one is kept beside it)")
        # a continued model's sizes come from this file: a tampered width must stop here, not in an allocation
        self._face_model_class().check_options(old, self.model_dir / "options.json",
                                               "restore it, or train with --fresh to start a new model (the old "
                                               "one is kept beside it)")
        diff = self.family.resume_conflicts(old)
        if diff:
            raise UserError(f"{self.model_dir} holds a model trained with other settings ({'; '.join(diff)}); "
                            f"train with the same options to resume, or add --fresh to start a new model "
                            f"(the old one is kept beside it)")
        return old

    def _resume_or_start(self, old: dict[str, Any] | None) -> None:
        ckpt_path = self.model_dir / "checkpoint.pt"
        if not (ckpt_path.exists() and old is not None and self.family.checkpoint_matches(old)):
            self.family.start(old)
            return
        try:
            state = torch.load(ckpt_path, map_location=self.device, weights_only=True)
            self.family.load_state_dict(state)
            iteration = int(state["iteration"])
        except Exception as exc:  # noqa: BLE001 - unreadable, truncated, refused by weights_only: all one fix
            raise UserError(f"{ckpt_path} could not be loaded ({str(exc).splitlines()[0][:120]}); restore it, "
                            f"or train with --fresh to start over") from exc
        self.iteration = iteration
        self._restore_random_streams(state)
        if self.main:
            log.info("resuming at iteration %d from %s", self.iteration, ckpt_path)

    # ------------------------------------------------------------------ random streams, every process
    def _random_state(self) -> tuple[str, torch.Tensor]:
        return json.dumps(self.sampler.bit_generator.state), self.gen.get_state()

    def _all_random_states(self) -> tuple[list[str], torch.Tensor]:
        """Every process's (sampler, generator) state, gathered (as tensors: no pickle)."""
        sampler, gen = self._random_state()
        if self.world == 1:
            return [sampler], gen[None]
        device = self.device if self.device.type == "cuda" else torch.device("cpu")
        text = torch.zeros(1024, dtype=torch.uint8, device=device)
        raw = sampler.encode()
        text[:len(raw)] = torch.tensor(list(raw), dtype=torch.uint8)
        texts = [torch.zeros_like(text) for _ in range(self.world)]
        torch.distributed.all_gather(texts, text)
        gens = [torch.zeros_like(gen, device=device) for _ in range(self.world)]
        torch.distributed.all_gather(gens, gen.to(device))
        samplers = [bytes(t.cpu().tolist()).rstrip(b"\0").decode() for t in texts]
        return samplers, torch.stack([g.cpu() for g in gens])

    def _restore_random_streams(self, state: dict[str, Any]) -> None:
        samplers = state.get("rank_samplers")
        if samplers is not None:
            samplers = json.loads(samplers)
            gens = state["rank_generators"]
        elif "sampler" in state:                       # a checkpoint of one process (older format too)
            samplers, gens = [state["sampler"]], state["generator"][None]
        else:
            samplers, gens = [], None
        if len(samplers) != self.world and self.main:
            log.warning("warning: the checkpoint was written by %d process(es), this run has %d: the batches "
                        "after the resume differ from an uninterrupted run", len(samplers), self.world)
        if self.rank < len(samplers):
            self.sampler.bit_generator.state = json.loads(samplers[self.rank])
            self.gen.set_state(gens[self.rank].cpu().clone())    # its own storage: set_state ignores offsets

    # ------------------------------------------------------------------ outputs
    def _kept(self) -> str:
        """What the model folder holds, for a run stopped by a full disk."""
        if self.last_saved is None or self.last_saved == getattr(self, "run_start", None):
            return f"nothing of this run was saved: the model in {self.model_dir} is as it was before this run"
        return (f"the model in {self.model_dir} holds iteration {self.last_saved}, saved earlier in this run "
                f"(train resumes from it)")

    def _save(self) -> None:
        samplers, gens = self._all_random_states()
        if not self.main:
            return
        self.model_dir.mkdir(parents=True, exist_ok=True)
        state = {**self.family.state_dict(), "iteration": self.iteration, "sampler": samplers[0],
                 "generator": gens[0], "world_size": self.world, "rank_samplers": json.dumps(samplers),
                 "rank_generators": gens}
        try:
            write_atomic(self.model_dir / "checkpoint.pt", lambda fh: torch.save(state, fh))
        except DiskFullError as exc:
            raise exc.keeping(self._kept()) from exc.__cause__
        try:
            save_model(self.model_dir, self.family.model, {**self._options_json(), "iteration": self.iteration})
        except DiskFullError as exc:      # checkpoint.pt was written: say exactly which files are new
            before = ("as they were before this run" if self.last_saved in (None, getattr(self, "run_start", None))
                      else f"at iteration {self.last_saved}")
            new = "checkpoint.pt and weights.pt hold" if exc.writing == "options.json" else "checkpoint.pt holds"
            old = "options.json is" if exc.writing == "options.json" else "weights.pt and options.json are"
            raise exc.keeping(f"{new} iteration {self.iteration} (train resumes from it); {old} still "
                              f"{before}") from exc.__cause__
        self.last_saved = self.iteration

    def _store_calibration(self) -> None:
        """What convert would compute from the final weights on every run (the int8 activation ranges, about
        1.4 s on 2 cores), stored beside them (``FaceModel.store_calibration``). Convert uses it while the
        weights and the dst faces are those it was computed from; a failure here costs convert that time,
        never the training."""
        model = self.family.model
        if not self.main or not model.precision_supported(torch.device("cpu"), "int8"):
            return
        try:
            from pipeline.models.calibration import calibration_crops
            from pipeline.workspace.store import Workspace
            with Workspace(self.opts.workspace) as ws:
                crops = calibration_crops(ws, ws.faces_as_edited("dst"), model.resolution)
            path = model.store_calibration(self.model_dir, crops)
        except Exception as exc:  # noqa: BLE001 - an optional speed-up for convert; the model is saved
            log.warning("train: the int8 calibration was not stored (%s); convert will calibrate on each run", exc)
            return
        if path is not None:
            log.info("int8 calibration for convert stored in %s", path)

    def preview(self) -> Path | None:
        """Rows: dst face | output | closest src face, for four fixed dst faces."""
        if not self.main:
            return None
        picks = np.linspace(0, len(self.content) - 1, min(4, len(self.content))).astype(int)
        sheet = np.vstack(self.family.preview_rows(picks))
        cv2.putText(sheet, f"it {self.iteration}", (4, 14), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (255, 255, 0), 1)
        data = encode(sheet, ".jpg")
        try:
            (self.model_dir / "history").mkdir(parents=True, exist_ok=True)
            write_atomic(self.model_dir / "preview.jpg", data)
            write_atomic(self.model_dir / "history" / f"preview_{self.iteration:06d}.jpg", data)
        except DiskFullError as exc:
            raise exc.keeping(f"{exc.kept}; {self._kept()}") from exc.__cause__
        except OSError as exc:
            if not is_disk_full(exc, self.model_dir):
                raise
            raise DiskFullError(self.model_dir, self._kept(), "history/") from exc
        return self.model_dir / "preview.jpg"

    def _log(self, record: dict) -> None:
        if self.main:
            try:
                with open(self.model_dir / "log.jsonl", "a") as fh:
                    fh.write(json.dumps(record) + "\n")
            except OSError as exc:
                if not is_disk_full(exc, self.model_dir):
                    raise
                raise DiskFullError(self.model_dir, self._kept(), "log.jsonl") from exc

    # ------------------------------------------------------------------ the loop
    def _batch(self) -> np.ndarray:
        n = len(self.content)
        return self.sampler.choice(n, size=self.opts.batch_size, replace=n < self.opts.batch_size)

    def step(self) -> dict:
        o = self.opts
        idx = self._batch()
        total = o.iterations
        lr = o.lr * (o.lr_end / o.lr) ** (self.iteration / max(total - 1, 1))
        terms = self.family.step(idx, self.iteration, total, lr)
        self.iteration += 1
        return {"iteration": self.iteration, **terms, "lr": lr}

    def run(self) -> TrainSummary:
        from tqdm import tqdm
        o = self.opts
        end = min(o.iterations, o.stop_at) if o.stop_at else o.iterations
        start_it, started = self.iteration, time.perf_counter()
        if self.main:
            self.model_dir.mkdir(parents=True, exist_ok=True)
            log.info("%s", self._data_line())
            for line in self.family.log_lines():
                log.info("%s", line)
            log.info("device %s%s%s; options %s", describe_device(self.device),
                     f"; {self.family.precision_text()}" if self.family.precision_text() else "",
                     f"; {self.world} processes" if self.world > 1 else "",
                     json.dumps({**as_dict(self.model_options)}, sort_keys=True))
        bar = tqdm(total=end, initial=self.iteration, unit="it", desc=self.command, disable=not self.main,
                   dynamic_ncols=True, mininterval=1.0)
        last: dict = {}
        try:
            while self.iteration < end:
                if o.max_minutes is not None and time.perf_counter() - started > 60 * o.max_minutes:
                    log.info("stopping at iteration %d: --max-minutes %g reached", self.iteration, o.max_minutes)
                    break
                record = self.step()
                why = self._diverging(record["loss"])
                if why is not None:
                    bar.close()
                    self._diverged(record, why)
                last = record
                last["seconds"] = round(time.perf_counter() - started, 3)
                self._log(last)
                bar.update(1)
                bar.set_postfix({k: f"{v:.3g}" for k, v in list(last.items())[1:5]}, refresh=False)
                if self.iteration % o.save_every == 0:
                    self._save()
                if self.iteration % o.preview_every == 0:
                    self.preview()
        except KeyboardInterrupt:
            self._save()
            self.preview()
            bar.close()
            self._store_calibration()       # stopping with ctrl-c is how many runs end: their convert gains too
            raise UserError(f"interrupted at iteration {self.iteration}; checkpoint saved in {self.model_dir}; "
                            f"run train again to resume", exit_code=130) from None
        bar.close()
        self._save()
        self.preview()
        self._store_calibration()
        if self.world > 1:
            self._check_ranks_in_sync()
        return TrainSummary(self.iteration, start_it, time.perf_counter() - started, last, self.model_dir,
                            count_parameters(self.family.model.network), self.command)

    def _diverging(self, loss: float) -> str | None:
        """The guard's verdict, agreed by every process (one stopping alone would hang the others)."""
        why = self.guard.check(loss)
        if self.world > 1:
            device = self.device if self.device.type == "cuda" else torch.device("cpu")
            flag = torch.tensor([0.0 if why is None else 1.0], device=device)
            torch.distributed.all_reduce(flag, op=torch.distributed.ReduceOp.MAX)
            if flag.item() > 0 and why is None:
                why = "another training process diverged"
        return why

    def _diverged(self, record: dict, why: str) -> None:
        """Stop without saving: the weights of this step are not worth keeping."""
        self._log({**record, "diverged": why})
        kept = (f"the model in {self.model_dir} is still the checkpoint of iteration {self.last_saved}"
                if self.last_saved is not None else "no model was saved (no checkpoint before it)")
        raise UserError(f"training diverged at iteration {record['iteration']} ({why}); stopped without saving: "
                        f"{kept}. Lower --lr (now {self.opts.lr:g}) and train again (--fresh to start over)",
                        exit_code=1)

    def _check_ranks_in_sync(self) -> None:
        flat = torch.cat([p.detach().float().flatten() for p in self.family.model.network.parameters()]).cpu()
        checksum = torch.tensor([float(flat.sum()), float(flat.abs().sum())], dtype=torch.float64)
        device = self.device if self.device.type == "cuda" else torch.device("cpu")
        gathered = [torch.zeros_like(checksum, device=device) for _ in range(self.world)]
        torch.distributed.all_gather(gathered, checksum.to(device))
        same = ranks_agree([g.cpu() for g in gathered])
        self._log({"iteration": self.iteration, "world_size": self.world, "ranks_in_sync": bool(same)})
        if not same:
            raise UserError(f"the {self.world} training processes ended with different weights (a "
                            f"DistributedDataParallel fault); the saved model in {self.model_dir} may be wrong: "
                            f"train again from the checkpoint, or with one process", exit_code=1)


def run_loop(loop_class: type[TrainingLoop], opts: Any) -> TrainSummary:
    """Train with ``loop_class`` until ``opts.iterations`` (or a stop), saving as it goes."""
    trainer = loop_class(opts)
    try:
        summary = trainer.run()
        if trainer.world > 1:
            torch.distributed.barrier()     # every process done before any tears the group down
        return summary
    finally:
        trainer.lock.release()
        if trainer.world > 1 and torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()
