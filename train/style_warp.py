"""Style features brought into each dst face's own shape before they are compared.

The style loss compares the output's feature at a position with the src faces' features at
the same position (``losses.style_loss``), which assumes the faces line up. They line up in
the eyes (the chips are aligned on them) but not in the rest when the head turns: on the
main pair's frame 35 (the dst turned about 30 degrees, the 16 nearest src faces all frontal)
the loss asked for the src's frontal nose beside the dst's turned one and for the src's
face edge on the dst's cheek, and the network painted both (a second nose, a streak down the
cheek); the same shift puts src brows above the dst's (ghost brows).

Here each src face's feature maps are resampled through a thin-plate spline fitted on the
landmarks (``FIT_POINTS``), from the dst face's points to the src face's, so the position of the dst's
nose reads the src's nose. Positions that land outside the src face (its mask, or off the
map) are marked invalid, and the loss leaves them to the content and light terms instead of
asking for background or hair there.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

#: the spline's smoothing, in normalised units: landmark noise is not followed point for point
TPS_REGULARISATION = 1e-3
#: the resolution at which the spline is evaluated; each layer's grid is resized from it (the
#: map is smooth, so this is exact enough and keeps the cost independent of the layer size)
GRID_SIZE = 32
#: landmarks the spline follows: jaw, brows, nose, eye corners and the lips' outline. The
#: eyelids and the inner lips are left out: how far the eyes and mouth are open is the dst's
#: expression, and following it would squash a src eye into a closed one's line and drag the
#: brows with it.
FIT_POINTS = tuple(range(0, 36)) + (36, 39, 42, 45) + tuple(range(48, 60))
#: a style position counts only where at least this fraction of its footprint is src face
MIN_FACE = 0.5


def _tps_kernel(r2: torch.Tensor) -> torch.Tensor:
    """U(r) = r^2 log r^2 (the thin-plate spline's radial basis), 0 at r = 0."""
    return r2 * torch.log(r2.clamp_min(1e-12))


def tps_grids(dst_points: torch.Tensor, src_points: torch.Tensor, size: int = GRID_SIZE,
              regularisation: float = TPS_REGULARISATION) -> torch.Tensor:
    """Sampling grids (P, size, size, 2) that carry positions of each dst face to its src face.

    ``dst_points``/``src_points``: (P, K, 2) matching landmarks (of the 68, ``FIT_POINTS``
    are used) in normalised map coordinates (-1..1, ``align_corners=False``). Grid cell
    (y, x) holds where the dst map's position (y, x) falls in the src map, for
    ``F.grid_sample``.
    """
    dst, src = dst_points.double(), src_points.double()
    if dst.shape[1] == 68:
        dst, src = dst[:, FIT_POINTS], src[:, FIT_POINTS]
    p, k, _ = dst.shape
    d2 = (dst[:, :, None, :] - dst[:, None, :, :]).pow(2).sum(-1)                   # (P,K,K)
    kernel = _tps_kernel(d2) + regularisation * torch.eye(k, dtype=d2.dtype, device=d2.device)
    ones = torch.ones(p, k, 1, dtype=d2.dtype, device=d2.device)
    affine = torch.cat([ones, dst], dim=2)                                            # (P,K,3)
    system = torch.zeros(p, k + 3, k + 3, dtype=d2.dtype, device=d2.device)
    system[:, :k, :k], system[:, :k, k:], system[:, k:, :k] = kernel, affine, affine.transpose(1, 2)
    rhs = torch.zeros(p, k + 3, 2, dtype=d2.dtype, device=d2.device)
    rhs[:, :k] = src
    coef = torch.linalg.solve(system, rhs)                                            # (P,K+3,2)
    axis = (torch.arange(size, device=d2.device) * 2 + 1) / size - 1
    gy, gx = torch.meshgrid(axis, axis, indexing="ij")
    pos = torch.stack([gx, gy], dim=-1).reshape(1, -1, 2).float()                      # (1,S,2) x,y
    # the kernel at the grid in float32, squared distances as |a|^2 + |b|^2 - 2ab (one matmul)
    d32 = dst.float()
    r2 = (pos.pow(2).sum(-1)[:, :, None] + d32.pow(2).sum(-1)[:, None, :] - 2 * pos @ d32.transpose(1, 2)).clamp_min(0)
    c32 = coef.float()
    out = _tps_kernel(r2) @ c32[:, :k] + c32[:, k:k + 1] + pos @ c32[:, k + 1:]        # (P,S,2)
    return out.reshape(p, size, size, 2).to(dst_points.dtype)


def resize_grids(grids: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """(P,S,S,2) grids -> (P,h,w,2), bilinear (the map is smooth at this scale)."""
    if tuple(grids.shape[1:3]) == tuple(size):
        return grids
    g = F.interpolate(grids.permute(0, 3, 1, 2), size=size, mode="bilinear", align_corners=False)
    return g.permute(0, 2, 3, 1)


def warp_styles(style_feats: torch.Tensor, style_face: torch.Tensor, grids: torch.Tensor
                ) -> tuple[torch.Tensor, torch.Tensor]:
    """Resample (B,N,C,H,W) style features and (B,N,1,H,W) src-face masks through (B*N,S,S,2) grids.

    Returns the warped features and a (B,N,H,W) validity: True where the position lands on
    the src face (at least ``MIN_FACE`` of it) and inside the map.
    """
    b, n, c, h, w = style_feats.shape
    g = resize_grids(grids, (h, w)).to(style_feats.dtype)
    feats = F.grid_sample(style_feats.reshape(b * n, c, h, w), g, mode="bilinear", padding_mode="zeros",
                          align_corners=False)
    face = F.grid_sample(style_face.reshape(b * n, 1, h, w).to(style_feats.dtype), g, mode="bilinear",
                         padding_mode="zeros", align_corners=False)
    inside = (g.abs() <= 1).all(dim=-1)
    valid = (face[:, 0] >= MIN_FACE) & inside
    return feats.reshape(b, n, c, h, w), valid.reshape(b, n, h, w)
