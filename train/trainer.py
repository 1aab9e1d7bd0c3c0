"""The training loop: resumable, seeded, previewed, logged; one process or DDP under torchrun.

State lives in ``workspace/model/``: ``checkpoint.pt`` (network, optimizer, iteration,
random-generator states; tensors and plain values only, loaded with weights_only),
``weights.pt`` + ``options.json`` (the self-contained model convert uses),
``preview.jpg`` and ``history/``, ``log.jsonl``. Running ``train`` again resumes at the
saved iteration with the same optimizer state and random streams, so the next losses are
the ones an uninterrupted run would have had.
"""
from __future__ import annotations

import json
import logging
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
import torch

from pipeline.core.device import choose_device, describe_device
from pipeline.core.errors import UserError
from pipeline.core.files import write_atomic
from pipeline.core.images import encode
from pipeline.models.transform_net import TransformNet, count_parameters, load_model, save_model
from train import losses
from train.data import load_training_sets, nearest_styles
from train.features import ChipGeometry, FaceFeatures, Layers, check_layers, create_features

log = logging.getLogger("train")

#: Options that shape the network or its losses' meaning: a resumed run must keep them.
IDENTITY_DEGRADE_STRENGTH = 1.5   # rescale down to 0.25, blur up to 1.5 px, shift up to 3 px
IDENTITY_NOISE = 0.02              # pixel noise, in 0..1 units

ARCH_KEYS = ("resolution", "width", "skip", "features", "content_layers", "style_layers", "patch", "face_type")


@dataclass
class TrainOptions:
    workspace: Path = Path("workspace")
    resolution: int = 128
    iterations: int = 10000
    batch_size: int = 16
    lr: float = 1e-3
    lr_end: float = 1e-4
    alpha: float | None = None          # style weight at the end of the ramp: 20 (128) / 80 (256)
    alpha_ramp: float = 0.5             # fraction of the iterations over which alpha rises from 0
    beta: float = 20.0                  # light (low-frequency shading) weight
    gamma: float = 0.3                  # total variation weight
    identity_weight: float = 1.0
    features: str = "dlib"
    content_layers: list[str] | None = None
    style_layers: list[str] | None = None
    patch: int = 1
    n_best: int = 16
    width: int = 32
    skip: bool = True
    seed: int = 0
    save_every: int = 500
    preview_every: int = 250
    stop_at: int | None = None
    max_minutes: float | None = None    # stop (checkpoint saved) after this much wall time
    content_extra: list[Path] = field(default_factory=list)
    device: str = "auto"
    fresh: bool = False


@dataclass
class TrainSummary:
    iterations_done: int
    start_iteration: int
    seconds: float
    last: dict
    model_dir: Path
    parameters: int

    def line(self) -> str:
        ran = self.iterations_done - self.start_iteration
        rate = ran / self.seconds if self.seconds > 0 else 0.0
        terms = ", ".join(f"{k} {v:.4g}" for k, v in self.last.items() if k in ("loss", "content", "style", "light", "tv", "identity"))
        return (f"train: iteration {self.iterations_done} ({ran} this run, {rate:.2f} it/s, {self.seconds:.0f} s); "
                f"{terms}; model in {self.model_dir}")


