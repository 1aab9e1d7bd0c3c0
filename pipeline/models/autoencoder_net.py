"""DeepFaceLab's DF and LIAE autoencoders (Perov et al.), in our own PyTorch definition.

Both learn two identities at once from one shared encoder: the swap is "encode the dst
face, decode it as src". Why two layouts:

* **DF**: encoder -> inter (the bottleneck) -> a decoder per identity. The src decoder
  only ever sees codes of src faces in training, so it paints the src identity strongly;
  the dst face's pose and expression must pass through the shared code.
* **LIAE**: encoder -> inter_AB (fed src and dst) and inter_B (dst only) -> one decoder.
  A src face is coded as [AB(src), AB(src)], a dst face as [B(dst), AB(dst)], and the
  swap as [AB(dst), AB(dst)]: the dst face coded as if it were src. The shared decoder
  keeps the dst's lighting and colour better; the identity is usually weaker than DF's.

The blocks follow DeepFaceLab's ``DeepFakeArchi``: stride-2 5x5 convolutions down (four,
so the side must be a multiple of 16), a dense bottleneck of ``ae_dims`` that is spread
back to a grid of side/16 and upscaled once, and decoders of three pixel-shuffle upscales
with residual blocks, ending in a sigmoid RGB face and, from a thinner branch, a sigmoid
1-channel mask. Widths are DeepFaceLab's ``ae_dims``, ``e_dims``, ``d_dims`` and
``d_mask_dims``.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

#: The encoder halves the side this many times; the bottleneck grid is side / 2**DOWNSCALES.
DOWNSCALES = 4


class _Down(nn.Sequential):
    """Stride-2 5x5 convolution and leaky ReLU: halves the side."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__(nn.Conv2d(cin, cout, 5, stride=2, padding=2), nn.LeakyReLU(0.1))


