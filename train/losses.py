"""Training losses of the style-transfer face swap (Korshunova et al. 2017), plus our identity term.

    total = content + alpha * style + beta * light + gamma * TV  (+ identity * identity_loss)

All functions take batched torch tensors, run on whatever device the tensors live on, and
are differentiable with respect to the network output. Images are (B,3,H,W) RGB in [0,1];
masks are (B,1,H,W) in [0,1] (1 = face) and may be None (then every position counts).

* content: masked mean squared difference of feature maps of output and input.
* style: per position, cosine distance between the output's k x k feature patch and the
  patch at the same position in each of the N_best style images; the closest one counts.
* light: the paper's lighting network (trained on Extended Yale B) is not available, so
  we penalise changes of the low-frequency luminance inside the face instead: shading
  (which side is lit) must stay, identity detail (high frequencies, colour) may change.
* TV: mean squared difference of neighbouring pixels.
* identity (ours): descriptor distance to the src identity, measured on randomly degraded
  copies of the output (see :func:`degrade`) so the network has to change how the face
  looks instead of adding invisible perturbations that fool the face network.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

#: Added under square roots of squared norms: keeps gradients finite at zero vectors
#: (dead ReLU positions) while being far below float32 resolution for real features.
_EPS = 1e-12
#: Style loss norm softening, relative to the style features' mean squared patch norm.
_STYLE_EPS_REL = 1e-6


def alpha_at(iteration: int, total: int, alpha_max: float, ramp: float = 0.5) -> float:
    """Style weight at ``iteration`` (0-based) of ``total``: "alpha raised from 0 to alpha_max".

    Linear from 0 at iteration 0 to ``alpha_max`` at iteration ``ramp * total``, constant
    afterwards. Starting at 0 lets the network first learn to reproduce its input (content)
    and then move towards the style, which the paper found gives cleaner results.
    ``ramp <= 0`` or ``total <= 0`` means no ramp (always ``alpha_max``).
    """
    ramp_iters = ramp * total
    if ramp_iters <= 0:
        return float(alpha_max)
    return float(alpha_max) * min(1.0, max(0.0, iteration / ramp_iters))


# ----------------------------------------------------------------------------- helpers


def masked_mean(x: Tensor, mask: Tensor | None) -> Tensor:
    """Mean of ``x`` (B,C,H,W) over all positions, weighted by ``mask`` (broadcastable, e.g. (B,1,H,W)).

    Weighted, not summed, so a loss does not depend on how large the face is. Plain mean when
    ``mask`` is None; an all-zero mask gives 0 (not NaN).
    """
    if mask is None:
        return x.mean()
    w = mask.to(x.dtype).expand_as(x)
    return (x * w).sum() / w.sum().clamp_min(1e-8)


def resize_mask(mask: Tensor, size: tuple[int, int]) -> Tensor:
    """(B,1,H,W) mask in [0,1] -> (B,1,h,w) by area averaging, to weight a feature map.

    Area averaging gives each feature position the fraction of its footprint that is face,
    so border features count partially instead of all-or-nothing.
    """
    size = (int(size[0]), int(size[1]))
    if tuple(mask.shape[-2:]) == size:
        return mask
    return F.interpolate(mask, size=size, mode="area")


def _gaussian_kernel(sigma: Tensor, radius: int) -> Tensor:
    """Normalised 1D Gaussian taps (S, 2*radius+1) for sigmas (S,); sigma ~ 0 gives a delta."""
    x = torch.arange(-radius, radius + 1, device=sigma.device, dtype=sigma.dtype)
    s = sigma.clamp_min(1e-3).unsqueeze(-1)
    k = torch.exp(-0.5 * (x / s) ** 2)
    return k / k.sum(dim=-1, keepdim=True)


def _separable_blur(x: Tensor, taps: Tensor, mode: str = "reflect") -> Tensor:
    """Blur each channel of ``x`` (B,C,H,W) with its own 1D kernel along rows then columns.

    ``taps`` is (K,) for all channels or (B*C, K) for one kernel per channel plane.
    """
    b, c, h, w = x.shape
    k = taps.shape[-1]
    r = k // 2
    taps = taps.to(x.dtype).reshape(-1, k)
    if taps.shape[0] == 1:
        taps = taps.expand(b * c, k)
    planes = x.reshape(1, b * c, h, w)
    ry, rx = min(r, h - 1), min(r, w - 1)          # reflect padding must be smaller than the side
    if mode == "reflect" and (ry < r or rx < r):
        mode = "replicate"
    planes = F.pad(planes, (r, r, 0, 0), mode=mode)
    planes = F.conv2d(planes, taps.reshape(b * c, 1, 1, k), groups=b * c)
    planes = F.pad(planes, (0, 0, r, r), mode=mode)
    planes = F.conv2d(planes, taps.reshape(b * c, 1, k, 1), groups=b * c)
    return planes.reshape(b, c, h, w)


# ----------------------------------------------------------------------------- paper terms


def content_loss(out_feats: dict[str, Tensor], in_feats: dict[str, Tensor], layers: list[str],
                 mask: Tensor | None = None) -> Tensor:
    """Sum over ``layers`` of the masked mean (over positions) of the squared difference
    averaged over channels: keeps the dst face's layout (pose, expression, gaze).
    """
    total = out_feats[layers[0]].new_zeros(())
    for name in layers:
        o, i = out_feats[name], in_feats[name]
        d = (o - i).pow(2).mean(dim=1, keepdim=True)
        m = None if mask is None else resize_mask(mask, tuple(o.shape[-2:]))
        total = total + masked_mean(d, m)
    return total


def _box_sum(x: Tensor, k: int) -> Tensor:
    """Sum over each k x k neighbourhood (zero padding at the borders), same size out."""
    if k == 1:
        return x
    lead = x.shape[:-2]
    flat = x.reshape(-1, 1, *x.shape[-2:])
    s = F.avg_pool2d(flat, k, stride=1, padding=k // 2, count_include_pad=True) * (k * k)
    return s.reshape(*lead, *s.shape[-2:])


def style_loss(out_feat: Tensor, style_feats: Tensor, k: int = 1, mask: Tensor | None = None,
               valid: Tensor | None = None) -> Tensor:
    """Patch-based style loss at one layer: mean over positions of min over the N style images
    of the cosine distance (1 - cos) between the output's k x k patch and the style image's
    patch at the same position.

    out_feat (B,C,H,W); style_feats (B,N,C,H,W); odd k >= 1, zero padding at the borders.
    Comparing only the same position (faces are aligned) is what makes the paper's loss cheap.
    ``valid`` (B,N,H,W), optional: False where a style image has nothing to offer (not its face,
    see ``train/style_warp.py``); such candidates are never the closest, and a position where
    none is valid adds a constant (no push either way).

    Memory: a k x k patch's dot product and squared norm are sums over the neighbourhood of
    per-position channel dot products and squared norms, so for any k we only reduce over
    channels once ((B,N,H,W) maps) and box-sum those, instead of unfolding C*k*k vectors.
    """
    if k < 1 or k % 2 == 0:
        raise ValueError(f"style patch size k must be odd and >= 1, got {k}")
    if style_feats.dim() != 5 or style_feats.shape[0] != out_feat.shape[0] or \
            style_feats.shape[2:] != out_feat.shape[1:]:
        raise ValueError(f"style_feats {tuple(style_feats.shape)} does not match out_feat "
                         f"{tuple(out_feat.shape)} as (B,N,C,H,W)")
    style_feats = style_feats.to(out_feat.dtype)
    dot = torch.einsum("bchw,bnchw->bnhw", out_feat, style_feats)      # (B,N,H,W)
    o_sq = out_feat.pow(2).sum(dim=1, keepdim=True)                      # (B,1,H,W)
    s_sq = style_feats.pow(2).sum(dim=2)                                 # (B,N,H,W)
    dot, o_sq, s_sq = _box_sum(dot, k), _box_sum(o_sq, k), _box_sum(s_sq, k)
    # Softened norms: eps is a tiny fraction of the style patches' mean squared norm, so the
    # loss is scale-free, a perfect match still scores ~1e-6, and an all-zero output patch
    # (dead ReLUs) gets a bounded gradient instead of 1/0.
    eps = _STYLE_EPS_REL * s_sq.detach().mean() + _EPS
    cos = dot / (torch.sqrt(o_sq + eps) * torch.sqrt(s_sq + eps))
    far = 1.0 - cos
    if valid is not None:
        if k > 1:       # a patch counts only where all of it is valid
            valid = -F.max_pool2d(-valid.float(), k, stride=1, padding=k // 2) > 0.5
        far = torch.where(valid, far, torch.full_like(far, 2.0))
    dist = far.amin(dim=1, keepdim=True)                                 # (B,1,H,W), closest image
    m = None if mask is None else resize_mask(mask, tuple(out_feat.shape[-2:]))
    return masked_mean(dist, m)


def luminance(images: Tensor) -> Tensor:
    """(B,3,H,W) RGB -> (B,1,H,W) Rec.601 luma Y = 0.299 R + 0.587 G + 0.114 B."""
    w = images.new_tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)
    return (images * w).sum(dim=1, keepdim=True)


def low_pass_luminance(images: Tensor, mask: Tensor | None = None, sigma_frac: float = 1 / 16) -> Tensor:
    """Gaussian low-pass of the luminance, sigma = ``sigma_frac`` * image height.

    With a mask this is a normalised convolution, blur(Y * m) / blur(m): the face's shading
    estimated from face pixels only, so background (hair, wall) changes do not leak in.
    """
    return low_pass(luminance(images), mask, sigma_frac)


def low_pass(images: Tensor, mask: Tensor | None = None, sigma_frac: float = 1 / 16) -> Tensor:
    """Per-channel Gaussian low-pass (normalised by the mask like ``low_pass_luminance``)."""
    sigma = max(float(sigma_frac) * images.shape[-2], 1e-3)
    radius = max(1, int(math.ceil(3.0 * sigma)))
    taps = _gaussian_kernel(torch.tensor([sigma], dtype=images.dtype, device=images.device), radius)
    if mask is None:
        return _separable_blur(images, taps)
    m = mask.to(images.dtype).expand_as(images)
    return _separable_blur(images * m, taps) / _separable_blur(m, taps).clamp_min(1e-6)


def colour_loss(out: Tensor, inp: Tensor, mask: Tensor | None = None, sigma_frac: float = 1 / 16) -> Tensor:
    """Masked mean squared difference of the low-frequency colour (R, G, B) of out and inp.

    The dst face's skin tone and its colour cast from the scene are part of the shot, like
    its shading; the identity network is nearly blind to hue, so without this term the
    identity loss is free to tint faces (seen: yellow-green skin within 100 iterations).
    Identity must come from shapes and detail, which a face-sized blur removes.
    """
    lo_out = low_pass(out, mask, sigma_frac)
    lo_in = low_pass(inp, mask, sigma_frac)
    return masked_mean(((lo_out - lo_in) ** 2).mean(dim=1, keepdim=True), mask)


#: How far past the input's low-pass colour a change toward it is free (``chroma_change_loss``'s ``toward_skin``).
SKIN_REACH = 2.0


def _chroma(x: Tensor) -> Tensor:
    """The colour (non-grey) part of RGB values or changes: each channel minus their mean."""
    return x - x.mean(dim=1, keepdim=True)


def chroma_change_loss(out: Tensor, inp: Tensor, mask: Tensor | None = None, toward_skin: bool = False,
                       sigma_frac: float = 1 / 16) -> Tensor:
    """Masked mean square of the colour (non-grey) part of the change ``out - inp``.

    Identity and the style features live in the structure of the face (brows, eyes, lips,
    nose), which a grey change can draw; coloured fringes are what a face network can be
    fooled with. Seen without it: rainbow edges around the eyes after 100 iterations.

    ``toward_skin``: the part of the colour change that takes a pixel toward the face's own
    colour around it (the low-pass of the input, as ``colour_loss`` reads it), up to
    ``SKIN_REACH`` times the way there, is free (the low-pass over a brow is partly the brow's
    own colour, so the skin beside it lies beyond it). Erasing a feature the src person does
    not have (a thicker brow, a darker lid) means painting skin over it, and skin is warmer
    than a brow: with every colour change penalised, the network could only lighten such a
    brow with grey, the whitish brow rims of the reverse pair (issue 26). A fringe's colour
    points anywhere else and still counts.
    """
    chroma = _chroma(out - inp)
    if toward_skin:
        need = _chroma(low_pass(inp, mask, sigma_frac).detach() - inp)
        reach = (chroma * need).sum(dim=1, keepdim=True) / (need.pow(2).sum(dim=1, keepdim=True) + 1e-6)
        chroma = chroma - reach.clamp(0.0, SKIN_REACH) * need
    return masked_mean((chroma ** 2).mean(dim=1, keepdim=True), mask)


def light_loss(out: Tensor, inp: Tensor, mask: Tensor | None = None, sigma_frac: float = 1 / 16) -> Tensor:
    """Masked mean squared difference of the low-frequency luminance of ``out`` and ``inp``.

    Substitute for the paper's lighting network: a Gaussian with sigma = H/16 (8 px on a
    128 face) removes eyes, lips, skin texture and colour detail but keeps the face-sized
    shading gradient, so relighting is penalised while identity detail may change.
    """
    lo_out = low_pass_luminance(out, mask, sigma_frac)
    lo_in = low_pass_luminance(inp, mask, sigma_frac)
    return masked_mean((lo_out - lo_in).pow(2), mask)


def tv_loss(out: Tensor) -> Tensor:
    """Total variation, squared form: mean of squared horizontal plus mean of squared vertical
    differences of neighbouring pixels. Smooth at 0 and hits isolated noisy pixels hardest.
    """
    dx = out[..., :, 1:] - out[..., :, :-1]
    dy = out[..., 1:, :] - out[..., :-1, :]
    return dx.pow(2).mean() + dy.pow(2).mean()


# ----------------------------------------------------------------------------- identity (ours)

#: Degradation ranges at strength 1 (scaled linearly by ``strength``).
DEGRADE_MIN_SCALE = 0.5       # down-up rescale factor drawn from [1 - 0.5 s, 1]
DEGRADE_MAX_SIGMA = 1.0       # Gaussian blur sigma in pixels, [0, 1.0 s]
DEGRADE_MAX_SHIFT = 2.0       # translation in pixels per axis, [-2 s, 2 s]
DEGRADE_BRIGHTNESS = 0.1      # multiply by [1 - 0.1 s, 1 + 0.1 s]
DEGRADE_CONTRAST = 0.1        # around the mean luminance, [1 - 0.1 s, 1 + 0.1 s]
DEGRADE_SATURATION = 0.15     # around the per-pixel luminance, [1 - 0.15 s, 1 + 0.15 s]


def degrade(images: Tensor, generator: torch.Generator, strength: float = 1.0) -> Tensor:
    """Randomly degraded copies of ``images`` (B,3,H,W) in [0,1]: same shape, in [0,1].

    Per sample, in this order: down-then-up rescale (area down, bilinear up), Gaussian blur,
    sub-/few-pixel shift (bilinear resampling, border padding), brightness / contrast /
    saturation jitter. Every step is differentiable so the identity loss reaches the output,
    and the descriptor only drops if the change survives the degradations, i.e. is visible.
    All random numbers come from ``generator`` (drawn on its device, 7 per sample, in one
    call) so a seeded trainer is reproducible; ``strength`` 0 is the identity.
    """
    b, c, h, w = images.shape
    s = float(max(0.0, strength))
    u = torch.rand(b, 7, generator=generator, device=generator.device).to(images.device, images.dtype)
    x = images

    # 1. Rescale down then back up (loses fine detail like a lower-resolution camera).
    lo = max(0.25, 1.0 - DEGRADE_MIN_SCALE * s)
    scales = (lo + (1.0 - lo) * u[:, 0]).tolist()
    rows = []
    for i, f in enumerate(scales):
        xi = x[i:i + 1]
        sh, sw = max(1, round(h * f)), max(1, round(w * f))
        if (sh, sw) != (h, w):
            xi = F.interpolate(xi, size=(sh, sw), mode="area")
            xi = F.interpolate(xi, size=(h, w), mode="bilinear", align_corners=False)
        rows.append(xi)
    x = torch.cat(rows, dim=0)

    # 2. Gaussian blur, one sigma per sample (grouped separable convolution).
    max_sigma = DEGRADE_MAX_SIGMA * s
    if max_sigma > 0:
        radius = max(1, int(math.ceil(3.0 * max_sigma)))
        taps = _gaussian_kernel(max_sigma * u[:, 1], radius)                  # (B, K)
        x = _separable_blur(x, taps.repeat_interleave(c, dim=0))

    # 3. Translation by (tx, ty) pixels with bilinear sampling.
    shift = DEGRADE_MAX_SHIFT * s * (2.0 * u[:, 2:4] - 1.0)                   # (B, 2) pixels
    theta = torch.zeros(b, 2, 3, device=x.device, dtype=x.dtype)
    theta[:, 0, 0] = 1.0
    theta[:, 1, 1] = 1.0
    theta[:, 0, 2] = -2.0 * shift[:, 0] / w                                   # content moves by +shift
    theta[:, 1, 2] = -2.0 * shift[:, 1] / h
    grid = F.affine_grid(theta, [b, c, h, w], align_corners=False)
    x = F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)

    # 4. Colour jitter: brightness, contrast (around mean luma), saturation (around pixel luma).
    bright = 1.0 + DEGRADE_BRIGHTNESS * s * (2.0 * u[:, 4] - 1.0)
    contrast = 1.0 + DEGRADE_CONTRAST * s * (2.0 * u[:, 5] - 1.0)
    sat = 1.0 + DEGRADE_SATURATION * s * (2.0 * u[:, 6] - 1.0)
    x = x * bright.view(b, 1, 1, 1)
    mean_y = luminance(x).mean(dim=(2, 3), keepdim=True)
    x = (x - mean_y) * contrast.view(b, 1, 1, 1) + mean_y
    y = luminance(x)
    x = (x - y) * sat.view(b, 1, 1, 1) + y
    return x.clamp(0.0, 1.0)


def identity_loss(out_desc: Tensor, target_desc: Tensor) -> Tensor:
    """Mean Euclidean distance between face descriptors (B,128) and the src identity's
    descriptor(s) ((B,128) or (128,), broadcast): dlib treats distance < 0.6 as same person.
    """
    return torch.linalg.vector_norm(out_desc - target_desc.to(out_desc.dtype), dim=-1).mean()
