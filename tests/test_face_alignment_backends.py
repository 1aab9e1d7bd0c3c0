"""S3FD and 2D-FAN: our definitions take face-alignment's weight layout, fail clearly without
the files, and decode boxes and heatmaps as face-alignment does.

The real weight files are not on this machine, so the tests write weight files of the
published layout (our state dict, with chosen values) into a temporary torch hub cache.
"""
from __future__ import annotations

import math

import cv2
import numpy as np
import pytest
import torch

from pipeline.core import weights
from pipeline.core.errors import UserError
from pipeline.core.video import FrameReader
from pipeline.faces.backends import fan, s3fd
from pipeline.faces.backends.base import Detection
from tests.conftest import CLIP6, detector, landmarker

S3FD_FILE = "s3fd-619a316812.pth"
FAN_FILE = "2DFAN4-11f355bf06.pth.tar"
URL = "https://www.adrianbulat.com/downloads/python-fan/"


def _fan_state() -> dict[str, torch.Tensor]:
    """Random FAN weights whose last heatmap layer outputs 0 everywhere (known peaks)."""
    g = torch.Generator().manual_seed(0)
    state = {}
    for k, v in fan.FAN().state_dict().items():
        if k.endswith("running_var"):
            state[k] = torch.rand(v.shape, generator=g) + 0.5
        elif v.dtype.is_floating_point:
            state[k] = torch.randn(v.shape, generator=g) * 0.05
        else:
            state[k] = v.clone()
    state["l3.weight"].zero_()
    state["l3.bias"].zero_()
    return state


def _s3fd_state() -> dict[str, torch.Tensor]:
    """Random S3FD trunk; every head says 'background' except fc7's (stride 32), which says
    'face' (p = sigmoid(5)) everywhere with zero offsets: the faces are its anchors."""
    g = torch.Generator().manual_seed(0)
    state = {k: torch.randn(v.shape, generator=g) * 0.02 for k, v in s3fd.S3FDNet().state_dict().items()}
    for k in state:
        if "_mbox_" in k:
            state[k].zero_()
    state["conv3_3_norm_mbox_conf.bias"][:3] = 5.0
    for head in ("conv4_3_norm", "conv5_3_norm", "conv6_2", "conv7_2"):
        state[f"{head}_mbox_conf.bias"][0] = 5.0
    state["fc7_mbox_conf.bias"][1] = 5.0
    return state


@pytest.fixture(scope="module")
def hub(tmp_path_factory):
    """A torch hub folder whose checkpoints hold both files in the published layout."""
    folder = tmp_path_factory.mktemp("hub")
    (folder / "checkpoints").mkdir()
    torch.save(_s3fd_state(), folder / "checkpoints" / S3FD_FILE)
    torch.save(_fan_state(), folder / "checkpoints" / FAN_FILE)
    return folder


