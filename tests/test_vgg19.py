"""Our VGG19 definition loads torchvision-style weight files and fails clearly offline."""
from __future__ import annotations

import re
import urllib.error

import pytest
import torch

from pipeline.core.errors import UserError
from train import vgg19
from train.vgg19 import TAP_NAMES, VGG19Features, load_vgg19

CONV_INDICES = (0, 2, 5, 7, 10, 12, 14, 16, 19, 21, 23, 25, 28, 30, 32, 34)


@pytest.fixture(autouse=True)
def _no_network(monkeypatch):
    """Any download attempt fails at once, as on an offline machine."""
    def refuse(url, dst, *args, **kwargs):
        raise urllib.error.URLError("network is unreachable (test)")
    monkeypatch.setattr(torch.hub, "download_url_to_file", refuse)


def test_state_dict_keys_match_torchvision():
    keys = set(VGG19Features().state_dict())
    expected = {f"features.{i}.{p}" for i in CONV_INDICES for p in ("weight", "bias")}
    assert keys == expected
    assert TAP_NAMES[0] == "relu1_1" and TAP_NAMES[-1] == "relu5_4" and len(TAP_NAMES) == 16


def test_loads_a_torchvision_style_file(tmp_path):
    torch.manual_seed(0)
    state = {k: torch.randn_like(v) * 0.05 for k, v in VGG19Features().state_dict().items()}
    state["classifier.0.weight"] = torch.randn(8, 4)     # ignored on load
    state["classifier.0.bias"] = torch.randn(8)
    torch.save(state, tmp_path / "vgg19-dcbb9e9d.pth")

    net = load_vgg19(model_dir=tmp_path)
    loaded = net.state_dict()
    assert set(loaded) == {k for k in state if k.startswith("features.")}
    for k, v in loaded.items():
        assert torch.equal(v, state[k]), k
    assert not net.training
    assert all(not p.requires_grad for p in net.parameters())

    x = torch.rand(1, 3, 128, 128, requires_grad=True)
    out = net.features(x, ["relu3_1", "relu4_1", "relu4_2"])
    assert out["relu3_1"].shape == (1, 256, 32, 32)
    assert out["relu4_1"].shape == (1, 512, 16, 16)
    assert out["relu4_2"].shape == (1, 512, 16, 16)
    # frozen weights, but the loss still back-propagates to the image
    out["relu4_2"].sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0


def test_taps_stop_at_the_deepest_requested(monkeypatch):
    net = VGG19Features()
    seen: list[int] = []
    for i, layer in enumerate(net.layers):
        layer.register_forward_hook(lambda m, a, o, i=i: seen.append(i))
    out = net(torch.rand(1, 3, 32, 32), ["relu1_2", "relu2_1"])
    assert set(out) == {"relu1_2", "relu2_1"}
    assert max(seen) == 6                                   # relu2_1 is layer 6
    with pytest.raises(ValueError):
        net.features(torch.rand(1, 3, 32, 32), ["relu9_9"])


def test_missing_weights_offline_is_a_user_error(tmp_path):
    with pytest.raises(UserError) as info:
        load_vgg19(model_dir=tmp_path)
    message = str(info.value)
    assert "vgg19-dcbb9e9d.pth" in message
    assert vgg19.WEIGHTS_URL in message
    assert str(tmp_path / "vgg19-dcbb9e9d.pth") in message
    assert "\n" not in message
    assert list(tmp_path.iterdir()) == []                  # nothing half-written left behind


def test_default_location_is_torch_hub_cache(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    expected = tmp_path / "hub" / "checkpoints" / "vgg19-dcbb9e9d.pth"
    assert vgg19.weights_path() == expected
    with pytest.raises(UserError, match=re.escape(str(expected))):
        load_vgg19()


def test_corrupt_weights_file_is_a_user_error(tmp_path):
    (tmp_path / "vgg19-dcbb9e9d.pth").write_bytes(b"not a torch file")
    with pytest.raises(UserError, match="vgg19-dcbb9e9d.pth"):
        load_vgg19(model_dir=tmp_path)
