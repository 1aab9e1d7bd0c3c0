"""int8 CPU inference of the transformation net: close to float on real faces, refused where unsupported."""
import subprocess

import cv2
import numpy as np
import pytest
import torch

from pipeline.models.int8_inference import quantize, supported
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
