"""A second model family plugs in through the registry alone: train and convert run it unchanged.

The family here is deliberately trivial (it learns one brightness gain), so the test is
about the interface: options, build, step, checkpoint, save, load and inference.
"""
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn

from convert.options import ConvertOptions
from convert.runner import run_convert
from pipeline.core.options import option
from pipeline.core.registry import Entry
from pipeline.core.video import FrameReader
from pipeline.models.interface import FaceModel, Predictor
from pipeline.models.store import load_model
from pipeline.registries import MODEL_TYPES
from pipeline.training.data import to_tensor
from pipeline.training.model_trainer import ModelTrainer
from tests.conftest import CLIP6
from train.backends import TRAINERS
from train.options import TrainOptions
from train.trainer import run_train

pytestmark = pytest.mark.slow


class GainNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.gain = nn.Parameter(torch.ones(()))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gain


class _Plain(Predictor):
    def __init__(self, net: nn.Module) -> None:
        self.net, self.description = net, "float (test family)"

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class GainModel(FaceModel):
    type_name = "gain"

    def __init__(self, net: GainNet) -> None:
        self.net = net

    @property
    def network(self) -> nn.Module:
        return self.net

    @property
    def resolution(self) -> int:
        return 128

    def architecture(self) -> dict[str, Any]:
        return {"resolution": 128}

    @classmethod
    def from_options(cls, options: dict[str, Any], source=None) -> "GainModel":
        return cls(GainNet())

    def predictor(self, device, precision, calibration) -> Predictor:
        return _Plain(self.net.to(device))


@dataclass
class GainOptions:
    resolution: int = option(128, choices=(128,), help="crop size")
    target: float = option(0.5, low=0, high=2, help="the brightness factor to learn")


class GainTrainer(ModelTrainer):
    def build(self) -> None:
        self._model = GainModel(GainNet().to(self.ctx.device))
        self.optimizer = torch.optim.SGD(self._model.net.parameters(), lr=self.ctx.lr)

    @property
    def model(self) -> GainModel:
        return self._model

    def architecture(self) -> dict[str, Any]:
        return {"resolution": 128}

    def options_json(self) -> dict[str, Any]:
        return {"target": self.ctx.model_options.target}

    def prepare(self) -> None:
        pass

    def step(self, idx, iteration, total, lr):
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        x = to_tensor(self.ctx.content.images[idx], self.ctx.device)
        loss = ((self._model.net(x) - x * self.ctx.model_options.target) ** 2).mean() * 100
        self.optimizer.zero_grad()
        loss.backward()
        self.optimizer.step()
        return {"loss": loss.item()}

    def state_dict(self) -> dict[str, Any]:
        return {"net": self._model.net.state_dict(), "optimizer": self.optimizer.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._model.net.load_state_dict(state["net"])
        self.optimizer.load_state_dict(state["optimizer"])

    def preview_rows(self, picks) -> list[np.ndarray]:
        with torch.no_grad():
            out = self._model.net(to_tensor(self.ctx.content.images[picks], self.ctx.device)).clamp(0, 1)
        out = (out.permute(0, 2, 3, 1).numpy() * 255 + 0.5).astype(np.uint8)
        return [np.hstack([self.ctx.content.images[i], o]) for i, o in zip(picks, out)]


@pytest.fixture
def gain_family():
    MODEL_TYPES.register(Entry("gain", "tests.test_model_interface:GainModel", "learns a brightness gain (test)",
                               parts={"options": "tests.test_model_interface:GainOptions"}))
    TRAINERS.register(Entry("gain", "tests.test_model_interface:GainTrainer", "its trainer (test)"))
    yield
    MODEL_TYPES.unregister("gain")
    TRAINERS.unregister("gain")


def test_a_second_family_trains_resumes_and_converts(gain_family, small_ws):
    opts = TrainOptions(workspace=small_ws, model="gain", iterations=40, batch_size=2, lr=0.01, lr_end=0.01,
                        save_every=10, preview_every=20, stop_at=20, fresh=True,
                        model_options=GainOptions(target=0.5))
    run_train(opts)
    opts.stop_at, opts.fresh = None, False
    summary = run_train(opts)                        # resumes at 20
    assert summary.start_iteration == 20 and summary.iterations_done == 40
    model, options = load_model(small_ws / "model")
    assert isinstance(model, GainModel) and options["model_type"] == "gain" and options["face_type"] == "full"
    assert model.net.gain.item() == pytest.approx(0.5, abs=0.02)
    out = small_ws / "gain.mp4"
    # the network's colours as generated: no colour transfer, no skin put on the dst's tone
    result = run_convert(ConvertOptions(workspace=small_ws, output=out, color="none", skin_tone=0.0, blend="alpha"))
    assert result.faces == 6
    before = [f.astype(float) for _, f in FrameReader(CLIP6, 512, 512)]
    after = [f.astype(float) for _, f in FrameReader(out, 512, 512)]
    centre = (slice(200, 300), slice(200, 300))                  # inside the face in every frame
    ratio = np.mean([a[centre].mean() / b[centre].mean() for a, b in zip(after, before)])
    assert 0.45 < ratio < 0.6, ratio                              # the face is half as bright
