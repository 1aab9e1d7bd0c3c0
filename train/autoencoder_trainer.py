"""How the DF and LIAE autoencoders learn (DeepFaceLab's SAEHD recipe).

Each step takes the trainer's batch of dst faces and as many src faces (drawn from the
trainer's generator), makes a warped input and an unwarped target of each
(``train.autoencoder_augment``), and asks the network to rebuild src from src and dst
from dst. Per side the loss is

    5 * DSSIM(k = R/11.6) + 5 * DSSIM(k = R/23.2) + 10 * MSE      inside the softened workspace mask
    + 300 * |target - output| on the eyes and mouth                (--eyes-mouth-prio)
    + 10 * MSE(learned mask, workspace mask)                       (--mask-loss)
    + adversarial terms (logistic)                                 (--true-face-power, --gan-power)

and the step minimises src + dst. DSSIM at two window sizes weighs both the face's
structure and its finer texture; the MSE keeps colours right; the softened mask (the
workspace's masks, hand-painted ones included, blurred outward) keeps the background
from costing capacity. The swap, dst -> src, is never trained directly: it comes from
the shared code, which is the autoencoder's whole trick.
"""
from __future__ import annotations

import logging
from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from pipeline.core.errors import UserError
from pipeline.models.autoencoder import AutoencoderModel, DFModel, LIAEModel
from pipeline.models.autoencoder_net import AutoencoderNet
from pipeline.models.autoencoder_options import AutoencoderOptions, resolve_widths
from pipeline.models.interface import count_parameters
from pipeline.training.model_trainer import ModelTrainer, TrainContext
from train import autoencoder_adversarial as adv
from train import autoencoder_augment as aug

log = logging.getLogger("train")

DSSIM_WEIGHT = 5.0            # per window size (two sizes: DeepFaceLab's 10 in all)
MSE_WEIGHT = 10.0
EYES_MOUTH_WEIGHT = 300.0
MASK_WEIGHT = 10.0
SSIM_SIGMA = 1.5


def ssim_windows(resolution: int) -> tuple[int, int]:
    """DSSIM window sizes at ``resolution``: about R/11.6 and R/23.2 (DeepFaceLab's), odd, at least 3."""
    return tuple(max(3, int(resolution / d) | 1) for d in (11.6, 23.2))  # type: ignore[return-value]


