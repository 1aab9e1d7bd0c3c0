"""facexlib's RetinaFace and BiSeNet in our own PyTorch definitions: loading, maths and masks.

The published weight files are not on this machine, so the loading code is tested with
files made here from our own modules. The key names and shapes asserted below were
checked against facexlib's reference code (``retinaface.py``/``retinaface_net.py`` with
a torchvision ResNet-50 body, ``parsing/bisenet.py``/``parsing/resnet.py``): a file that
loads strictly into facexlib's modules has exactly these keys.
"""
from __future__ import annotations

import re

import numpy as np
import pytest
import torch

from pipeline.core import weights
from pipeline.core.errors import UserError
from pipeline.core.video import FrameReader, probe
from pipeline.faces.backends import bisenet_parsing, retinaface_r50
from pipeline.faces.backends.base import Detection
from pipeline.faces.backends.bisenet_parsing import CLASSES, BiSeNet, labels_to_mask
from pipeline.faces.backends.retinaface_r50 import RetinaFaceR50, decode_boxes, nms, prior_boxes
from pipeline.registries import DETECTORS, MASKERS
from tests.conftest import CLIP6, detector

R50_FILE = "detection_Resnet50_Final.pth"
R50_URL = "https://github.com/xinntao/facexlib/releases/download/v0.1.0/detection_Resnet50_Final.pth"
BISENET_FILE = "parsing_bisenet.pth"
BISENET_URL = "https://github.com/xinntao/facexlib/releases/download/v0.2.0/parsing_bisenet.pth"


def _with_prefix(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """As facexlib's RetinaFace file is: saved from nn.DataParallel, every key behind ``module.``."""
    return {f"module.{k}": v for k, v in state.items()}


def _retinaface_state() -> dict[str, torch.Tensor]:
    """Default-initialised body (a real frame flows through it), heads that predict every
    anchor as a face (p = 0.993) with zero box offsets: the boxes are the anchors themselves."""
    torch.manual_seed(0)
    state = RetinaFaceR50().state_dict()
    for name, value in state.items():
        if name.startswith(("ClassHead.", "BboxHead.", "LandmarkHead.")):
            value.zero_()
    for i in range(3):
        state[f"ClassHead.{i}.conv1x1.bias"][1::2] = 5.0      # (background, face) per anchor
    return state


def _bisenet_state(winner: str) -> dict[str, torch.Tensor]:
    """A BiSeNet whose final features are all 1 and whose only non-zero class weights are
    ``winner``'s: every pixel is labelled ``winner``."""
    torch.manual_seed(0)
    state = BiSeNet().state_dict()
    state["conv_out.conv.conv.weight"].zero_()
    state["conv_out.conv.bn.bias"].fill_(1.0)                 # ReLU(BN(0)) = 1 everywhere
    state["conv_out.conv_out.weight"].zero_()
    state["conv_out.conv_out.weight"][CLASSES.index(winner)] = 1.0
    return state


@pytest.fixture(scope="module")
def weight_files(tmp_path_factory):
    """Both files, written once: torch hub's checkpoints folder of a fake hub dir."""
    hub = tmp_path_factory.mktemp("hub")
    (hub / "checkpoints").mkdir()
    torch.save(_with_prefix(_retinaface_state()), hub / "checkpoints" / R50_FILE)
    torch.save(_bisenet_state("skin"), hub / "checkpoints" / BISENET_FILE)
    return hub


@pytest.fixture
def hub(weight_files, monkeypatch):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(weight_files))
    return weight_files / "checkpoints"


@pytest.fixture
def small_parsing_input(monkeypatch):
    """The network is fully convolutional: parse at 128 px instead of 512 to keep the tests fast."""
    monkeypatch.setattr(bisenet_parsing, "INPUT_SIZE", 128)


