"""DeepFaceLab's two optional adversarial terms for the autoencoders, off by default.

* **True face** (``--true-face-power``, DF only): a code discriminator learns to tell the
  codes of src faces from the codes of dst faces; the autoencoder is pushed to make the
  dst faces' codes pass for src ones. The src decoder then paints a dst code more like
  the src person (DeepFaceLab's ``true_face_power``; it, too, offers it for DF only: in
  LIAE the swap's code is not the dst face's training code).
* **GAN** (``--gan-power``): a patch discriminator rates, in overlapping patches, the src
  reconstructions against the real src faces, both inside the workspace mask, and the
  autoencoder is pushed to paint patches it cannot tell apart: sharper skin texture than
  DSSIM and MSE alone give, at the risk of artefacts (DeepFaceLab's ``gan_power``, usually
  turned on late in training).

Both use the non-saturating logistic loss; each discriminator has its own Adam at the
trainer's learning rate and is checkpointed with the model, so resume stays exact.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class CodeDiscriminator(nn.Module):
    """(N, C, G, G) code grid -> (N,) logit "this is a src face's code"."""

    def __init__(self, channels: int, width: int = 256) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(channels, width, 3, padding=1), nn.LeakyReLU(0.1),
                                  nn.Conv2d(width, width, 3, stride=2, padding=1), nn.LeakyReLU(0.1))
        self.head = nn.Linear(width, 1)

    def forward(self, code: Tensor) -> Tensor:
        return self.head(self.body(code).mean((2, 3)))[:, 0]


class PatchDiscriminator(nn.Module):
    """(N, 3, R, R) face -> (N, 1, R/8, R/8) logits, each judging an overlapping patch of about R/4."""

    def __init__(self, width: int = 32) -> None:
        super().__init__()
        w = width
        self.body = nn.Sequential(nn.Conv2d(3, w, 4, stride=2, padding=1), nn.LeakyReLU(0.2),
                                  nn.Conv2d(w, w * 2, 4, stride=2, padding=1), nn.LeakyReLU(0.2),
                                  nn.Conv2d(w * 2, w * 4, 4, stride=2, padding=1), nn.LeakyReLU(0.2),
                                  nn.Conv2d(w * 4, 1, 3, padding=1))

    def forward(self, x: Tensor) -> Tensor:
        return self.body(x)


def real_loss(logits: Tensor) -> Tensor:
    """Logistic loss of calling ``logits`` real (the generator's term, and the discriminator's on real data)."""
    return F.binary_cross_entropy_with_logits(logits.float(), torch.ones_like(logits, dtype=torch.float32))


def fake_loss(logits: Tensor) -> Tensor:
    return F.binary_cross_entropy_with_logits(logits.float(), torch.zeros_like(logits, dtype=torch.float32))


def frozen(module: nn.Module, on: bool) -> None:
    """Stop (or resume) gradients into a discriminator while the autoencoder's loss goes through it."""
    for p in module.parameters():
        p.requires_grad_(not on)
