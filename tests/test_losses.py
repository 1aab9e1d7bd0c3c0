"""Loss terms of the train stage, on numbers: each test can fail if the formula is wrong."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from train.losses import (
    alpha_at,
    chroma_change_loss,
    content_loss,
    degrade,
    identity_loss,
    light_loss,
    masked_mean,
    resize_mask,
    style_loss,
    tv_loss,
)


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


# ----------------------------------------------------------------------------- helpers


def test_masked_mean_weights_by_mask():
    x = torch.tensor([[[[1.0, 2.0], [3.0, 4.0]]]])
    assert masked_mean(x, None).item() == pytest.approx(2.5)
    m = torch.tensor([[[[1.0, 0.0], [0.5, 0.0]]]])
    assert masked_mean(x, m).item() == pytest.approx((1 + 1.5) / 1.5)
    # a (B,1,H,W) mask broadcasts over channels
    x2 = torch.cat([x, 10 * x], dim=1)
    assert masked_mean(x2, m).item() == pytest.approx((1 + 1.5 + 10 + 15) / 3.0)
    assert masked_mean(x, torch.zeros_like(m)).item() == 0.0


def test_resize_mask_is_area_average():
    m = torch.zeros(1, 1, 4, 4)
    m[..., :2, :3] = 1.0
    r = resize_mask(m, (2, 2))
    assert torch.allclose(r, torch.tensor([[[[1.0, 0.5], [0.0, 0.0]]]]))
    assert resize_mask(m, (4, 4)) is m


# ----------------------------------------------------------------------------- content


def test_content_loss_zero_for_identical_and_hand_computed():
    g = gen(1)
    feats = {"a": torch.rand(2, 3, 4, 4, generator=g), "b": torch.rand(2, 5, 2, 2, generator=g)}
    assert content_loss(feats, {k: v.clone() for k, v in feats.items()}, ["a", "b"]).item() == 0.0

    out = {"a": torch.zeros(1, 2, 2, 2)}
    inp = {"a": torch.zeros(1, 2, 2, 2)}
    out["a"][0, 0, 0, 0] = 2.0          # position (0,0): channel mean of squares = 4/2 = 2
    out["a"][0, 1, 1, 1] = 1.0          # position (1,1): 1/2
    # unmasked: mean over 4 positions of [2, 0, 0, 0.5]
    assert content_loss(out, inp, ["a"]).item() == pytest.approx(2.5 / 4)
    mask = torch.tensor([[[[1.0, 1.0], [0.0, 1.0]]]])
    assert content_loss(out, inp, ["a"], mask).item() == pytest.approx(2.5 / 3)
    # a mask at image resolution is area-resized to the layer: (4,4) -> (2,2), only (0,0) block face
    big = torch.zeros(1, 1, 4, 4)
    big[..., :2, :2] = 1.0
    assert content_loss(out, inp, ["a"], big).item() == pytest.approx(2.0)
    # differences outside the mask do not count at all
    out["a"][0, :, 1, 0] = 100.0
    assert content_loss(out, inp, ["a"], big).item() == pytest.approx(2.0)


def test_content_loss_sums_layers():
    g = gen(2)
    o = {"x": torch.rand(1, 4, 3, 3, generator=g), "y": torch.rand(1, 2, 5, 5, generator=g)}
    i = {"x": torch.rand(1, 4, 3, 3, generator=g), "y": torch.rand(1, 2, 5, 5, generator=g)}
    both = content_loss(o, i, ["x", "y"])
    assert both.item() == pytest.approx(content_loss(o, i, ["x"]).item() + content_loss(o, i, ["y"]).item())
    assert both.item() == pytest.approx(F.mse_loss(o["x"], i["x"]).item() + F.mse_loss(o["y"], i["y"]).item())


# ----------------------------------------------------------------------------- style


def reference_style(out: torch.Tensor, style: torch.Tensor, k: int) -> torch.Tensor:
    """Brute force: unfold k x k patches (zero padded), cosine per position, min over N, mean."""
    b, n, c, h, w = style.shape
    po = F.unfold(out, k, padding=k // 2)                                   # (B, C*k*k, H*W)
    ps = F.unfold(style.reshape(b * n, c, h, w), k, padding=k // 2).reshape(b, n, c * k * k, h * w)
    cos = F.cosine_similarity(po.unsqueeze(1), ps, dim=2, eps=1e-12)        # (B, N, H*W)
    return (1 - cos).amin(dim=1).mean()


@pytest.mark.parametrize("k", [1, 3, 5])
def test_style_loss_matches_brute_force(k):
    g = gen(3)
    out = torch.randn(2, 6, 7, 8, generator=g)
    style = torch.randn(2, 4, 6, 7, 8, generator=g)
    assert style_loss(out, style, k).item() == pytest.approx(reference_style(out, style, k).item(), abs=1e-5)


@pytest.mark.parametrize("k", [1, 3])
def test_style_loss_zero_when_output_equals_one_style_image(k):
    g = gen(4)
    style = torch.rand(2, 16, 8, 9, 9, generator=g)
    out = style[:, 11].clone()           # every position matches image 11; the 15 others are random
    assert style_loss(out, style, k).item() == pytest.approx(0.0, abs=1e-5)
    # the same features at a different scale are still a cosine match
    assert style_loss(3.0 * out, style, k).item() == pytest.approx(0.0, abs=1e-5)
    # but random features are not
    assert style_loss(torch.rand(2, 8, 9, 9, generator=g), style, k).item() > 0.02


@pytest.mark.parametrize("k", [1, 3])
def test_style_loss_lower_when_more_positions_match(k):
    g = gen(5)
    style = torch.randn(1, 16, 8, 10, 10, generator=g)
    noise = torch.randn(1, 8, 10, 10, generator=g)
    losses = []
    for cols in (0, 3, 6, 10):          # output equals style image 0 on the first `cols` columns
        out = noise.clone()
        out[..., :cols] = style[:, 0, :, :, :cols]
        losses.append(style_loss(out, style, k).item())
    assert losses[-1] == pytest.approx(0.0, abs=1e-5)
    assert all(a > b + 1e-3 for a, b in zip(losses, losses[1:])), losses


@pytest.mark.parametrize("k", [1, 3])
def test_style_loss_takes_closest_image_per_position(k):
    g = gen(6)
    b, n, c, h, w = 2, 16, 8, 9, 10
    style = torch.randn(b, n, c, h, w, generator=g)
    out = torch.randn(b, c, h, w, generator=g)
    # left half comes from image 3, right half from image 7; each image also agrees one column
    # past the seam so every 3x3 patch lies wholly inside one image's agreeing region
    half = w // 2
    style[:, 3, :, :, :half + 1] = out[..., :half + 1]
    style[:, 7, :, :, half - 1:] = out[..., half - 1:]
    assert style_loss(out, style, k).item() == pytest.approx(0.0, abs=1e-5)
    # neither image alone explains the output
    assert style_loss(out, style[:, [3]], k).item() > 0.1
    assert style_loss(out, style[:, [7]], k).item() > 0.1


def test_style_loss_patch_size_matters_at_a_seam():
    g = gen(7)
    style = torch.randn(1, 2, 8, 6, 6, generator=g)
    out = torch.cat([style[:, 0, ..., :3], style[:, 1, ..., 3:]], dim=-1)   # no overlap at the seam
    assert style_loss(out, style, 1).item() == pytest.approx(0.0, abs=1e-5)
    assert style_loss(out, style, 3).item() > 0.01      # patches straddling the seam match neither


def test_style_loss_mask_and_gradient():
    g = gen(8)
    style = torch.randn(2, 4, 8, 6, 6, generator=g)
    out = style[:, 0].clone()
    out[..., 3:] = torch.randn(2, 8, 6, 3, generator=g)                       # right half wrong
    mask = torch.zeros(2, 1, 12, 12)
    mask[..., :6] = 1.0                                                        # image-size mask, left half
    assert style_loss(out, style, 1, mask).item() == pytest.approx(0.0, abs=1e-5)
    assert style_loss(out, style, 1).item() > 0.05

    for k in (1, 3):
        x = out.clone().requires_grad_(True)
        style_loss(x, style, k).backward()
        assert torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0
        # gradient descent lowers the loss
        with torch.no_grad():
            before = style_loss(x, style, k).item()
            after = style_loss(x - 0.5 * x.grad / x.grad.norm() * x.norm(), style, k).item()
        assert after < before


def test_style_loss_zero_vectors_stay_finite():
    style = torch.rand(1, 2, 4, 3, 3)
    out = torch.zeros(1, 4, 3, 3, requires_grad=True)                           # dead ReLU output
    loss = style_loss(out, style, 3)
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(out.grad).all()


def test_style_loss_rejects_even_patch_and_bad_shapes():
    with pytest.raises(ValueError):
        style_loss(torch.rand(1, 4, 3, 3), torch.rand(1, 2, 4, 3, 3), k=2)
    with pytest.raises(ValueError):
        style_loss(torch.rand(1, 4, 3, 3), torch.rand(1, 2, 5, 3, 3))


# ----------------------------------------------------------------------------- light


def face_like(h: int = 64, w: int = 64) -> torch.Tensor:
    """A smooth, coloured synthetic image (B=2) with mid-level values."""
    yy, xx = torch.meshgrid(torch.linspace(-1, 1, h), torch.linspace(-1, 1, w), indexing="ij")
    base = 0.55 - 0.2 * (xx ** 2 + yy ** 2)
    img = torch.stack([base + 0.1, base, base - 0.1 + 0.05 * yy])
    return torch.stack([img, img.flip(-1)]).clamp(0, 1)


def test_light_loss_ignores_high_frequency_detail():
    inp = face_like()
    h, w = inp.shape[-2:]
    checker = ((torch.arange(h).view(-1, 1) + torch.arange(w).view(1, -1)) % 2) * 2.0 - 1.0
    detail = (inp + 0.05 * checker).clamp(0, 1)
    relit = inp.clone()
    relit[..., : w // 2] *= 0.6
    assert light_loss(inp, inp).item() == 0.0
    d, r = light_loss(detail, inp).item(), light_loss(relit, inp).item()
    assert d < 1e-7
    assert r > 1e-3
    assert r > 1e4 * max(d, 1e-12)
    # the same with a face mask
    mask = torch.zeros(2, 1, h, w)
    mask[..., 8:56, 12:52] = 1.0
    assert light_loss(detail, inp, mask).item() < 1e-6
    assert light_loss(relit, inp, mask).item() > 1e-3


def test_light_loss_ignores_colour_at_equal_luminance():
    inp = face_like()
    y = 0.299 * inp[:, 0] + 0.587 * inp[:, 1] + 0.114 * inp[:, 2]
    grey = y.unsqueeze(1).expand_as(inp)                 # all colour gone, same luminance
    assert light_loss(grey, inp).item() < 1e-10


def test_light_loss_mask_restricts_to_face():
    inp = face_like()
    h, w = inp.shape[-2:]
    mask = torch.zeros(2, 1, h, w)
    mask[..., 16:48, 16:48] = 1.0
    out = inp.clone()
    out[..., :, :12] = 0.0                                # background strongly changed, near the face
    assert light_loss(out, inp).item() > 1e-3
    assert light_loss(out, inp, mask).item() < 1e-12     # face-only low pass: nothing leaks in
    out2 = inp.clone()
    out2[..., 16:48, 16:32] *= 0.5                        # shading changed inside the face
    assert light_loss(out2, inp, mask).item() > 1e-3


def test_light_loss_gradient_flows():
    inp = face_like()
    out = (inp * 0.8).requires_grad_(True)
    light_loss(out, inp).backward()
    assert out.grad.abs().sum() > 0


# ----------------------------------------------------------------------------- TV


def test_tv_loss():
    const = torch.full((2, 3, 16, 16), 0.4)
    assert tv_loss(const).item() == 0.0
    noise = torch.rand(2, 3, 16, 16, generator=gen(9))
    smooth = torch.linspace(0, 1, 16).view(1, 1, 1, 16).expand(2, 3, 16, 16)
    assert tv_loss(noise).item() > 10 * tv_loss(smooth).item() > 0
    # squared form, hand-computed: a single step of 1 between two columns in a 2x2 image
    step = torch.tensor([[[[0.0, 1.0], [0.0, 1.0]]]])
    assert tv_loss(step).item() == pytest.approx(1.0)    # dx: mean of [1, 1]; dy: mean of [0, 0]


# ----------------------------------------------------------------------------- degrade / identity


def test_degrade_reproducible_shape_range_and_differentiable():
    x = torch.rand(4, 3, 32, 32, generator=gen(10))
    a = degrade(x, gen(123))
    b = degrade(x, gen(123))
    c = degrade(x, gen(124))
    assert a.shape == x.shape and a.dtype == x.dtype
    assert torch.equal(a, b)
    assert (a - c).abs().max() > 1e-3
    assert a.min() >= 0 and a.max() <= 1
    assert (a - x).abs().mean() > 1e-3                    # it actually changes the images
    # different samples of a batch get different parameters
    same = x[:1].expand(4, -1, -1, -1).contiguous()
    d = degrade(same, gen(5))
    assert (d[0] - d[1]).abs().max() > 1e-3
    xg = x.clone().requires_grad_(True)
    degrade(xg, gen(1)).sum().backward()
    assert torch.isfinite(xg.grad).all() and xg.grad.abs().sum() > 0


def test_degrade_strength_zero_is_identity():
    x = torch.rand(2, 3, 20, 24, generator=gen(11))
    assert torch.allclose(degrade(x, gen(0), strength=0.0), x, atol=1e-5)


def test_degrade_keeps_a_face_sized_structure():
    # a smooth blob survives the degradations (low frequencies kept), fine noise does not
    yy, xx = torch.meshgrid(torch.linspace(-1, 1, 64), torch.linspace(-1, 1, 64), indexing="ij")
    blob = (0.3 + 0.4 * torch.exp(-(xx ** 2 + yy ** 2) * 3)).expand(1, 3, 64, 64).contiguous()
    out = degrade(blob, gen(2))
    assert (out - blob).abs().mean() < 0.1


def test_identity_loss():
    a = torch.zeros(2, 128)
    b = torch.zeros(2, 128)
    b[0, 0] = 3.0
    b[0, 1] = 4.0                                       # distance 5
    b[1, 5] = 1.0                                       # distance 1
    assert identity_loss(a, b).item() == pytest.approx(3.0)
    assert identity_loss(b, b).item() == 0.0
    assert identity_loss(a, torch.ones(128)).item() == pytest.approx(128 ** 0.5)   # one target, broadcast
    x = a.clone().requires_grad_(True)
    identity_loss(x, b).backward()
    assert torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0


# ----------------------------------------------------------------------------- weights / schedule


def test_alpha_at_ramp():
    total, amax = 1000, 20.0
    values = [alpha_at(i, total, amax) for i in range(total)]
    assert values[0] == 0.0
    assert alpha_at(250, total, amax) == pytest.approx(10.0)
    assert alpha_at(500, total, amax) == pytest.approx(amax)
    assert all(v == amax for v in values[500:])
    assert all(a <= b for a, b in zip(values, values[1:]))
    assert alpha_at(0, total, amax, ramp=0.0) == amax
    assert alpha_at(5000, total, amax) == amax


def test_chroma_change_toward_the_skin_around_is_free_and_a_fringe_is_not():
    """A dark grey-brown brow on warm skin: painting it over with the skin's colour is a colour change that only
    ``toward_skin`` lets through; a green fringe of the same size counts either way (issue 26's whitish brows)."""
    skin = torch.tensor([0.80, 0.60, 0.50]).view(1, 3, 1, 1)
    inp = skin.expand(1, 3, 64, 64).clone()
    brow = (slice(None), slice(None), slice(28, 32), slice(16, 48))
    inp[brow] = torch.tensor([0.30, 0.27, 0.25]).view(1, 3, 1, 1)
    erased = inp.clone()
    erased[brow] = skin.expand(1, 3, 4, 32) * 0.95                 # the brow painted over with (a shade of) skin
    grey = inp.clone()
    grey[brow] = inp[brow] + (erased[brow] - inp[brow]).mean(dim=1, keepdim=True)   # the same lift, no colour
    fringe = inp.clone()
    fringe[brow] = inp[brow] + torch.tensor([-0.1, 0.2, -0.1]).view(1, 3, 1, 1)
    plain = chroma_change_loss(erased, inp)
    assert plain > 1e-4 and chroma_change_loss(grey, inp) < 1e-9    # the old term: only a grey lift is free
    assert chroma_change_loss(erased, inp, toward_skin=True) < 0.05 * plain
    assert chroma_change_loss(fringe, inp, toward_skin=True) > 0.5 * chroma_change_loss(fringe, inp)
