"""int8 CPU inference of the transformation net: close to float on real faces, refused where unsupported;
its activation ranges stored by train and used by convert only while they match."""
import json
import subprocess

import cv2
import numpy as np
import pytest
import torch

from pipeline.models.calibration import CALIBRATION_FILE
from pipeline.models.int8_inference import calibrated, quantize, supported
from pipeline.models.store import load_model, save_model
from pipeline.models.transform import TransformModel
from pipeline.models.transform_net import TransformNet
from tests.conftest import KATIE, ffmpeg


@pytest.fixture(scope="module")
def crops():
    """Centre crops of 24 real frames at 128 px, as the network sees faces (RGB 0..1)."""
    raw = subprocess.run([ffmpeg(), "-v", "error", "-i", str(KATIE), "-frames:v", "24", "-f", "rawvideo",
                          "-pix_fmt", "rgb24", "-"], capture_output=True, check=True).stdout
    frames = np.frombuffer(raw, np.uint8).reshape(-1, 512, 512, 3)
    small = [cv2.resize(f[120:376, 128:384], (128, 128), interpolation=cv2.INTER_AREA) for f in frames]
    return torch.from_numpy(np.stack(small)).permute(0, 3, 1, 2).float() / 255.0


def _net_with_a_real_residual() -> TransformNet:
    torch.manual_seed(0)
    net = TransformNet(128, width=8).eval()
    with torch.no_grad():
        net.head.weight.mul_(150.0)     # an untrained residual is ~1% of the range: make it matter
    return net


def test_int8_output_is_close_to_float_on_real_faces(crops):
    net = _net_with_a_real_residual()
    q = quantize(net, crops[::3])           # calibrated on 8 faces, tested on all 24
    with torch.inference_mode():
        ref, out = net(crops), q(crops)
    residual = (ref - crops).abs().mean().item() * 255
    error = (out - ref).abs().mean().item() * 255
    # measured: residual 10.5 grey levels, int8 error 0.38
    assert residual > 5
    assert error < 0.1 * residual and error < 2.0, (error, residual)
    # the pass-through part is exact: a zero residual gives the input back
    with torch.no_grad():
        net.head.weight.zero_()
        net.head.bias.zero_()
    zero = quantize(net, crops[::3])
    with torch.inference_mode():
        assert torch.allclose(zero(crops), crops, atol=1e-6)


def test_only_128_models_with_the_skip_are_supported(crops):
    assert supported(TransformNet(128, width=4))
    assert not supported(TransformNet(128, width=4, skip=False))
    assert not supported(TransformNet(256, width=4))
    with pytest.raises(ValueError):
        quantize(TransformNet(256, width=4), crops[:2])


def test_stored_ranges_rebuild_the_same_int8_net_without_float_passes(crops):
    net = _net_with_a_real_residual()
    first, ranges = calibrated(net, crops[::3])
    again, same = calibrated(net, ranges=ranges)
    assert same == ranges and len(ranges) > 10
    with torch.inference_mode():
        assert torch.equal(first(crops), again(crops))      # bit for bit: the ranges are all a calibration makes
    with pytest.raises(ValueError, match="observers"):
        calibrated(net, ranges=dict(list(ranges.items())[:-1]))


def _u8(batch: torch.Tensor) -> list[np.ndarray]:
    return [(c.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8) for c in batch]


def _run(folder, calibration, x):
    """(the predictor's description, its output on ``x``) for the model in ``folder``, as convert loads it."""
    model, _ = load_model(folder, initialise=False)
    predictor = model.predictor(torch.device("cpu"), "auto", calibration)
    with torch.inference_mode():
        return predictor.description, predictor(x)


def test_the_stored_calibration_is_used_only_while_weights_and_faces_match(crops, tmp_path):
    faces = _u8(crops[::3])
    x = torch.from_numpy(np.stack(faces)).permute(0, 3, 1, 2).float() / 255.0
    folder = tmp_path / "model"
    save_model(folder, TransformModel(_net_with_a_real_residual()), {"face_type": "full", "iteration": 0})
    # a model trained before the file existed: calibrated as always
    old_way, reference = _run(folder, faces, x)
    assert "calibrated on 8 dst faces" in old_way
    loaded, _ = load_model(folder)
    path = loaded.store_calibration(folder, faces)
    assert path == folder / CALIBRATION_FILE
    stored_way, out = _run(folder, faces, x)
    assert "stored by train" in stored_way and torch.equal(out, reference)

    # the file's ranges really are what convert runs with: halve them and the output changes
    data = json.loads(path.read_text())
    good = path.read_text()
    data["ranges"] = {k: [lo, hi / 2] for k, (lo, hi) in data["ranges"].items()}
    path.write_text(json.dumps(data))
    description, out = _run(folder, faces, x)
    assert "stored by train" in description and not torch.equal(out, reference)
    path.write_text(good)

    # other dst faces (one deleted since train), damaged file, other weights: ignored, calibrated again
    description, _ = _run(folder, faces[:-1], x)
    assert "calibrated on 7 dst faces" in description
    for damaged in ("{not json", json.dumps({"key": data["key"], "ranges": {"quant": ["x", 1.0]}}), "[]"):
        path.write_text(damaged)
        description, out = _run(folder, faces, x)
        assert "calibrated on 8 dst faces" in description and torch.equal(out, reference), damaged
    path.write_text(good)
    state = torch.load(folder / "weights.pt", weights_only=True)
    state["head.bias"] = state["head.bias"] + 1e-3
    torch.save(state, folder / "weights.pt")
    description, _ = _run(folder, faces, x)
    assert "calibrated on 8 dst faces" in description
    assert path.read_text() == good                    # convert only reads it
