"""The transformation network: size, shapes, identity start, 256 growth, checkpoints."""
from __future__ import annotations

import json

import pytest
import torch

from pipeline.core.errors import UserError
from pipeline.models.interface import count_parameters
from pipeline.models.store import load_model as _load_model
from pipeline.models.store import save_model as _save_model
from pipeline.models.transform import TransformModel
from pipeline.models.transform_net import TransformNet


def save_model(folder, net, options):
    """The model store, with a bare network wrapped as the transformation-network model type."""
    _save_model(folder, TransformModel(net), options)


def load_model(folder, device="cpu"):
    model, options = _load_model(folder, device)
    return model.network, options



#: Small width for the growth/checkpoint tests: same structure, a fraction of the time.
WIDTH = 8


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


@pytest.fixture(scope="module")
def net128() -> TransformNet:
    torch.manual_seed(1)
    net = TransformNet(128, width=WIDTH)
    # give BatchNorm non-trivial running statistics, as after training
    net.train()
    with torch.no_grad():
        for _ in range(2):
            net(torch.rand(4, 3, 128, 128))
    return net.eval()


def test_parameter_count_at_128_is_about_one_million():
    n = count_parameters(TransformNet(128))
    assert 500_000 < n < 2_000_000


def test_forward_shapes():
    for res in (128, 256):
        for skip in (True, False):
            net = TransformNet(res, width=8, skip=skip).eval()
            with torch.no_grad():
                y = net(torch.rand(2, 3, res, res))
            assert y.shape == (2, 3, res, res)
    with pytest.raises(ValueError):
        TransformNet(128)(torch.rand(1, 3, 64, 64))
    with pytest.raises(ValueError):
        TransformNet(96)


@pytest.mark.parametrize("res", [128, 256])
def test_untrained_residual_net_is_close_to_identity(res):
    x = torch.rand(2, 3, res, res)
    net = TransformNet(res, width=32 if res == 128 else WIDTH)
    for mode in (True, False):
        net.train(mode)
        with torch.no_grad():
            y = net(x)
        assert (y - x).abs().mean().item() < 0.02


def test_gradients_reach_every_parameter_at_128():
    net = TransformNet(128).train()
    x = torch.rand(2, 3, 128, 128)
    target = torch.rand(2, 3, 128, 128)
    (net(x) - target).square().mean().backward()
    for name, p in net.named_parameters():
        assert p.grad is not None and p.grad.abs().sum().item() > 0, name


def test_grow_256_from_128_and_train_only_new_parameters(net128):
    big = TransformNet(256, width=WIDTH)
    big.grow_from(net128)
    small_state = net128.state_dict()
    for key, value in big.base.state_dict().items():
        assert torch.equal(value, small_state[f"base.{key}"]), key
    for key, value in big.base_head.state_dict().items():
        assert torch.equal(value, small_state[f"head.{key}"]), key

    big.freeze_base()
    new_prefixes = ("branch.", "join.", "head.")
    for name, p in big.named_parameters():
        assert p.requires_grad == name.startswith(new_prefixes), name
    trainable = big.trainable_parameters()
    assert len(trainable) == sum(1 for n, _ in big.named_parameters() if n.startswith(new_prefixes))
    assert 0 < count_parameters(big, trainable_only=True) < count_parameters(big)

    # train() keeps the frozen base in eval mode (its BatchNorm statistics do not move)
    big.train()
    assert not big.base.training and not big.base_head.training and big.join.training
    before = {k: v.clone() for k, v in big.state_dict().items()}
    opt = torch.optim.Adam(trainable, lr=1e-2)
    x = torch.rand(2, 3, 256, 256)
    loss = (big(x) - torch.rand_like(x)).square().mean()
    loss.backward()
    opt.step()
    after = big.state_dict()
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert changed, "the step changed nothing"
    assert all(k.startswith(new_prefixes) for k in changed), sorted(changed)
    assert any(k.startswith("branch.") for k in changed) and any(k.startswith("join.") for k in changed)
    assert all(p.grad is None for n, p in big.named_parameters() if not n.startswith(new_prefixes))


def test_grown_256_starts_as_the_128_model_upsampled(net128):
    big = TransformNet(256, width=WIDTH)
    big.grow_from(net128)
    big.freeze_base()
    big.eval()
    x = torch.rand(1, 3, 256, 256)
    with torch.no_grad():
        small_out = net128(torch.nn.functional.avg_pool2d(x, 2))
        residual = torch.nn.functional.interpolate(small_out - torch.nn.functional.avg_pool2d(x, 2),
                                                   scale_factor=2.0, mode="bilinear",
                                                   align_corners=False)
        big_out = big(x)
    # only the new head (1% init) separates the grown net from x + upsampled 128 residual
    assert (big_out - (x + residual)).abs().mean().item() < 0.02