def dssim(a: Tensor, b: Tensor, window: int) -> Tensor:
    """(1 - SSIM) / 2 per image (N,), SSIM with a Gaussian window of ``window`` taps (sigma 1.5), no padding."""
    c = a.shape[1]
    x = torch.arange(window, device=a.device, dtype=a.dtype) - (window - 1) / 2
    g = torch.exp(-0.5 * (x / SSIM_SIGMA) ** 2)
    g = g / g.sum()
    kernel = (g[:, None] * g[None, :]).expand(c, 1, window, window)

    def blur(t: Tensor) -> Tensor:
        return F.conv2d(t, kernel, groups=c)

    mu_a, mu_b = blur(a), blur(b)
    var_a = blur(a * a) - mu_a ** 2
    var_b = blur(b * b) - mu_b ** 2
    cov = blur(a * b) - mu_a * mu_b
    c1, c2 = 0.01 ** 2, 0.03 ** 2
    ssim = ((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / ((mu_a ** 2 + mu_b ** 2 + c1) * (var_a + var_b + c2))
    return ((1 - ssim) / 2).flatten(1).mean(1)


def soften_mask(mask: Tensor) -> Tensor:
    """The workspace mask blurred by side/32 and doubled: full weight up to the edge, fading outside it."""
    r = mask.shape[-1]
    sigma = max(1, r // 32)
    radius = 3 * sigma
    x = torch.arange(-radius, radius + 1, device=mask.device, dtype=mask.dtype)
    g = torch.exp(-0.5 * (x / sigma) ** 2)
    g = g / g.sum()
    m = F.conv2d(F.pad(mask, (radius, radius, 0, 0), mode="replicate"), g.view(1, 1, 1, -1))
    m = F.conv2d(F.pad(m, (0, 0, radius, radius), mode="replicate"), g.view(1, 1, -1, 1))
    return (m * 2).clamp(0, 1)


def _u8(t: Tensor) -> np.ndarray:
    return (t.clamp(0, 1).permute(0, 2, 3, 1).float().cpu().numpy() * 255 + 0.5).astype(np.uint8)


class AutoencoderTrainer(ModelTrainer):
    """One training step of either layout; the subclasses only name the model class."""

    model_class: ClassVar[type[AutoencoderModel]] = AutoencoderModel
    #: measured: with Adam at 1e-3 the gpu preset's loss jumps (DSSIM and MSE up several-fold) and recovers
    #: again and again in its first iterations; at 3e-4 it falls steadily (DeepFaceLab: RMSprop at 5e-5)
    default_lr = (3e-4, 3e-5)
    mixed_precision = True

    def __init__(self, ctx: TrainContext) -> None:
        super().__init__(ctx)
        self.o: AutoencoderOptions = ctx.model_options
        self.device = ctx.device
        self.widths, self.widths_from = resolve_widths(self.o, ctx.device.type, None if ctx.fresh else ctx.model_dir)
        style = ctx.style
        half = len(style) // 2
        mirrored = half > 0 and all(n.endswith(" (flipped)") for n in style.names[half:])
        self.n_src = half if mirrored else len(style)    # the src photos themselves: flips are --random-flip's
        if self.o.true_face_power > 0 and self.model_class.type_name != "df":
            raise UserError(f"--true-face-power is for --model df only (in {self.model_class.type_name.upper()} the "
                            f"swap's code is not the dst face's training code; DeepFaceLab offers it for DF only); "
                            f"drop the option or train --model df")
        self.net: AutoencoderNet | None = None
        self.ddp: torch.nn.Module | None = None
        #: the optional discriminators by name ("code", "patch"), each with its Adam, and their DDP wrappers
        self.discriminators: dict[str, torch.nn.Module] = {}
        self.d_optimizers: dict[str, torch.optim.Optimizer] = {}
        self.d_ddp: dict[str, torch.nn.Module] = {}

    # ------------------------------------------------------------------ the model
    def architecture(self) -> dict[str, Any]:
        return {"resolution": self.o.resolution, **self.widths._asdict()}

    def options_json(self) -> dict[str, Any]:
        o = self.o
        return {"widths_from": self.widths_from, "random_warp": o.random_warp, "random_flip": o.random_flip,
                "eyes_mouth_prio": o.eyes_mouth_prio, "masked_loss": o.masked_loss, "mask_loss": o.mask_loss,
                "true_face_power": o.true_face_power, "gan_power": o.gan_power, "normalisation": "rgb 0..1"}

    def build(self) -> None:
        net = self.model_class.net_class(**self.architecture()).to(self.device)
        self.net = net
        self._model = self.model_class(net)
        self.optimizer = torch.optim.Adam(net.parameters(), lr=self.ctx.lr)
        if self.o.true_face_power > 0:
            self.discriminators["code"] = adv.CodeDiscriminator(net.ae_dims).to(self.device)
        if self.o.gan_power > 0:
            self.discriminators["patch"] = adv.PatchDiscriminator().to(self.device)
        self.d_optimizers = {k: torch.optim.Adam(d.parameters(), lr=self.ctx.lr)
                             for k, d in self.discriminators.items()}

    @property
    def model(self) -> AutoencoderModel:
        return self._model

    def state_dict(self) -> dict[str, Any]:
        assert self.net is not None
        return {"net": self.net.state_dict(), "optimizer": self.optimizer.state_dict(),
                "discriminators": {k: d.state_dict() for k, d in self.discriminators.items()},
                "d_optimizers": {k: o.state_dict() for k, o in self.d_optimizers.items()},
                "scalers": self.scaler_states()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """The network and optimizer; a discriminator switched on since the checkpoint starts fresh (as
        DeepFaceLab lets GAN be turned on late), one switched off is dropped."""
        assert self.net is not None
        self.net.load_state_dict(state["net"])
        self.optimizer.load_state_dict(state["optimizer"])
        saved, saved_opt = state.get("discriminators", {}), state.get("d_optimizers", {})
        for name, d in self.discriminators.items():
            if name in saved:
                d.load_state_dict(saved[name])
                self.d_optimizers[name].load_state_dict(saved_opt[name])
            else:
                log.info("the %s discriminator starts fresh (not in the checkpoint)", name)
        self.load_scaler_states(state.get("scalers", {}))

    def distribute(self) -> None:
        # without --mask-loss the mask decoder gets no gradient, which DDP must be told
        self.ddp = torch.nn.parallel.DistributedDataParallel(self.net, find_unused_parameters=not self.o.mask_loss)
        self.d_ddp = {k: torch.nn.parallel.DistributedDataParallel(d) for k, d in self.discriminators.items()}

    def log_lines(self) -> list[str]:
        w, o = self.widths, self.o
        parts = [name for name, on in (("random warp", o.random_warp), ("random flip", o.random_flip),
                                       ("eyes and mouth priority", o.eyes_mouth_prio), ("masked loss", o.masked_loss),
                                       ("mask loss", o.mask_loss),
                                       (f"true face {o.true_face_power:g}", o.true_face_power > 0),
                                       (f"GAN {o.gan_power:g}", o.gan_power > 0)) if on]
        return [f"network: {self.model_class.type_name.upper()} autoencoder {o.resolution}x{o.resolution}, ae "
                f"{w.ae_dims}, e {w.e_dims}, d {w.d_dims}, d_mask {w.d_mask_dims} ({self.widths_from}), "
                f"{count_parameters(self.net)} parameters; {self.n_src} src faces; {', '.join(parts) or 'plain'}"]

    # ------------------------------------------------------------------ once
    def prepare(self) -> None:
        """Faces, masks and (with --eyes-mouth-prio) eye and mouth masks as tensors on the device, once."""
        def tensors(images: np.ndarray, masks: np.ndarray, landmarks: np.ndarray) -> tuple[Tensor, ...]:
            stack = [torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2),
                     torch.from_numpy(np.ascontiguousarray(masks))[:, None]]
            if self.o.eyes_mouth_prio:
                em = aug.eyes_mouth_masks(landmarks, self.o.resolution)
                stack.append(torch.from_numpy(em)[:, None])
            return tuple(t.to(self.device) for t in stack)

        c, s = self.ctx.content, self.ctx.style
        self.dst = tensors(c.images, c.masks, c.landmarks)
        self.src = tensors(s.images[:self.n_src], s.masks[:self.n_src], s.landmarks[:self.n_src])

    # ------------------------------------------------------------------ one step
    def _sample(self, faces: tuple[Tensor, ...], idx: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor | None]:
        """(warped input, target, target mask, target eyes-and-mouth mask) of the faces ``idx``."""
        o = self.o
        a = aug.draw(len(idx), o.resolution, self.ctx.generator, warp=o.random_warp, flip=o.random_flip,
                     device=self.device)
        picked = [t[idx.to(t.device)].float() / 255.0 for t in faces]
        image = picked[0]
        target_maps = a.apply(torch.cat(picked, 1), warp=False)     # target, mask (and eyes-mouth) alike
        em = target_maps[:, 4:5] if len(picked) > 2 else None
        return a.apply(image, warp=True), target_maps[:, :3], target_maps[:, 3:4], em

    def _side_loss(self, out: Tensor, out_mask: Tensor, target: Tensor, mask: Tensor,
                   em: Tensor | None) -> dict[str, Tensor]:
        """The loss terms of one side (src or dst), each per the batch, weights applied."""
        o = self.o
        weight = soften_mask(mask) if o.masked_loss else None
        t, y = (target * weight, out * weight) if weight is not None else (target, out)
        terms = {"dssim": sum(DSSIM_WEIGHT * dssim(t, y, k).mean() for k in ssim_windows(o.resolution)),
                 "mse": MSE_WEIGHT * (t - y).square().mean()}
        if em is not None:
            terms["eyes_mouth"] = EYES_MOUTH_WEIGHT * ((target - out).abs() * em).mean()
        if o.mask_loss:
            terms["mask"] = MASK_WEIGHT * (out_mask - mask).square().mean()
        return terms

    def step(self, idx: np.ndarray, iteration: int, total: int, lr: float) -> dict[str, float]:
        assert self.net is not None
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        g = self.ctx.generator
        n = len(idx)
        src_idx = torch.randint(self.n_src, (n,), generator=g, device=g.device)
        src_in, src_t, src_m, src_em = self._sample(self.src, src_idx)
        dst_in, dst_t, dst_m, dst_em = self._sample(self.dst, torch.from_numpy(np.asarray(idx)))
        net = self.ddp if self.ddp is not None else self.net
        self.net.train()
        codes = "code" in self.discriminators
        with self.autocast():
            out = net(src_in, dst_in, with_codes=codes)
        src_out, src_mask, dst_out, dst_mask = (t.float() for t in out[:4])
        src_terms = self._side_loss(src_out, src_mask, src_t, src_m, src_em)
        dst_terms = self._side_loss(dst_out, dst_mask, dst_t, dst_m, dst_em)
        adversarial = self._adversarial_terms(out[4:] if codes else (), src_out, src_m)
        src_loss, dst_loss = sum(src_terms.values()), sum(dst_terms.values())
        loss = src_loss + dst_loss + sum(adversarial.values())
        src_loss, dst_loss = src_loss.detach(), dst_loss.detach()
        self.optimise(loss, self.optimizer)
        record = {"loss": loss.item(), "src": float(src_loss), "dst": float(dst_loss)}
        for key in ("dssim", "mse", "eyes_mouth", "mask"):
            if key in src_terms:
                record[key] = float((src_terms[key] + dst_terms[key]).detach())
        record.update({k: float(v.detach()) for k, v in adversarial.items()})
        record.update(self._train_discriminators(out[4:] if codes else (), src_out, src_t, src_m))
        return record

    def _discriminator(self, name: str) -> torch.nn.Module:
        return self.d_ddp.get(name, self.discriminators[name])

    def _adversarial_terms(self, codes: tuple[Tensor, ...], src_out: Tensor, src_m: Tensor) -> dict[str, Tensor]:
        """The autoencoder's adversarial terms (weights applied): dst codes to pass for src ones, src
        reconstructions to pass for real src faces. The discriminators are frozen meanwhile (and run
        unwrapped: no gradient of theirs to share between processes here)."""
        terms: dict[str, Tensor] = {}
        for d in self.discriminators.values():
            adv.frozen(d, True)
        with self.autocast():
            if codes:
                terms["true_face"] = self.o.true_face_power * adv.real_loss(self.discriminators["code"](codes[1]))
            if "patch" in self.discriminators:
                terms["gan"] = self.o.gan_power * adv.real_loss(self.discriminators["patch"](src_out * src_m))
        for d in self.discriminators.values():
            adv.frozen(d, False)
        return terms

    def _train_discriminators(self, codes: tuple[Tensor, ...], src_out: Tensor, src_t: Tensor,
                              src_m: Tensor) -> dict[str, float]:
        """One step of each discriminator on this batch (src real, dst or reconstructed fake); their losses."""
        record = {}
        lr = self.optimizer.param_groups[0]["lr"]
        for name, opt in self.d_optimizers.items():
            for group in opt.param_groups:
                group["lr"] = lr
            d = self._discriminator(name)
            with self.autocast():
                if name == "code":
                    real, fake = d(codes[0].detach()), d(codes[1].detach())
                else:
                    real, fake = d(src_t * src_m), d(src_out.detach() * src_m)
            loss = (adv.real_loss(real) + adv.fake_loss(fake)) / 2
            self.optimise(loss, opt, name)
            record[f"d_{name}"] = float(loss.detach())
        return record

    # ------------------------------------------------------------------ preview
    @torch.no_grad()
    def preview_rows(self, picks: np.ndarray) -> list[np.ndarray]:
        """src | src->src | dst | dst->dst | dst->src, for the picked dst faces and evenly spread src faces."""
        assert self.net is not None
        self.net.eval()
        src_picks = np.linspace(0, self.n_src - 1, len(picks)).round().astype(int)
        src = self.src[0][torch.from_numpy(src_picks).to(self.device)].float() / 255.0
        dst = self.dst[0][torch.from_numpy(np.asarray(picks)).to(self.device)].float() / 255.0
        src_src, _, dst_dst, _ = self.net.reconstruct(src, dst)
        swapped, _ = self.net.swap(dst)
        self.net.train()
        columns = [_u8(t) for t in (src, src_src, dst, dst_dst, swapped)]
        return [np.hstack([col[i] for col in columns]) for i in range(len(picks))]


class DFTrainer(AutoencoderTrainer):
    model_class = DFModel


class LIAETrainer(AutoencoderTrainer):
    model_class = LIAEModel