@pytest.fixture(scope="module")
def backends(hub):
    """Both backends, created once through the registries from the temporary hub cache."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(torch.hub, "get_dir", lambda: str(hub))
        return detector("s3fd", min_face=64), landmarker("fan")


@pytest.fixture(scope="module")
def frame() -> np.ndarray:
    return next(iter(FrameReader(CLIP6, 512, 512)))[1]


# ---------------------------------------------------------------------- layout of the published files


def test_state_dict_layout_is_face_alignments():
    """Names and shapes checked against face-alignment's FAN(4) and s3fd modules."""
    f = fan.FAN().state_dict()
    assert len(f) == 1129 and sum(v.numel() for v in f.values()) == 23874504
    for key, shape in {"conv1.weight": (64, 3, 7, 7), "conv1.bias": (64,), "bn1.running_var": (64,),
                       "conv2.conv2.weight": (32, 64, 3, 3), "conv2.downsample.0.weight": (64,),
                       "conv4.downsample.2.weight": (256, 128, 1, 1), "m0.b1_4.conv1.weight": (128, 256, 3, 3),
                       "m3.b2_plus_1.conv3.weight": (64, 64, 3, 3), "top_m_3.bn1.running_mean": (256,),
                       "conv_last3.weight": (256, 256, 1, 1), "bn_end0.weight": (256,),
                       "l3.weight": (68, 256, 1, 1), "bl2.weight": (256, 256, 1, 1),
                       "al0.weight": (256, 68, 1, 1), "m1.b3_2.bn3.num_batches_tracked": ()}.items():
        assert tuple(f[key].shape) == shape, key
    assert not any(k.startswith(("bl3", "al3", "m4")) or (k.startswith("m") and "downsample" in k) for k in f)

    s = s3fd.S3FDNet().state_dict()
    assert len(s) == 65 and sum(v.numel() for v in s.values()) == 22459110
    for key, shape in {"conv1_1.weight": (64, 3, 3, 3), "conv5_3.bias": (512,), "fc6.weight": (1024, 512, 3, 3),
                       "fc7.weight": (1024, 1024, 1, 1), "conv6_2.weight": (512, 256, 3, 3),
                       "conv7_2.weight": (256, 128, 3, 3), "conv3_3_norm.weight": (256,),
                       "conv3_3_norm_mbox_conf.weight": (4, 256, 3, 3), "conv4_3_norm_mbox_conf.weight": (2, 512, 3, 3),
                       "fc7_mbox_loc.weight": (4, 1024, 3, 3), "conv7_2_mbox_conf.bias": (2,)}.items():
        assert tuple(s[key].shape) == shape, key
    fresh = s3fd.S3FDNet()
    assert [fresh.get_submodule(f"conv{i}_3_norm").weight[0].item() for i in (3, 4, 5)] == [10.0, 8.0, 5.0]


def test_weight_files_are_registered_for_torch_hub():
    for key, file in (("s3fd", S3FD_FILE), ("fan-2d", FAN_FILE)):
        w = weights.WEIGHTS[key]
        assert (w.file, w.url, w.cache) == (file, URL + file, "torch-hub")
        assert w.sha256 is not None and f"-{w.sha256}." in file and w.size is None
        assert "research" in w.terms


# ---------------------------------------------------------------------- loading


def test_backends_load_the_files_with_strict_keys(hub, backends):
    det, lm = backends
    for net, file in ((lm.net, FAN_FILE), (det.net, S3FD_FILE)):
        saved = torch.load(hub / "checkpoints" / file, weights_only=True)
        loaded = net.state_dict()
        assert set(loaded) == set(saved) and all(torch.equal(loaded[k].cpu(), saved[k]) for k in saved)
    for backend, file in ((det, S3FD_FILE), (lm, FAN_FILE)):
        assert str(hub / "checkpoints" / file) in backend.description
        assert ("cuda" if torch.cuda.is_available() else "cpu") in backend.description
        assert not backend.net.training