def test_grow_rejects_mismatched_models(net128):
    with pytest.raises(ValueError):
        TransformNet(256, width=16).grow_from(net128)
    with pytest.raises(ValueError):
        TransformNet(256, width=WIDTH, skip=False).grow_from(net128)


def test_save_load_round_trip(tmp_path, net128):
    save_model(tmp_path / "model", net128, {"iterations": 12, "lr": 1e-3})
    files = sorted(p.name for p in (tmp_path / "model").iterdir())
    assert files == ["options.json", "weights.pt"]          # no temp files left behind
    loaded, options = load_model(tmp_path / "model")
    assert options["iterations"] == 12 and options["format_version"] == 1
    assert (options["resolution"], options["width"], options["skip"]) == (128, WIDTH, True)
    assert not loaded.training
    x = torch.rand(2, 3, 128, 128)
    with torch.no_grad():
        assert torch.equal(loaded(x), net128(x))


def test_save_load_256_frozen(tmp_path, net128):
    big = TransformNet(256, width=WIDTH, skip=True)
    big.grow_from(net128)
    big.freeze_base()
    save_model(tmp_path, big, {})
    loaded, options = load_model(tmp_path)
    assert options["resolution"] == 256
    for k, v in big.state_dict().items():
        assert torch.equal(loaded.state_dict()[k], v), k


def test_load_missing_model_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match="no trained model.*python main.py train"):
        load_model(tmp_path / "nowhere")
    save_model(tmp_path / "m", TransformNet(128, width=4), {})
    (tmp_path / "m" / "weights.pt").unlink()
    with pytest.raises(UserError, match="weights.pt"):
        load_model(tmp_path / "m")


def test_load_corrupt_options_is_a_user_error(tmp_path):
    save_model(tmp_path, TransformNet(128, width=4), {})
    (tmp_path / "options.json").write_text("{not json")
    with pytest.raises(UserError, match="options.json"):
        load_model(tmp_path)


def test_load_newer_format_is_a_user_error(tmp_path):
    save_model(tmp_path, TransformNet(128, width=4), {})
    meta = json.loads((tmp_path / "options.json").read_text())
    meta["format_version"] = 99
    (tmp_path / "options.json").write_text(json.dumps(meta))
    with pytest.raises(UserError, match="options.json.*newer|newer.*options.json"):
        load_model(tmp_path)


def test_load_mismatched_weights_is_a_user_error(tmp_path):
    save_model(tmp_path, TransformNet(128, width=4), {})
    meta = json.loads((tmp_path / "options.json").read_text())
    meta["width"] = 8
    (tmp_path / "options.json").write_text(json.dumps(meta))
    with pytest.raises(UserError, match="weights.pt.*options.json"):
        load_model(tmp_path)


def test_load_corrupt_weights_is_a_user_error(tmp_path):
    save_model(tmp_path, TransformNet(128, width=4), {})
    data = (tmp_path / "weights.pt").read_bytes()
    (tmp_path / "weights.pt").write_bytes(data[: len(data) // 2])
    with pytest.raises(UserError, match="weights.pt"):
        load_model(tmp_path)


class _NotATensor:
    """A custom class: saving it pickles code references that weights_only refuses."""

    def __init__(self) -> None:
        self.payload = "anything"


def test_pickled_objects_are_refused(tmp_path):
    save_model(tmp_path, TransformNet(128, width=4), {})
    state = torch.load(tmp_path / "weights.pt", weights_only=True)
    state["evil"] = _NotATensor()
    torch.save(state, tmp_path / "weights.pt")
    with pytest.raises(UserError, match="weights.pt"):
        load_model(tmp_path)


def test_the_default_width_is_sized_for_the_device_and_a_model_keeps_its_own(tmp_path):
    from pipeline.models.transform_options import default_width
    assert default_width("cpu") == 16 and default_width("cuda") == 32
    assert default_width("cpu", tmp_path) == 16                    # no model there yet
    (tmp_path / "options.json").write_text(json.dumps({"width": 32, "model_type": "transform"}))
    assert default_width("cpu", tmp_path) == 32                    # continued as it was trained
    (tmp_path / "options.json").write_text("{not json")
    assert default_width("cuda", tmp_path) == 32