@pytest.fixture
def empty_hub(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    (tmp_path / "hub" / "checkpoints").mkdir(parents=True)
    return tmp_path / "hub" / "checkpoints"


def _frame() -> np.ndarray:
    info = probe(CLIP6)
    reader = FrameReader(CLIP6, info.width, info.height)
    for _, frame in reader:
        return frame
    raise AssertionError("no frame in CLIP6")


# ---------------------------------------------------------------------- key names and shapes


def test_retinaface_keys_and_shapes_match_facexlib():
    state = RetinaFaceR50().state_dict()
    expected = {
        "body.conv1.weight": (64, 3, 7, 7),                       # torchvision ResNet-50 names
        "body.layer1.0.downsample.0.weight": (256, 64, 1, 1),
        "body.layer2.0.conv2.weight": (128, 128, 3, 3),
        "body.layer4.2.bn3.running_var": (2048,),
        "fpn.output1.0.weight": (256, 512, 1, 1),
        "fpn.output3.0.weight": (256, 2048, 1, 1),
        "fpn.merge2.1.running_mean": (256,),
        "ssh1.conv3X3.0.weight": (128, 256, 3, 3),
        "ssh2.conv5X5_1.0.weight": (64, 256, 3, 3),
        "ssh3.conv7x7_3.1.weight": (64,),                         # facexlib's lower-case x
        "ClassHead.0.conv1x1.weight": (4, 256, 1, 1),             # 2 anchors x (background, face)
        "BboxHead.2.conv1x1.bias": (8,),
        "LandmarkHead.1.conv1x1.weight": (20, 256, 1, 1),
    }
    for key, shape in expected.items():
        assert tuple(state[key].shape) == shape, key
    assert not any(k.startswith(("body.fc.", "body.avgpool")) for k in state)   # IntermediateLayerGetter drops them
    assert len(state) == 456           # torchvision ResNet-50 without fc: 318; FPN, 3 SSH, 9 heads: 138


def test_bisenet_keys_and_shapes_match_facexlib():
    state = BiSeNet().state_dict()
    expected = {
        "cp.resnet.conv1.weight": (64, 3, 7, 7),
        "cp.resnet.layer2.0.downsample.0.weight": (128, 64, 1, 1),
        "cp.resnet.layer4.1.bn2.running_var": (512,),
        "cp.arm16.conv.conv.weight": (128, 256, 3, 3),
        "cp.arm32.conv_atten.weight": (128, 128, 1, 1),
        "cp.arm32.bn_atten.bias": (128,),
        "cp.conv_avg.conv.weight": (128, 512, 1, 1),
        "cp.conv_head16.bn.weight": (128,),
        "ffm.convblk.conv.weight": (256, 256, 1, 1),
        "ffm.conv1.weight": (64, 256, 1, 1),
        "ffm.conv2.weight": (256, 64, 1, 1),
        "conv_out.conv_out.weight": (19, 256, 1, 1),
        "conv_out16.conv.conv.weight": (64, 128, 3, 3),
        "conv_out32.conv_out.weight": (19, 64, 1, 1),
    }
    for key, shape in expected.items():
        assert tuple(state[key].shape) == shape, key
    assert "cp.resnet.layer1.0.downsample.0.weight" not in state      # same shape, no projection
    assert not any(k.startswith("cp.resnet.fc") for k in state)
    assert len(state) == 191


# ---------------------------------------------------------------------- loading


def test_retinaface_file_with_module_prefix_loads_strictly(hub):
    det = detector("retinaface-r50", min_face=320)
    assert isinstance(det, retinaface_r50.RetinaFaceDetector)
    assert det.weights == hub / R50_FILE
    assert str(hub / R50_FILE) in det.description and "RetinaFace" in det.description
    expected = _retinaface_state()
    loaded = det.net.state_dict()
    assert set(loaded) == set(expected)
    for key in ("body.conv1.weight", "fpn.merge1.0.weight", "ClassHead.2.conv1x1.bias"):
        assert torch.equal(loaded[key].cpu(), expected[key]), key
    assert not det.net.training and not any(p.requires_grad for p in det.net.parameters())


def test_detector_finds_anchor_boxes_on_a_real_frame(hub):
    """Heads that call every anchor a face with zero offsets: what comes back is the NMS
    of the anchors of the shrunk frame, mapped back to frame pixels, largest first."""
    frame = _frame()
    h, w = frame.shape[:2]
    det = DETECTORS.load("retinaface-r50")(upsample="auto", min_face=320)
    found = det.detect(frame, thorough=False)
    assert found and all(isinstance(d, Detection) for d in found)
    assert all(isinstance(d.score, float) and len(d.box) == 4 and all(isinstance(v, float) for v in d.box)
               for d in found)
    assert all(abs(d.score - 1 / (1 + np.exp(-5.0))) < 1e-4 for d in found)
    areas = [(d.box[2] - d.box[0]) * (d.box[3] - d.box[1]) for d in found]
    assert areas == sorted(areas, reverse=True)
    # the cheap pass ran at 32/320 of the frame; every box is an anchor size of that input, in frame pixels
    sw, sh = round(w * 0.1), round(h * 0.1)
    widths = {round((d.box[2] - d.box[0]) * sw / w, 3) for d in found}
    heights = {round((d.box[3] - d.box[1]) * sh / h, 3) for d in found}
    assert widths <= {16.0, 32.0, 64.0, 128.0, 256.0, 512.0} and heights <= widths
    # each box is centred on a cell of its level: (column + 0.5) * stride, stride 8/16/32 for sizes 16-32/64-128/256-512
    stride = {16: 8, 32: 8, 64: 16, 128: 16, 256: 32, 512: 32}
    for d in found:
        step = stride[round((d.box[2] - d.box[0]) * sw / w)]
        cx, cy = (d.box[0] + d.box[2]) / 2 * sw / w, (d.box[1] + d.box[3]) / 2 * sh / h
        assert abs(cx / step - 0.5 - round(cx / step - 0.5)) < 1e-3, (d, step)
        assert abs(cy / step - 0.5 - round(cy / step - 0.5)) < 1e-3, (d, step)


def test_parsing_file_loads_and_masks_the_face_classes(hub, small_parsing_input):
    masker = MASKERS.load("parsing")()
    assert isinstance(masker, bisenet_parsing.ParsingMasker)
    assert masker.weights == hub / BISENET_FILE and str(hub / BISENET_FILE) in masker.description
    aligned = _frame()[:200, :200].copy()
    mask = masker.mask(aligned, np.zeros((68, 2)), 96)
    assert mask.shape == (96, 96) and mask.dtype == np.uint8
    assert (mask == 255).all()                                  # every pixel labelled skin
    with pytest.raises(ValueError, match="needs the aligned face image"):
        masker.mask(None, np.zeros((68, 2)), 96)


def test_parsing_mask_leaves_out_what_is_not_face(empty_hub, small_parsing_input):
    torch.save(_bisenet_state("hair"), empty_hub / BISENET_FILE)
    masker = bisenet_parsing.ParsingMasker()
    labels = masker.labels(np.full((64, 64, 3), 128, np.uint8))
    assert labels.shape == (128, 128) and labels.dtype == np.uint8 and (labels == CLASSES.index("hair")).all()
    assert (labels_to_mask(labels, 64) == 0).all()


def test_missing_file_names_file_url_and_place(empty_hub):
    for key, file, url, make in (("retinaface-r50", R50_FILE, R50_URL, lambda: detector("retinaface-r50")),
                                 ("bisenet-parsing", BISENET_FILE, BISENET_URL, lambda: MASKERS.load("parsing")())):
        with pytest.raises(UserError) as info:
            make()
        message = str(info.value)
        assert file in message and url in message and str(empty_hub / file) in message, message
        assert "\n" not in message
        assert weights.WEIGHTS[key].url == url and weights.WEIGHTS[key].cache == "torch-hub"
    assert list(empty_hub.iterdir()) == []                      # nothing downloaded or half-written


def test_garbage_truncated_or_foreign_files_are_user_errors(empty_hub, weight_files):
    path = empty_hub / R50_FILE
    path.write_bytes(b"not a torch file")
    with pytest.raises(UserError, match=re.escape(str(path)) + ".*unreadable.*" + re.escape(R50_URL)):
        retinaface_r50.RetinaFaceDetector()
    whole = (weight_files / "checkpoints" / BISENET_FILE).read_bytes()
    (empty_hub / BISENET_FILE).write_bytes(whole[: len(whole) // 2])
    with pytest.raises(UserError, match="unreadable"):
        bisenet_parsing.ParsingMasker()
    # a whole torch file of another network: the keys do not fit
    path.write_bytes(whole)
    with pytest.raises(UserError, match=f"does not fit RetinaFaceR50.*{re.escape(R50_URL)}"):
        retinaface_r50.RetinaFaceDetector()
    # a pickle with more than tensors in it is refused by weights_only loading
    torch.save({"net": object()}, empty_hub / BISENET_FILE)
    with pytest.raises(UserError, match="unreadable"):
        bisenet_parsing.ParsingMasker()


# ---------------------------------------------------------------------- the maths


def test_prior_boxes_and_decoding_of_a_known_anchor():
    priors = prior_boxes(64, 64)
    assert priors.shape == (8 * 8 * 2 + 4 * 4 * 2 + 2 * 2 * 2, 4)
    # finest level, row 2, column 3, the second (32 px) anchor: index (2 * 8 + 3) * 2 + 1
    np.testing.assert_allclose(priors[39], [3.5 * 8 / 64, 2.5 * 8 / 64, 32 / 64, 32 / 64])
    # the first anchor of the second level (stride 16, 64 px)
    np.testing.assert_allclose(priors[128], [8 / 64, 8 / 64, 64 / 64, 64 / 64])
    # a non-square input: sizes are fractions of each side
    np.testing.assert_allclose(prior_boxes(40, 80)[0], [4 / 80, 4 / 40, 16 / 80, 16 / 40])
    # offsets: centre moves by offset * 0.1 * anchor size, size grows by exp(offset * 0.2)
    loc = np.array([[1.0, -0.5, np.log(2.0) / 0.2, 0.0]], np.float32)
    box = decode_boxes(loc, priors[39:40])[0]
    cx, cy = 0.4375 + 0.1 * 0.5, 0.3125 - 0.05 * 0.5
    np.testing.assert_allclose(box, [cx - 0.5, cy - 0.25, cx + 0.5, cy + 0.25], atol=1e-6)
    # zero offsets give the anchor itself
    np.testing.assert_allclose(decode_boxes(np.zeros((1, 4), np.float32), priors[128:129])[0], [-0.375, -0.375,
                                                                                                 0.625, 0.625])


def test_nms_keeps_the_best_of_overlapping_boxes():
    boxes = np.array([[0, 0, 10, 10], [1, 1, 11, 11], [50, 50, 60, 60]], np.float32)
    assert nms(boxes, np.array([0.8, 0.9, 0.85], np.float32)) == [1, 2]
    assert nms(np.zeros((0, 4), np.float32), np.zeros(0, np.float32)) == []


def test_class_to_mask_step_on_a_synthetic_label_map():
    labels = np.zeros((512, 512), np.uint8)
    labels[100:400, 100:400] = CLASSES.index("skin")
    labels[200:260, 140:200] = CLASSES.index("eye_g")          # glasses: kept (over the eyes)
    labels[250:300, 230:280] = CLASSES.index("nose")
    labels[330:370, 200:300] = CLASSES.index("u_lip")
    labels[150:250, 300:380] = 0                                  # a hand over the cheek: not a face class
    labels[0:100, :] = CLASSES.index("hair")
    labels[400:, :] = CLASSES.index("neck")
    labels[200:300, 60:100] = CLASSES.index("l_ear")
    mask = labels_to_mask(labels, 128)
    assert mask.shape == (128, 128) and mask.dtype == np.uint8 and set(np.unique(mask)) == {0, 255}
    at = lambda y, x: mask[y // 4, x // 4]                       # noqa: E731 - label-map coordinates
    assert at(120, 120) == 255 and at(230, 170) == 255 and at(270, 250) == 255 and at(350, 250) == 255
    assert at(200, 340) == 0                                     # the hand
    assert at(50, 250) == 0 and at(450, 250) == 0 and at(250, 80) == 0   # hair, neck, ear
    assert mask.mean() / 255 == pytest.approx(((300 * 300) - 100 * 80) / 512 ** 2, abs=0.01)


def test_parsing_is_a_mask_origin():
    from pipeline.workspace.records import MaskOrigin
    assert MaskOrigin("parsing") == "parsing" and MaskOrigin("parsing").value == "parsing"
    assert MaskOrigin(MaskOrigin("parsing").value).value == "parsing"     # as the index reads it back
    assert MaskOrigin("hull") is MaskOrigin.HULL


def test_models_lists_the_facexlib_files(empty_hub):
    from models.catalogue import catalogue
    report = catalogue()
    kinds = {k["kind"]: {e["name"]: e for e in k["entries"]} for k in report["kinds"]}
    r50 = kinds["detector"]["retinaface-r50"]
    parsing = kinds["masker"]["parsing"]
    assert "MIT" in r50["terms"] and "MIT" in parsing["terms"]
    assert r50["weights"][0]["file"] == R50_FILE and r50["weights"][0]["source"] == R50_URL
    assert "WIDER FACE" in r50["weights"][0]["terms"] and not r50["ready"]
    assert parsing["weights"][0]["source"] == BISENET_URL and "CelebAMask-HQ" in parsing["weights"][0]["terms"]
    assert "non-commercial" in parsing["weights"][0]["terms"]
    assert parsing["weights"][0]["problem"].startswith(f"missing; download {BISENET_URL}")