def _dist() -> tuple[int, int]:
    """(rank, world size) under torchrun; (0, 1) otherwise."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and not torch.distributed.is_initialized():
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        torch.distributed.init_process_group(backend)
    rank = torch.distributed.get_rank() if world > 1 else 0
    return rank, world


def _to_tensor(images: np.ndarray, device: torch.device) -> torch.Tensor:
    t = torch.from_numpy(np.ascontiguousarray(images)).to(device)
    if t.ndim == 3:
        return t[:, None].float() / 255.0
    return t.permute(0, 3, 1, 2).float() / 255.0


class Trainer:
    def __init__(self, opts: TrainOptions) -> None:
        self.opts = opts
        self.rank, self.world = _dist()
        self.main = self.rank == 0
        if opts.resolution not in (128, 256):
            raise UserError(f"--resolution {opts.resolution}: choose 128 or 256")
        if opts.batch_size < 1 or opts.iterations < 1:
            raise UserError("--batch-size and --iterations must be at least 1")
        self.device = choose_device(opts.device)
        if self.world > 1 and self.device.type == "cuda":
            self.device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        self.model_dir = Path(opts.workspace) / "model"
        self.alpha_max = opts.alpha if opts.alpha is not None else (20.0 if opts.resolution == 128 else 80.0)

        content, style = load_training_sets(Path(opts.workspace), opts.resolution, opts.content_extra)
        self.content, self.style = content, style
        self.feats = create_features(opts.features, self.device, opts.resolution)
        d = self.feats.default_layers
        self.layers = Layers(opts.content_layers or d.content, opts.style_layers or d.style)
        check_layers(self.feats, self.layers)
        self.id_net = self.feats if isinstance(self.feats, FaceFeatures) else (
            FaceFeatures(self.device, opts.resolution) if opts.identity_weight > 0 else None)
        self.nbest = nearest_styles(content.landmarks, style.landmarks, opts.n_best)
        self.options = self._options_json()
        self._check_existing_model()

        torch.manual_seed(opts.seed)
        self.net = TransformNet(opts.resolution, opts.width, opts.skip).to(self.device)
        self.params = [p for p in self.net.parameters() if p.requires_grad]
        self.optimizer = torch.optim.Adam(self.params, lr=opts.lr)
        self.sampler = np.random.Generator(np.random.PCG64(opts.seed + 1000 * self.rank))
        self.gen = torch.Generator(device="cpu").manual_seed(opts.seed + 1 + 1000 * self.rank)
        self.iteration = 0
        self._base_grown = False
        self._prepare_style_cache()
        self._resume_or_grow()
        self.ddp = None
        if self.world > 1:
            self.ddp = torch.nn.parallel.DistributedDataParallel(self.net)
        self.amp = self.device.type == "cuda"
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp)

    # ------------------------------------------------------------------ setup
    def _options_json(self) -> dict:
        o = self.opts
        return {"resolution": o.resolution, "width": o.width, "skip": o.skip, "features": o.features,
                "content_layers": self.layers.content, "style_layers": self.layers.style, "patch": o.patch,
                "face_type": self.content.face_type, "normalisation": "rgb 0..1",
                "n_best": o.n_best, "alpha": self.alpha_max, "alpha_ramp": o.alpha_ramp, "beta": o.beta, "gamma": o.gamma,
                "identity_weight": o.identity_weight, "batch_size": o.batch_size, "iterations": o.iterations,
                "lr": o.lr, "lr_end": o.lr_end, "seed": o.seed}

    def _check_existing_model(self) -> None:
        opts_path = self.model_dir / "options.json"
        if not opts_path.exists():
            return
        if self.opts.fresh:
            if self.main:
                aside = self.model_dir.with_name(f"model-old-{time.strftime('%Y%m%d-%H%M%S')}")
                shutil.move(str(self.model_dir), aside)
                log.info("--fresh: the previous model was moved to %s", aside)
            if self.world > 1:
                torch.distributed.barrier()
            return
        try:
            old = json.loads(opts_path.read_text())
        except ValueError as exc:
            raise UserError(f"{opts_path} is not valid JSON ({exc}); restore it or train with --fresh") from exc
        if old.get("resolution") == 128 and self.opts.resolution == 256:
            return   # growing the 128 model into a 256 one
        diff = [f"{k} {old.get(k)} -> {self.options.get(k)}" for k in ARCH_KEYS if old.get(k) != self.options.get(k)]
        if diff:
            raise UserError(f"{self.model_dir} holds a model trained with other settings ({'; '.join(diff)}); "
                            f"train with the same options to resume, or add --fresh to start a new model "
                            f"(the old one is kept beside it)")

    @torch.no_grad()
    def _prepare_style_cache(self) -> None:
        """Style-layer features of every style face (and flip), computed once."""
        cache: dict[str, list[torch.Tensor]] = {name: [] for name in self.layers.style}
        for start in range(0, len(self.style), 32):
            sl = slice(start, start + 32)
            imgs = _to_tensor(self.style.images[sl], self.device)
            geom = self.feats.prepare(self.style, sl)
            out = self.feats.features(imgs, geom, self.layers.style)
            for name in self.layers.style:
                cache[name].append(out[name])
        self.style_cache = {k: torch.cat(v) for k, v in cache.items()}
        # identity target: the mean descriptor of each content face's N_best style faces
        if self.id_net is not None:
            if self.style.descriptors is not None:
                desc = torch.from_numpy(self.style.descriptors).to(self.device)
            else:
                parts = []
                for start in range(0, len(self.style), 32):
                    sl = slice(start, start + 32)
                    parts.append(self.id_net.descriptor(_to_tensor(self.style.images[sl], self.device),
                                                        self.id_net.prepare(self.style, sl)))
                desc = torch.cat(parts)
            self.targets = desc[torch.from_numpy(self.nbest).to(self.device)].mean(dim=1)
        # content features are divided by their mean square, so the weights mean the same
        # whichever network gives the features
        sample = np.linspace(0, len(self.content) - 1, min(32, len(self.content))).astype(int)
        f = self.feats.features(_to_tensor(self.content.images[sample], self.device),
                                self.feats.prepare(self.content, sample), self.layers.content)
        self.content_scale = {k: float(v.pow(2).mean().clamp_min(1e-8)) for k, v in f.items()}

    def _resume_or_grow(self) -> None:
        ckpt_path = self.model_dir / "checkpoint.pt"
        old_opts = self.model_dir / "options.json"
        if ckpt_path.exists() and old_opts.exists() and json.loads(old_opts.read_text()).get("resolution") == self.opts.resolution:
            try:
                state = torch.load(ckpt_path, map_location=self.device, weights_only=True)
                self.net.load_state_dict(state["net"])
                if self.opts.resolution == 256:      # the grown stage trains only its new branch
                    self.net.freeze_base()
                    self.params = [p for p in self.net.parameters() if p.requires_grad]
                    self.optimizer = torch.optim.Adam(self.params, lr=self.opts.lr)
                self.optimizer.load_state_dict(state["optimizer"])
            except Exception as exc:  # noqa: BLE001 - unreadable, truncated, refused by weights_only: all one fix
                raise UserError(f"{ckpt_path} could not be loaded ({str(exc).splitlines()[0][:120]}); restore it, "
                                f"or train with --fresh to start over") from exc
            self.iteration = int(state["iteration"])
            if self.rank == 0 and "sampler" in state:
                self.sampler.bit_generator.state = json.loads(state["sampler"])
                self.gen.set_state(state["generator"])
            if self.main:
                log.info("resuming at iteration %d from %s", self.iteration, ckpt_path)
            return
        if self.opts.resolution == 256 and old_opts.exists():
            small, _ = load_model(self.model_dir, self.device)
            if small.resolution != 128:
                raise UserError(f"{self.model_dir} holds a {small.resolution} model; a 256 model grows from a 128 one")
            self.net.grow_from(small)
            self.net.freeze_base()
            self.params = [p for p in self.net.parameters() if p.requires_grad]
            self.optimizer = torch.optim.Adam(self.params, lr=self.opts.lr)
            if self.main:
                base = self.model_dir / "base_128"
                base.mkdir(exist_ok=True)
                for name in ("weights.pt", "options.json"):
                    shutil.copy2(self.model_dir / name, base / name)
                (self.model_dir / "checkpoint.pt").unlink(missing_ok=True)
                log.info("256 stage: grown from the 128 model (kept in %s); only the new branch trains", base)

    # ------------------------------------------------------------------ one step
    def _batch(self) -> np.ndarray:
        n = len(self.content)
        return self.sampler.choice(n, size=self.opts.batch_size, replace=n < self.opts.batch_size)

    def step(self) -> dict:
        o = self.opts
        idx = self._batch()
        x = _to_tensor(self.content.images[idx], self.device)
        m = _to_tensor(self.content.masks[idx], self.device)
        geom = self.feats.prepare(self.content, idx)
        total = o.iterations
        alpha = losses.alpha_at(self.iteration, total, self.alpha_max, o.alpha_ramp)
        lr = o.lr * (o.lr_end / o.lr) ** (self.iteration / max(total - 1, 1))
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        net = self.ddp if self.ddp is not None else self.net
        with torch.autocast(self.device.type, dtype=torch.float16, enabled=self.amp):
            y = net(x)
            taps = list(dict.fromkeys(self.layers.content + self.layers.style))
            fy = self.feats.features(y, geom, taps)
            with torch.no_grad():
                fx = self.feats.features(x, geom, self.layers.content)
            mf = self.feats.masks(m, geom)
            scale = {k: v ** 0.5 for k, v in self.content_scale.items()}
            content = losses.content_loss({k: fy[k] / scale[k] for k in self.layers.content},
                                          {k: fx[k] / scale[k] for k in self.layers.content},
                                          self.layers.content, mf)
            nb = torch.from_numpy(self.nbest[idx]).to(self.device)
            style = sum(losses.style_loss(fy[k], self.style_cache[k][nb], o.patch, mf) for k in self.layers.style)
            # shading, skin tone and no colour fringes: the dst's look, the src's shapes
            light = losses.light_loss(y, x, m) + losses.colour_loss(y, x, m) + losses.chroma_change_loss(y, x, m)
            tv = losses.tv_loss(y)
            loss = content + alpha * style + o.beta * light + o.gamma * tv
            identity = torch.zeros((), device=self.device)
            if self.id_net is not None and o.identity_weight > 0:
                id_geom = geom if self.id_net is self.feats else self.id_net.prepare(self.content, idx)
                degraded, jittered = self._identity_view(y.float(), id_geom)
                identity = losses.identity_loss(self.id_net.descriptor(degraded, jittered),
                                                self.targets[torch.from_numpy(idx).to(self.device)])
                loss = loss + o.identity_weight * identity
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.iteration += 1
        return {"iteration": self.iteration, "loss": loss.item(), "content": content.item(), "style": style.item(),
                "light": light.item(), "tv": tv.item(), "identity": identity.item(), "alpha": alpha, "lr": lr}

    def _identity_view(self, y: torch.Tensor, geom: ChipGeometry) -> tuple[torch.Tensor, ChipGeometry]:
        """A randomly degraded look at the output, for the identity loss.

        A face network can be pushed toward an identity by patterns no person sees; those
        patterns are fragile. Rescaling, blur, shift and colour changes (``degrade``), pixel
        noise, and a random jitter of the chip's position, scale and angle each step leave
        only changes that survive all of them: the visible ones.
        """
        g = self.gen
        degraded = losses.degrade(y, g, strength=IDENTITY_DEGRADE_STRENGTH)
        noise = torch.randn(degraded.shape, generator=g).to(degraded.device) * IDENTITY_NOISE
        degraded = (degraded + noise).clamp(0, 1)
        thetas = geom.thetas
        b = thetas.shape[0]
        r = torch.rand(b, 4, generator=g).to(thetas.device) * 2 - 1
        angle, scale = r[:, 0] * np.radians(4.0), 1 + r[:, 1] * 0.05
        shift = r[:, 2:] * 0.03                                  # of the chip's half size
        cos, sin = torch.cos(angle) * scale, torch.sin(angle) * scale
        jitter = torch.zeros(b, 3, 3, device=thetas.device)
        jitter[:, 0, 0], jitter[:, 0, 1], jitter[:, 1, 0], jitter[:, 1, 1] = cos, -sin, sin, cos
        jitter[:, :2, 2], jitter[:, 2, 2] = shift, 1.0
        full = torch.cat([thetas, torch.tensor([0, 0, 1.0], device=thetas.device).expand(b, 1, 3)], dim=1)
        return degraded, geom.with_thetas((full @ jitter)[:, :2])

    # ------------------------------------------------------------------ outputs
    def _save(self) -> None:
        if not self.main:
            return
        self.model_dir.mkdir(parents=True, exist_ok=True)
        state = {"net": self.net.state_dict(), "optimizer": self.optimizer.state_dict(),
                 "iteration": self.iteration, "sampler": json.dumps(self.sampler.bit_generator.state),
                 "generator": self.gen.get_state()}
        write_atomic(self.model_dir / "checkpoint.pt", lambda fh: torch.save(state, fh))
        save_model(self.model_dir, self.net, {**self.options, "iteration": self.iteration})

    @torch.no_grad()
    def preview(self) -> Path | None:
        """Rows: dst face | output | closest src face, for four fixed dst faces."""
        if not self.main:
            return None
        picks = np.linspace(0, len(self.content) - 1, min(4, len(self.content))).astype(int)
        self.net.eval()
        out = self.net(_to_tensor(self.content.images[picks], self.device)).clamp(0, 1)
        self.net.train()
        out = (out.permute(0, 2, 3, 1).float().cpu().numpy() * 255 + 0.5).astype(np.uint8)
        rows = [np.hstack([self.content.images[i], o, self.style.images[self.nbest[i][0]]]) for i, o in zip(picks, out)]
        sheet = np.vstack(rows)
        cv2.putText(sheet, f"it {self.iteration}", (4, 14), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (255, 255, 0), 1)
        data = encode(sheet, ".jpg")
        (self.model_dir / "history").mkdir(parents=True, exist_ok=True)
        write_atomic(self.model_dir / "preview.jpg", data)
        write_atomic(self.model_dir / "history" / f"preview_{self.iteration:06d}.jpg", data)
        return self.model_dir / "preview.jpg"

    def _log(self, record: dict) -> None:
        if self.main:
            with open(self.model_dir / "log.jsonl", "a") as fh:
                fh.write(json.dumps(record) + "\n")

    # ------------------------------------------------------------------ the loop
    def run(self) -> TrainSummary:
        from tqdm import tqdm
        o = self.opts
        end = min(o.iterations, o.stop_at) if o.stop_at else o.iterations
        start_it, started = self.iteration, time.perf_counter()
        if self.main:
            self.model_dir.mkdir(parents=True, exist_ok=True)
            log.info("train: %d dst faces (content), %d src faces with flips (style), N_best %d", len(self.content),
                     len(self.style), min(o.n_best, len(self.style)))
            log.info("network: TransformNet %dx%d, %d trainable parameters; features %s (content %s, style %s); "
                     "device %s%s", o.resolution, o.resolution, sum(p.numel() for p in self.params), o.features,
                     ",".join(self.layers.content), ",".join(self.layers.style), describe_device(self.device),
                     f"; {self.world} processes" if self.world > 1 else "")
        bar = tqdm(total=end, initial=self.iteration, unit="it", desc="train", disable=not self.main,
                   dynamic_ncols=True, mininterval=1.0)
        last: dict = {}
        try:
            while self.iteration < end:
                if o.max_minutes is not None and time.perf_counter() - started > 60 * o.max_minutes:
                    log.info("stopping at iteration %d: --max-minutes %g reached", self.iteration, o.max_minutes)
                    break
                last = self.step()
                last["seconds"] = round(time.perf_counter() - started, 3)
                self._log(last)
                bar.update(1)
                bar.set_postfix({k: f"{last[k]:.3g}" for k in ("loss", "content", "style", "identity")}, refresh=False)
                if self.iteration % o.save_every == 0:
                    self._save()
                if self.iteration % o.preview_every == 0:
                    self.preview()
        except KeyboardInterrupt:
            self._save()
            self.preview()
            bar.close()
            raise UserError(f"interrupted at iteration {self.iteration}; checkpoint saved in {self.model_dir}; "
                            f"run train again to resume", exit_code=130) from None
        bar.close()
        self._save()
        self.preview()
        if self.world > 1:
            self._check_ranks_in_sync()
        return TrainSummary(self.iteration, start_it, time.perf_counter() - started, last, self.model_dir,
                            count_parameters(self.net))

    def _check_ranks_in_sync(self) -> None:
        flat = torch.cat([p.detach().float().flatten() for p in self.net.parameters()]).cpu()
        checksum = torch.tensor([float(flat.sum()), float(flat.abs().sum())], dtype=torch.float64)
        gathered = [torch.zeros_like(checksum) for _ in range(self.world)]
        torch.distributed.all_gather(gathered, checksum)
        same = all(torch.allclose(g, gathered[0]) for g in gathered)
        self._log({"iteration": self.iteration, "world_size": self.world, "ranks_in_sync": bool(same)})


def run_train(opts: TrainOptions) -> TrainSummary:
    trainer = Trainer(opts)
    try:
        return trainer.run()
    finally:
        if trainer.world > 1 and torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()
