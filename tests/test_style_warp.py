"""The style loss's warp of src faces into each dst face's shape (train/style_warp.py), on numbers
and on the main pair's real faces: each test fails if the spline, the resampling or the validity
is wrong."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from train import style_warp
from train.losses import style_loss


def _cells(size: int) -> torch.Tensor:
    axis = (torch.arange(size, dtype=torch.float64) * 2 + 1) / size - 1
    gy, gx = torch.meshgrid(axis, axis, indexing="ij")
    return torch.stack([gx, gy], dim=-1)


def _points(seed: int, k: int = 68) -> torch.Tensor:
    return (torch.rand(1, k, 2, generator=torch.Generator().manual_seed(seed), dtype=torch.float64) * 1.4 - 0.7)


def test_same_points_give_the_identity_grid():
    p = _points(0)
    grid = style_warp.tps_grids(p, p, size=16)
    assert torch.allclose(grid[0], _cells(16), atol=1e-6)


def test_an_affine_motion_is_reproduced_everywhere():
    """A thin-plate spline holds an affine map exactly: every cell, not only the landmarks."""
    dst = _points(1)
    a = torch.tensor([[1.1, 0.2], [-0.15, 0.9]], dtype=torch.float64)
    t = torch.tensor([0.05, -0.1], dtype=torch.float64)
    src = dst @ a.T + t
    grid = style_warp.tps_grids(dst, src, size=12)[0]
    assert torch.allclose(grid, _cells(12) @ a.T + t, atol=1e-5)


def test_a_bent_motion_moves_the_landmarks_where_they_belong():
    dst = _points(2)
    src = dst + 0.08 * torch.sin(3 * dst[..., [1, 0]])          # not affine
    grid = style_warp.tps_grids(dst, src, size=64, regularisation=0.0)
    # read the grid at the landmarks (bilinear): they must land on their src points
    at = F.grid_sample(grid.permute(0, 3, 1, 2).float(), dst[:, :, None, :].float(), align_corners=False)
    got = at[0, :, :, 0].T.double()
    fit = torch.tensor(style_warp.FIT_POINTS)
    assert (got[fit] - src[0, fit]).norm(dim=1).max() < 0.02
    # and a plain affine fit could not do that
    assert (grid[0] - _cells(64)).abs().max() > 0.05


def test_warp_moves_features_and_marks_what_is_not_face():
    b, n, c, h, w = 1, 2, 3, 16, 16
    feats = torch.zeros(b, n, c, h, w)
    feats[:, :, :, 4:8, 4:8] = 1.0                                    # a blob in the top left
    face = torch.ones(b, n, 1, h, w)
    face[:, 1, :, :, 8:] = 0.0                                         # style 1: the right half is not face
    shift = torch.zeros(b * n, 8, 8, 2)
    shift[...] = _cells(8).float()
    grids = shift - torch.tensor([0.5, 0.5])                           # dst cell reads src 4 px up-left
    warped, valid = style_warp.warp_styles(feats, face, grids)
    assert warped.shape == feats.shape and valid.shape == (b, n, h, w)
    assert warped[0, 0, 0, 8:12, 8:12].mean() > 0.9 and warped[0, 0, 0, 4:8, 4:8].mean() < 0.1
    # reading from off the map is invalid; so is reading style 1's non-face half
    assert not valid[0, 0, :2, :2].any() and valid[0, 0, 8:, 8:].all()
    assert not valid[0, 1, 8:, 14:].any() and valid[0, 1, 8:, 6:10].all()


@pytest.mark.parametrize("k", [1, 3])
def test_an_invalid_style_is_never_the_closest(k):
    g = torch.Generator().manual_seed(3)
    style = torch.randn(2, 4, 8, 9, 9, generator=g)
    out = style[:, 2].clone()                                          # matches style 2 everywhere
    assert style_loss(out, style, k).item() == pytest.approx(0.0, abs=1e-5)
    valid = torch.ones(2, 4, 9, 9, dtype=torch.bool)
    valid[:, 2] = False
    without = style_loss(out, style[:, [0, 1, 3]], k).item()
    assert style_loss(out, style, k, valid=valid).item() == pytest.approx(without, abs=1e-5)
    assert without > 0.1
    # where no style is valid, the loss is a constant: no gradient
    y = out.clone().requires_grad_(True)
    style_loss(y, style, k, valid=torch.zeros(2, 4, 9, 9, dtype=torch.bool)).backward()
    assert y.grad is not None and float(y.grad.abs().max()) == 0.0


def test_on_real_faces_a_turned_dst_reads_the_src_nose_at_its_own_nose(extracted_clips):
    """Main pair, dst frame 35 (head turned): the src features brought to the dst's shape match the
    dst's layout better than the same position does: at the dst's nose tip the warped src face
    shows its own nose tip."""
    from pipeline.training.data import load_set, nearest_styles, to_tensor
    from pipeline.workspace.store import Workspace
    from train.features import FaceFeatures, to_chips

    def faces(folder: Path):
        with Workspace(folder) as ws:
            return load_set(ws, "dst", 128, writer=False)
    content, style = faces(extracted_clips["katie"]), faces(extracted_clips["aoc"])
    i = [n for n, name in enumerate(content.names) if name.startswith("000035_")][0]
    nb = nearest_styles(content.landmarks, style.landmarks, 4)[i]
    ff = FaceFeatures(torch.device("cpu"), 128)
    gc, gs = ff.prepare(content, [i]), ff.prepare(style, list(nb))
    pc = ff.points(torch.from_numpy(content.landmarks[[i]]).float(), gc)
    ps = ff.points(torch.from_numpy(style.landmarks[nb]).float(), gs)
    grids = style_warp.tps_grids(pc.repeat(len(nb), 1, 1), ps)
    tip_dst = pc[0, 30]
    moved = F.grid_sample(style_warp.resize_grids(grids, (150, 150)).permute(0, 3, 1, 2),
                          tip_dst.view(1, 1, 1, 2).expand(len(nb), 1, 1, 2), align_corners=False)[:, :, 0, 0]
    # where the warp reads, for the dst's nose tip, is each src face's own nose tip
    assert (moved - ps[:, 30]).norm(dim=1).max() < 0.03
    # the same position would be far from it on this turned face
    assert (tip_dst - ps[:, 30]).norm(dim=1).min() > 0.08
    chips = to_chips(to_tensor(style.images[nb], "cpu"), gs)
    assert np.isfinite(chips.numpy()).all()
