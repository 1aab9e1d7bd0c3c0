"""How the transformation network learns (Korshunova et al. 2017, with our substitutes).

Loss = content + alpha * style + beta * light + gamma * TV + identity weight * identity,
measured with a feature network (``--features``): see ``train/losses.py`` and
``train/features.py``. ``--resolution 256`` grows the trained 128 model and trains only
its new branch.
"""
from __future__ import annotations

import dataclasses
import logging
import shutil
from typing import Any

import numpy as np
import torch

from pipeline.core.errors import UserError
from pipeline.models.interface import count_parameters
from pipeline.models.store import load_model
from pipeline.models.transform import TransformModel
from pipeline.models.transform_net import TransformNet
from pipeline.models.transform_options import TransformOptions, default_width
from pipeline.training.data import nearest_styles, to_tensor
from pipeline.training.model_trainer import ModelTrainer, TrainContext
from train import losses, style_warp
from train.features import ChipGeometry, FaceFeatures, Layers, check_layers, create_features

log = logging.getLogger("train")

IDENTITY_DEGRADE_STRENGTH = 1.5   # rescale down to 0.25, blur up to 1.5 px, shift up to 3 px
IDENTITY_NOISE = 0.02              # pixel noise, in 0..1 units


class TransformTrainer(ModelTrainer):
    mixed_precision = True
    #: bfloat16 on a CPU that computes it: 0.72 against 1.65 s an iteration on one core of an AMX Xeon
    #: (width 16, batch 8), with the style term in float32 (``_style_grids``, ``_style_term``)
    cpu_bfloat16 = True

    def __init__(self, ctx: TrainContext) -> None:
        super().__init__(ctx)
        o: TransformOptions = ctx.model_options
        if o.width is None:
            o = dataclasses.replace(o, width=default_width(ctx.device.type, None if ctx.fresh else ctx.model_dir))
        self.o = o
        self.device = ctx.device
        self.alpha_max = o.alpha if o.alpha is not None else (20.0 if o.resolution == 128 else 80.0)
        content, style = ctx.content, ctx.style
        self.content, self.style = content, style
        self.feats = create_features(o.features, self.device, o.resolution)
        d = self.feats.default_layers
        self.layers = Layers(o.content_layers or d.content, o.style_layers or d.style)
        check_layers(self.feats, self.layers)
        if o.patch % 2 == 0:
            raise UserError(f"--patch {o.patch}: the style patch size must be odd (1, 3, 5, ...)")
        self.id_net = self.feats if isinstance(self.feats, FaceFeatures) else (
            FaceFeatures(self.device, o.resolution) if o.identity_weight > 0 else None)
        self.nbest = nearest_styles(content.landmarks, style.landmarks, o.n_best)
        self.net: TransformNet | None = None
        self.ddp: torch.nn.Module | None = None
        self._grid_cache: dict[int, torch.Tensor] = {}    # dst face index -> its style grids (style_warp)

    # ------------------------------------------------------------------ the model
    def build(self) -> None:
        """The network and its optimizer (the trainer seeds torch first, so weights are reproducible)."""
        o = self.o
        self.net = TransformNet(o.resolution, o.width, o.skip).to(self.device)
        self._model = TransformModel(self.net)
        self.params = self.net.trainable_parameters()
        self.optimizer = torch.optim.Adam(self.params, lr=self.ctx.lr)

    @property
    def model(self) -> TransformModel:
        return self._model

    def architecture(self) -> dict[str, Any]:
        return {"resolution": self.o.resolution, "width": self.o.width, "skip": self.o.skip}

    def options_json(self) -> dict[str, Any]:
        o = self.o
        return {"features": o.features, "content_layers": self.layers.content, "style_layers": self.layers.style,
                "patch": o.patch, "normalisation": "rgb 0..1",
                "n_best": o.n_best, "style_warp": o.style_warp, "alpha": self.alpha_max, "alpha_ramp": o.alpha_ramp,
                "beta": o.beta, "gamma": o.gamma, "identity_weight": o.identity_weight, "skin_chroma": o.skin_chroma}

    def resume_keys(self) -> tuple[str, ...]:
        return ("features", "content_layers", "style_layers", "patch")

    def resume_conflicts(self, old: dict[str, Any]) -> list[str]:
        if old.get("resolution") == 128 and self.o.resolution == 256:
            return []     # growing the 128 model into a 256 one
        return super().resume_conflicts(old)

    def checkpoint_matches(self, old: dict[str, Any]) -> bool:
        return old.get("resolution") == self.o.resolution

    def _train_new_branch_only(self) -> None:
        assert self.net is not None
        self.net.freeze_base()
        self.params = self.net.trainable_parameters()
        self.optimizer = torch.optim.Adam(self.params, lr=self.ctx.lr)

    def load_state_dict(self, state: dict[str, Any]) -> None:
        assert self.net is not None
        self.net.load_state_dict(state["net"])
        if self.o.resolution == 256:      # the grown stage trains only its new branch
            self._train_new_branch_only()
        self.optimizer.load_state_dict(state["optimizer"])
        self.load_scaler_states(state.get("scalers", {}))

    def state_dict(self) -> dict[str, Any]:
        assert self.net is not None
        return {"net": self.net.state_dict(), "optimizer": self.optimizer.state_dict(), "scalers": self.scaler_states()}

    def start(self, old: dict[str, Any] | None) -> None:
        if self.o.resolution != 256 or old is None:
            return
        assert self.net is not None
        model_dir = self.ctx.model_dir
        small, _ = load_model(model_dir, self.device)
        if small.resolution != 128 or not isinstance(small, TransformModel):
            raise UserError(f"{model_dir} holds a {small.resolution} model; a 256 model grows from a 128 one")
        self.net.grow_from(small.network)
        self._train_new_branch_only()
        if self.ctx.main:
            base = model_dir / "base_128"
            base.mkdir(exist_ok=True)
            for name in ("weights.pt", "options.json"):
                shutil.copy2(model_dir / name, base / name)
            (model_dir / "checkpoint.pt").unlink(missing_ok=True)
            log.info("256 stage: grown from the 128 model (kept in %s); only the new branch trains", base)

    def distribute(self) -> None:
        self.ddp = torch.nn.parallel.DistributedDataParallel(self.net)

    def log_lines(self) -> list[str]:
        o = self.o
        return [f"network: TransformNet {o.resolution}x{o.resolution}, {sum(p.numel() for p in self.params)} "
                f"trainable parameters ({count_parameters(self.net)} in all); features {o.features} (content "
                f"{','.join(self.layers.content)}, style {','.join(self.layers.style)}); N_best "
                f"{min(o.n_best, len(self.style))}"]

    # ------------------------------------------------------------------ once
    @torch.no_grad()
    def prepare(self) -> None:
        """Style-layer features of every style face (and flip), computed once."""
        cache: dict[str, list[torch.Tensor]] = {name: [] for name in self.layers.style}
        faces: dict[str, list[torch.Tensor]] = {name: [] for name in self.layers.style}
        points = []
        for start in range(0, len(self.style), 32):
            sl = slice(start, start + 32)
            imgs = to_tensor(self.style.images[sl], self.device)
            geom = self.feats.prepare(self.style, sl)
            out = self.feats.features(imgs, geom, self.layers.style)
            face = self.feats.masks(to_tensor(self.style.masks[sl], self.device), geom)
            points.append(self.feats.points(torch.from_numpy(self.style.landmarks[sl]).float().to(self.device), geom))
            for name in self.layers.style:
                cache[name].append(out[name])
                faces[name].append(losses.resize_mask(face, tuple(out[name].shape[-2:])).half())
        self.style_cache = {k: torch.cat(v) for k, v in cache.items()}
        # where each style face is face, and its landmarks, in the feature maps' coordinates (style_warp)
        self.style_face = {k: torch.cat(v) for k, v in faces.items()}
        self.style_points = torch.cat(points)
        # identity target: the mean descriptor of each content face's N_best style faces
        if self.id_net is not None:
            if self.style.descriptors is not None:
                desc = torch.from_numpy(self.style.descriptors).to(self.device)
            else:
                parts = []
                for start in range(0, len(self.style), 32):
                    sl = slice(start, start + 32)
                    parts.append(self.id_net.descriptor(to_tensor(self.style.images[sl], self.device),
                                                        self.id_net.prepare(self.style, sl)))
                desc = torch.cat(parts)
            self.targets = desc[torch.from_numpy(self.nbest).to(self.device)].mean(dim=1)
        # content features are divided by their mean square, so the weights mean the same
        # whichever network gives the features
        sample = np.linspace(0, len(self.content) - 1, min(32, len(self.content))).astype(int)
        f = self.feats.features(to_tensor(self.content.images[sample], self.device),
                                self.feats.prepare(self.content, sample), self.layers.content)
        self.content_scale = {k: float(v.pow(2).mean().clamp_min(1e-8)) for k, v in f.items()}

    # ------------------------------------------------------------------ one step
    def loss_terms(self, idx: np.ndarray, iteration: int, total: int) -> tuple[torch.Tensor, dict[str, torch.Tensor],
                                                                              dict[str, torch.Tensor], float]:
        """The batch's output, each loss term as it enters the sum (weights applied) and as
        measured (before its weight), and alpha.

        ``step`` minimises their sum; taken apart they show which term pushes the output where
        (``benchmarks/fringe_sources.py``: whose gradient paints colour).
        """
        o = self.o
        x = to_tensor(self.content.images[idx], self.device)
        m = to_tensor(self.content.masks[idx], self.device)
        geom = self.feats.prepare(self.content, idx)
        alpha = losses.alpha_at(iteration, total, self.alpha_max, o.alpha_ramp)
        net = self.ddp if self.ddp is not None else self.net
        assert net is not None
        with self.autocast():
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
            grids = self._style_grids(idx, nb, geom)
            style = sum(self._style_term(k, fy[k], nb, grids, mf) for k in self.layers.style)
            # shading, skin tone and no colour fringes: the dst's look, the src's shapes
            light = (losses.light_loss(y, x, m) + losses.colour_loss(y, x, m)
                     + losses.chroma_change_loss(y, x, m, o.skin_chroma))
            tv = losses.tv_loss(y)
            raw = {"content": content, "style": style, "light": light, "tv": tv}
            terms = {"content": content, "style": alpha * style, "light": o.beta * light, "tv": o.gamma * tv}
            if self.id_net is not None and o.identity_weight > 0:
                id_geom = geom if self.id_net is self.feats else self.id_net.prepare(self.content, idx)
                degraded, jittered = self._identity_view(y.float(), id_geom)
                raw["identity"] = losses.identity_loss(self.id_net.descriptor(degraded, jittered),
                                                       self.targets[torch.from_numpy(idx).to(self.device)])
                terms["identity"] = o.identity_weight * raw["identity"]
        return y, terms, raw, alpha

    def _style_grids(self, idx: np.ndarray, nb: torch.Tensor, geom: Any) -> torch.Tensor | None:
        """Where each dst face's feature positions fall in each of its style faces (``--style-warp``).

        A dst face's style faces are fixed (N_best), so its grids are fitted once and kept
        (float16: 32 KB a dst face at N_best 16).
        """
        if not self.o.style_warp:
            return None
        with self._style_in_float32():
            return self._fitted_grids(idx, nb, geom)

    def _style_in_float32(self) -> Any:
        """Under bfloat16 autocast, the style term in float32: its cosine distances are 1 - cos with cos
        near 1, which bfloat16's 8 bits of mantissa round away (and its float16 grid cache cannot be
        joined under a bfloat16 autocast)."""
        import contextlib
        return torch.autocast("cpu", enabled=False) if self.bfloat16 else contextlib.nullcontext()

    def _fitted_grids(self, idx: np.ndarray, nb: torch.Tensor, geom: Any) -> torch.Tensor:
        cache = self._grid_cache
        missing = [k for k, i in enumerate(idx) if int(i) not in cache]
        if missing:
            n = nb.shape[1]
            points = torch.from_numpy(self.content.landmarks[idx]).float().to(self.device)
            dst = self.feats.points(points, geom)[missing]
            grids = style_warp.tps_grids(dst.repeat_interleave(n, dim=0), self.style_points[nb[missing].reshape(-1)])
            for k, g in zip(missing, grids.reshape(len(missing), n, *grids.shape[1:])):
                cache[int(idx[k])] = g.half()
        return torch.cat([cache[int(i)] for i in idx]).float()

    def _style_term(self, layer: str, out: torch.Tensor, nb: torch.Tensor, grids: torch.Tensor | None,
                    mask: torch.Tensor) -> torch.Tensor:
        """One style layer's loss, against the style faces as they are or brought into the dst face's shape."""
        if self.bfloat16:
            with self._style_in_float32():
                return self._style_term_as_is(layer, out.float(), nb, grids, mask)
        return self._style_term_as_is(layer, out, nb, grids, mask)

    def _style_term_as_is(self, layer: str, out: torch.Tensor, nb: torch.Tensor, grids: torch.Tensor | None,
                          mask: torch.Tensor) -> torch.Tensor:
        styles = self.style_cache[layer][nb]
        if grids is None:
            return losses.style_loss(out, styles, self.o.patch, mask)
        warped, valid = style_warp.warp_styles(styles, self.style_face[layer][nb], grids)
        return losses.style_loss(out, warped, self.o.patch, mask, valid)

    def step(self, idx: np.ndarray, iteration: int, total: int, lr: float) -> dict[str, float]:
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        _, terms, raw, alpha = self.loss_terms(idx, iteration, total)
        with self.autocast():
            loss = terms["content"] + terms["style"] + terms["light"] + terms["tv"]
            if "identity" in terms:
                loss = loss + terms["identity"]
        self.optimise(loss, self.optimizer)
        def value(k: str) -> float:
            # detached: float() of a tensor that requires grad warns on every step (torch 2.13)
            v = raw.get(k, 0.0)
            return float(v.detach()) if isinstance(v, torch.Tensor) else float(v)
        return {"loss": loss.item(), **{k: value(k) for k in ("content", "style", "light", "tv", "identity")},
                "alpha": alpha}

    def _identity_view(self, y: torch.Tensor, geom: ChipGeometry) -> tuple[torch.Tensor, ChipGeometry]:
        """A randomly degraded look at the output, for the identity loss.

        A face network can be pushed toward an identity by patterns no person sees; those
        patterns are fragile. Rescaling, blur, shift and colour changes (``degrade``), pixel
        noise, and a random jitter of the chip's position, scale and angle each step leave
        only changes that survive all of them: the visible ones.
        """
        g = self.ctx.generator
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

    # ------------------------------------------------------------------ preview
    @torch.no_grad()
    def preview_rows(self, picks: np.ndarray) -> list[np.ndarray]:
        """dst face | output | closest src face."""
        assert self.net is not None
        self.net.eval()
        out = self.net(to_tensor(self.content.images[picks], self.device)).clamp(0, 1)
        self.net.train()
        out_u8 = (out.permute(0, 2, 3, 1).float().cpu().numpy() * 255 + 0.5).astype(np.uint8)
        return [np.hstack([self.content.images[i], o, self.style.images[self.nbest[i][0]]])
                for i, o in zip(picks, out_u8)]

