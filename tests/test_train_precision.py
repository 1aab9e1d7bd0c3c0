"""train --precision: bfloat16 autocast only on a CPU that computes it natively, with the style term in float32."""
import json
import logging

import numpy as np
import pytest
import torch

from pipeline.models import cpu_bfloat16
from pipeline.models.store import load_model
from pipeline.models.transform_net import TransformNet
from pipeline.models.transform_options import TransformOptions
from train import losses
from train.options import TrainOptions
from train.trainer import run_train

pytestmark = pytest.mark.slow      # trains (three tiny iterations, twice)


def _train(ws, precision, native, monkeypatch):
    """Train three iterations; the autocast the network's training passes ran under (None: none), and the dtypes
    of the style loss's inputs."""
    monkeypatch.setattr(cpu_bfloat16, "native", lambda device: native)
    seen: dict[str, list] = {"net": [], "style": []}
    forward, style_loss = TransformNet.forward, losses.style_loss

    def spied_forward(self, x):
        if torch.is_grad_enabled():           # training steps, not previews or calibration
            seen["net"].append(torch.get_autocast_dtype("cpu") if torch.is_autocast_enabled("cpu") else None)
        return forward(self, x)

    def spied_style(out, *args, **kwargs):
        seen["style"].append(out.dtype)
        return style_loss(out, *args, **kwargs)

    monkeypatch.setattr(TransformNet, "forward", spied_forward)
    monkeypatch.setattr(losses, "style_loss", spied_style)
    run_train(TrainOptions(workspace=ws, iterations=3, batch_size=2, save_every=3, preview_every=3,
                           precision=precision, fresh=True, model_options=TransformOptions(width=8, n_best=2)))
    log = [json.loads(line) for line in (ws / "model" / "log.jsonl").read_text().splitlines()]
    assert len(log) == 3 and all(np.isfinite(r["loss"]) for r in log)
    model, _ = load_model(ws / "model")
    assert {p.dtype for p in model.network.parameters()} == {torch.float32}     # weights stay float32
    return seen


def test_bfloat16_where_the_cpu_has_it_with_the_style_term_in_float32(small_ws, monkeypatch, caplog):
    with caplog.at_level(logging.INFO, logger="train"):
        seen = _train(small_ws, "auto", True, monkeypatch)
    assert seen["net"][-3:] == [torch.bfloat16] * 3       # the three steps (a memory check may run one before)
    assert seen["style"] and set(seen["style"]) == {torch.float32}
    assert "bfloat16 autocast" in caplog.text


@pytest.mark.parametrize("precision, native", [("float", True), ("auto", False)])
def test_float32_when_asked_or_where_the_cpu_lacks_it(small_ws, monkeypatch, caplog, precision, native):
    with caplog.at_level(logging.INFO, logger="train"):
        seen = _train(small_ws, precision, native, monkeypatch)
    assert len(seen["net"]) >= 3 and set(seen["net"]) == {None}
    assert "mixed precision" not in caplog.text