def test_missing_file_names_the_file_url_and_place(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    for name, file in (("s3fd", S3FD_FILE), ("fan", FAN_FILE)):
        with pytest.raises(UserError) as info:
            detector(name) if name == "s3fd" else landmarker(name)
        message = str(info.value)
        assert URL + file in message and str(tmp_path / "hub" / "checkpoints" / file) in message
        assert "\n" not in message
    assert not (tmp_path / "hub").exists()                      # nothing downloaded or created


@pytest.mark.parametrize("damage", ["garbage", "truncated", "wrong keys", "not tensors"])
def test_a_damaged_file_is_a_clear_user_error(tmp_path, monkeypatch, damage):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    (tmp_path / "checkpoints").mkdir()
    path = tmp_path / "checkpoints" / S3FD_FILE
    if damage == "garbage":
        path.write_bytes(b"<html>404 not found</html>")
    elif damage == "truncated":
        torch.save({"conv1_1.weight": torch.zeros(64, 3, 3, 3)}, path)
        path.write_bytes(path.read_bytes()[:-200])
    elif damage == "wrong keys":
        torch.save({"conv1_1.weight": torch.zeros(64, 3, 1, 1)}, path)
    else:
        torch.save({"model": "s3fd", "epoch": 3}, path)
    with pytest.raises(UserError) as info:
        detector("s3fd")
    message = str(info.value)
    assert str(path) in message and URL + S3FD_FILE in message and "\n" not in message
    expected = {"garbage": "unreadable", "truncated": "unreadable", "wrong keys": "does not fit",
                "not tensors": "no state dict of tensors"}[damage]
    assert expected in message
    if damage == "wrong keys":
        assert "Missing key(s)" in message


# ---------------------------------------------------------------------- on a real frame


def test_s3fd_reports_its_anchors_in_image_pixels(backends, frame):
    """Only the stride-32 head says 'face', with zero offsets: every face is one of its
    128 px anchors, scaled back from the network's input to the frame."""
    det = backends[0]                                          # min_face 64: first pass at half size
    found = det.detect(frame)
    assert found and all(isinstance(d, Detection) for d in found)
    scale = 0.5
    for d in found:
        x0, y0, x1, y1 = d.box
        assert all(isinstance(v, float) for v in d.box)
        assert d.score == pytest.approx(1 / (1 + math.exp(-5)), abs=1e-4)
        assert x1 - x0 == pytest.approx(128 / scale) and y1 - y0 == pytest.approx(128 / scale)
        cx, cy = (x0 + x1) / 2 * scale, (y0 + y1) / 2 * scale
        assert (cx - 16) % 32 == pytest.approx(0, abs=1e-6) and (cy - 16) % 32 == pytest.approx(0, abs=1e-6)
    centres = {((d.box[0] + d.box[2]) / 2, (d.box[1] + d.box[3]) / 2) for d in found}
    assert len(centres) == len(found) > 1                     # NMS kept distinct anchors only
    assert (found[0].box[0] + found[0].box[2]) / 2 == pytest.approx(16 / scale)   # first anchor first
    assert det.detect(frame, thorough=False) == found


def test_fan_landmarks_on_a_real_frame(backends, frame):
    """Zero heatmaps peak at heatmap pixel (0, 0): every point is (0.5, 0.5) mapped back."""
    box = detector("dlib").detect(frame)[0].box
    points = backends[1].landmarks(frame, box)
    assert points.shape == (68, 2) and points.dtype == np.float64
    centre, scale = fan.crop_frame(box)
    side = 200 * scale
    expected = centre - side / 2 + 0.5 * side / 64
    assert np.allclose(points, expected)


# ---------------------------------------------------------------------- decoding maths


def test_s3fd_box_decoding_from_a_known_anchor_and_offset():
    prob = np.zeros((4, 5), np.float32)
    loc = np.zeros((4, 4, 5), np.float32)
    prob[2, 3] = 0.9
    prob[0, 0] = 0.04                                          # under the candidate threshold
    loc[:, 2, 3] = [0.5, -1.0, math.log(2) / 0.2, 0.0]
    boxes = s3fd.decode_level(prob, loc, stride=8)
    # anchor: centre (8/2 + 3*8, 8/2 + 2*8) = (28, 20), side 32; centre moves by loc * 0.1 * 32,
    # width doubles, height stays
    assert boxes.shape == (1, 5)
    assert np.allclose(boxes[0], [29.6 - 32, 16.8 - 16, 29.6 + 32, 16.8 + 16, 0.9])
    assert s3fd.decode_level(np.zeros((3, 3)), np.zeros((4, 3, 3)), 4).shape == (0, 5)


def test_nms_keeps_the_best_of_overlapping_boxes():
    boxes = np.array([[1, 1, 11, 11, 0.8], [0, 0, 10, 10, 0.9], [20, 20, 30, 30, 0.7], [0, 6, 10, 16, 0.6]])
    kept = s3fd.nms(boxes)
    assert kept[:, 4].tolist() == [0.9, 0.7, 0.6]           # IoU 0.68 dropped; 0.25 kept


def test_heatmap_peaks_move_a_quarter_pixel_toward_the_larger_neighbour():
    hm = np.zeros((4, 64, 64), np.float32)
    hm[0, 30, 20] = 1.0
    hm[0, 30, 21], hm[0, 30, 19] = 0.5, 0.2                  # right larger: +0.25 x
    hm[0, 29, 20], hm[0, 31, 20] = 0.6, 0.1                  # above larger: -0.25 y
    hm[1, 10, 0] = 1.0                                        # on the border: no shift
    hm[2, 63, 63] = 1.0
    hm[2, 62, 63] = 0.5
    hm[3, 5, 7] = 1.0                                         # equal neighbours: no shift
    pts = fan.heatmap_peaks(hm)
    assert pts.tolist() == [[20.75, 30.25], [0.5, 10.5], [63.5, 63.5], [7.5, 5.5]]


def test_heatmap_points_map_back_with_face_alignments_transform():
    box = (100.0, 200.0, 300.0, 420.0)
    centre, scale = fan.crop_frame(box)
    assert np.allclose(centre, [200.0, 310.0 - 0.12 * 220]) and scale == pytest.approx(420 / 195)
    # face-alignment's matrix for a 64 px heatmap, inverted as it does
    h = 200.0 * scale
    t = np.array([[64 / h, 0, 64 * (-centre[0] / h + 0.5)], [0, 64 / h, 64 * (-centre[1] / h + 0.5)], [0, 0, 1]])
    pts = np.array([[20.75, 30.25], [0.5, 0.5], [63.5, 10.0]])
    expected = (np.linalg.inv(t) @ np.c_[pts, np.ones(3)].T).T[:, :2]
    assert np.allclose(fan.heatmap_to_image(pts, centre, scale), expected)


def test_the_crop_is_face_alignments_window_resized():
    image = np.zeros((480, 640, 3), np.uint8)
    image[179:182, 249:252] = 255                              # a 3x3 dot centred on (250, 180)
    box = (180.0, 120.0, 330.0, 290.0)
    centre, scale = fan.crop_frame(box)
    # face-alignment's window: inverse transform of the 1-based corners, truncated
    h = 200 * scale
    ul = np.fix(np.array([1.0, 1.0]) * h / 256 + centre - h / 2).astype(int)
    br = np.fix(np.array([256.0, 256.0]) * h / 256 + centre - h / 2).astype(int)
    assert [a.tolist() for a in fan.crop_corners(centre, scale)] == [ul.tolist(), br.tolist()]
    crop = fan.crop_image(image, centre, scale)
    assert crop.shape == (256, 256, 3) and crop.dtype == np.uint8
    assert np.array_equal(crop, cv2.resize(image[ul[1]:br[1], ul[0]:br[0]], (256, 256)))
    ys, xs = np.nonzero(crop[:, :, 0])
    w = crop[ys, xs, 0].astype(float)
    found = np.array([np.average(xs, weights=w), np.average(ys, weights=w)])
    n = br - ul                                                # resized n -> 256, pixel centres aligned
    assert np.allclose(found, (np.array([250.0, 180.0]) - ul + 0.5) * 256 / n - 0.5, atol=0.2)


def test_a_window_past_the_image_edge_is_black_there():
    image = np.full((300, 300, 3), 200, np.uint8)
    centre, scale = fan.crop_frame((-60.0, -50.0, 60.0, 70.0))
    ul, br = fan.crop_corners(centre, scale)
    assert ul[0] < 0 and ul[1] < 0
    crop = fan.crop_image(image, centre, scale)
    assert crop[0, 0].tolist() == [0, 0, 0] and crop[-1, -1].tolist() == [200, 200, 200]


def test_heatmap_to_image_inverts_the_heatmap_transform():
    centre, scale = fan.crop_frame((180.0, 120.0, 330.0, 290.0))
    point = np.array([[250.0, 180.0], [-5.0, 700.0]])
    m = fan.to_crop(centre, scale, 64)
    heat = point @ m[:, :2].T + m[:, 2]
    assert np.allclose(fan.heatmap_to_image(heat, centre, scale), point)