class _Up(nn.Sequential):
    """3x3 convolution to 4x the channels, leaky ReLU, pixel shuffle: doubles the side."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__(nn.Conv2d(cin, cout * 4, 3, padding=1), nn.LeakyReLU(0.1), nn.PixelShuffle(2))


class _Residual(nn.Module):
    def __init__(self, ch: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(ch, ch, 3, padding=1)
        self.conv2 = nn.Conv2d(ch, ch, 3, padding=1)

    def forward(self, x: Tensor) -> Tensor:
        y = F.leaky_relu(self.conv1(x), 0.2)
        return F.leaky_relu(x + self.conv2(y), 0.2)


class Encoder(nn.Module):
    """(N, 3, R, R) -> (N, 8 e_dims * (R/16)^2): four downscales of e, 2e, 4e, 8e channels, flattened."""

    def __init__(self, e_dims: int) -> None:
        super().__init__()
        chans = [3] + [e_dims * min(2 ** i, 8) for i in range(DOWNSCALES)]
        self.downs = nn.Sequential(*(_Down(a, b) for a, b in zip(chans[:-1], chans[1:])))
        self.out_ch = chans[-1]

    def forward(self, x: Tensor) -> Tensor:
        return self.downs(x).flatten(1)


class Inter(nn.Module):
    """The bottleneck: dense to ``ae_dims``, dense back up to a (R/16)^2 grid of ``out_ch``, one upscale."""

    def __init__(self, in_features: int, ae_dims: int, out_ch: int, grid: int) -> None:
        super().__init__()
        self.grid, self.out_ch = grid, out_ch
        self.dense1 = nn.Linear(in_features, ae_dims)
        self.dense2 = nn.Linear(ae_dims, grid * grid * out_ch)
        self.up = _Up(out_ch, out_ch)

    def forward(self, x: Tensor) -> Tensor:
        x = self.dense2(self.dense1(x))
        return self.up(x.view(-1, self.out_ch, self.grid, self.grid))


class Decoder(nn.Module):
    """Code grid (R/8) -> face (N, 3, R, R) and mask (N, 1, R, R), both sigmoid."""

    def __init__(self, in_ch: int, d_dims: int, d_mask_dims: int) -> None:
        super().__init__()
        d, m = d_dims, d_mask_dims
        self.face = nn.Sequential(_Up(in_ch, d * 8), _Residual(d * 8), _Up(d * 8, d * 4), _Residual(d * 4),
                                  _Up(d * 4, d * 2), _Residual(d * 2), nn.Conv2d(d * 2, 3, 1))
        self.mask = nn.Sequential(_Up(in_ch, m * 8), _Up(m * 8, m * 4), _Up(m * 4, m * 2), nn.Conv2d(m * 2, 1, 1))

    def forward(self, z: Tensor) -> tuple[Tensor, Tensor]:
        return torch.sigmoid(self.face(z)), torch.sigmoid(self.mask(z))


def _check(resolution: int, widths: tuple[int, ...]) -> None:
    if resolution % 2 ** DOWNSCALES or resolution < 2 ** DOWNSCALES:
        raise ValueError(f"resolution {resolution} is not a multiple of {2 ** DOWNSCALES}")
    if any(w < 1 for w in widths):
        raise ValueError(f"widths must be positive, not {widths}")


class AutoencoderNet(nn.Module):
    """What both layouts give the trainer and convert (faces in [0, 1], (N, 3, R, R))."""

    kind = ""

    def __init__(self, resolution: int, ae_dims: int, e_dims: int, d_dims: int, d_mask_dims: int) -> None:
        super().__init__()
        _check(resolution, (ae_dims, e_dims, d_dims, d_mask_dims))
        self.resolution, self.ae_dims, self.e_dims = resolution, ae_dims, e_dims
        self.d_dims, self.d_mask_dims = d_dims, d_mask_dims
        self.grid = resolution // 2 ** DOWNSCALES
        self.encoder = Encoder(e_dims)
        self.code_features = self.encoder.out_ch * self.grid ** 2

    def reconstruct(self, src: Tensor, dst: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """(src->src face, its mask, dst->dst face, its mask): what training compares with the targets."""
        raise NotImplementedError

    def swap(self, dst: Tensor) -> tuple[Tensor, Tensor]:
        """dst faces -> (the dst->src face, its mask)."""
        raise NotImplementedError

    def swap_and_dst_mask(self, dst: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """(dst->src face, its mask, the dst side's mask of the input face), the shared part run once: what
        DeepFaceLive's merger multiplies (its face mask and its celeb mask)."""
        raise NotImplementedError

    def reconstruct_with_codes(self, src: Tensor, dst: Tensor) -> tuple[Tensor, ...]:
        """``reconstruct``'s four outputs, then the codes the decoder got for src and for dst (the true-face
        discriminator's input)."""
        raise NotImplementedError

    def forward(self, src: Tensor, dst: Tensor, with_codes: bool = False) -> tuple[Tensor, ...]:
        """``reconstruct`` (or ``reconstruct_with_codes``): training goes through ``forward`` so
        DistributedDataParallel sees it."""
        return self.reconstruct_with_codes(src, dst) if with_codes else self.reconstruct(src, dst)


class DFNet(AutoencoderNet):
    """One encoder, one inter, a src decoder and a dst decoder."""

    kind = "df"

    def __init__(self, resolution: int, ae_dims: int, e_dims: int, d_dims: int, d_mask_dims: int) -> None:
        super().__init__(resolution, ae_dims, e_dims, d_dims, d_mask_dims)
        self.inter = Inter(self.code_features, ae_dims, ae_dims, self.grid)
        self.decoder_src = Decoder(ae_dims, d_dims, d_mask_dims)
        self.decoder_dst = Decoder(ae_dims, d_dims, d_mask_dims)

    def reconstruct(self, src: Tensor, dst: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        return self.reconstruct_with_codes(src, dst)[:4]         # type: ignore[return-value]

    def reconstruct_with_codes(self, src: Tensor, dst: Tensor) -> tuple[Tensor, ...]:
        code = self.inter(self.encoder(torch.cat([src, dst])))      # one pass through the shared part
        src_code, dst_code = code[:len(src)], code[len(src):]
        return (*self.decoder_src(src_code), *self.decoder_dst(dst_code), src_code, dst_code)

    def swap(self, dst: Tensor) -> tuple[Tensor, Tensor]:
        return self.decoder_src(self.inter(self.encoder(dst)))

    def swap_and_dst_mask(self, dst: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        code = self.inter(self.encoder(dst))
        return (*self.decoder_src(code), torch.sigmoid(self.decoder_dst.mask(code)))


class LIAENet(AutoencoderNet):
    """One encoder, inter_AB (src and dst) and inter_B (dst only), one decoder of their concatenation."""

    kind = "liae"

    def __init__(self, resolution: int, ae_dims: int, e_dims: int, d_dims: int, d_mask_dims: int) -> None:
        super().__init__(resolution, ae_dims, e_dims, d_dims, d_mask_dims)
        self.inter_ab = Inter(self.code_features, ae_dims, ae_dims * 2, self.grid)
        self.inter_b = Inter(self.code_features, ae_dims, ae_dims * 2, self.grid)
        self.decoder = Decoder(ae_dims * 4, d_dims, d_mask_dims)

    def reconstruct(self, src: Tensor, dst: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        feats = self.encoder(torch.cat([src, dst]))
        ab = self.inter_ab(feats)
        src_ab, dst_ab = ab[:len(src)], ab[len(src):]
        dst_b = self.inter_b(feats[len(src):])
        faces, masks = self.decoder(torch.cat([torch.cat([src_ab, src_ab], 1), torch.cat([dst_b, dst_ab], 1)]))
        n = len(src)
        return faces[:n], masks[:n], faces[n:], masks[n:]

    def swap(self, dst: Tensor) -> tuple[Tensor, Tensor]:
        ab = self.inter_ab(self.encoder(dst))
        return self.decoder(torch.cat([ab, ab], 1))

    def swap_and_dst_mask(self, dst: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        feats = self.encoder(dst)
        ab, b = self.inter_ab(feats), self.inter_b(feats)
        return (*self.decoder(torch.cat([ab, ab], 1)), torch.sigmoid(self.decoder.mask(torch.cat([b, ab], 1))))


def build(kind: str, resolution: int, ae_dims: int, e_dims: int, d_dims: int, d_mask_dims: int) -> AutoencoderNet:
    """The ``kind`` ("df" or "liae") network with these widths."""
    cls = {"df": DFNet, "liae": LIAENet}[kind]
    return cls(resolution, ae_dims, e_dims, d_dims, d_mask_dims)
