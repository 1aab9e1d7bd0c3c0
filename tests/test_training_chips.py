"""Training's differentiable chip path must cut the chips extract's descriptors were made from.

The identity loss compares descriptors of generated faces, cut from 128 px crops in torch,
with src descriptors that extract computed from frame chips; a path that cuts differently
biases every step. Both shared clips, every 4th face of 200.
"""
import cv2
import numpy as np
import pytest
import torch

from pipeline.faces.face_chip import CHIP_SIZE, MIN_BLUR, aligned_chip_warp
from pipeline.training.data import load_set
from pipeline.workspace.store import Workspace
from train.features import FaceFeatures, chip_geometry, to_chips

R = 128
CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def face_sets(extracted_clips):
    out = {}
    for name, path in extracted_clips.items():
        ws = Workspace(path)
        faces = load_set(ws, "dst", R)
        ws.close()
        out[name] = (faces, slice(None, None, 4))
    return out


def _images(faces, idx) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(faces.images[idx])).permute(0, 3, 1, 2).float() / 255.0


def test_torch_chips_match_the_numpy_recipe(face_sets):
    """Same blur (less the resize's) and same offset warp as cv2 gives, to a hundredth of a level."""
    faces, idx = face_sets["katie"]
    geom = chip_geometry(faces.landmarks[idx], faces.source_scale[idx], faces.downscale[idx], R, CPU)
    sig = geom.sigmas.numpy()
    # level 0 faces: 0.39-0.42 here; level -1 faces (dlib samples the frame directly): none
    assert ((sig == 0) | ((sig > 0.3) & (sig < 0.6))).all() and 0 < (sig == 0).sum() < len(sig) / 2, sig
    with torch.no_grad():
        ours = to_chips(_images(faces, idx), geom).permute(0, 2, 3, 1).numpy()
    ref = []
    for img, pts, scale, sigma in zip(faces.images[idx], faces.landmarks[idx], faces.source_scale[idx],
                                      geom.sigmas.numpy()):
        matrix, _ = aligned_chip_warp(pts, float(scale))
        soft = cv2.GaussianBlur(img.astype(np.float32), (0, 0), float(sigma)) if sigma > MIN_BLUR else img
        ref.append(cv2.warpAffine(soft.astype(np.float32), matrix, (CHIP_SIZE, CHIP_SIZE), flags=cv2.INTER_LINEAR,
                                  borderMode=cv2.BORDER_REPLICATE))
    diff = np.abs(ours - np.stack(ref))
    print(f"mean {diff.mean():.2e} max {diff.max():.2e}")      # measured 4e-5, 1.5e-3 (a bare warp: 2.6 mean)
    assert diff.mean() < 1e-3 and diff.max() < 0.02, (diff.mean(), diff.max())


# measured: katie 0.0573 (max 0.084) bare -> 0.0463 (0.071); aoc 0.0416 (0.070) -> 0.0330 (0.050)
@pytest.mark.parametrize("clip", ["katie", "aoc"])
def test_the_pyramid_model_brings_training_descriptors_closer_to_extracts(face_sets, clip):
    faces, idx = face_sets[clip]
    feats = FaceFeatures(CPU, R)
    stored = faces.descriptors[idx]
    gaps = {}
    for pyramid in (False, True):
        geom = chip_geometry(faces.landmarks[idx], faces.source_scale[idx], faces.downscale[idx], R, CPU, pyramid)
        with torch.no_grad():
            got = feats.descriptor(_images(faces, idx), geom).numpy()
        gaps[pyramid] = np.linalg.norm(got - stored, axis=1)
    print(clip, {k: (round(float(v.mean()), 4), round(float(v.max()), 4)) for k, v in gaps.items()})
    assert gaps[True].mean() < gaps[False].mean() - 0.006, gaps
    assert gaps[True].mean() < 0.052 and gaps[True].max() < 0.08
