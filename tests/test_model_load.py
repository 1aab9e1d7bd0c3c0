"""load_model(initialise=False): the file's tensors without paying for (or drawing random numbers for) an init."""
from __future__ import annotations

import pytest
import torch

from benchmarks.convert_profile import untrained_model
from pipeline.models.store import load_model


@pytest.mark.parametrize("kind", ["transform", "df", "liae"])
def test_a_model_loaded_without_initialising_is_the_same_model(tmp_path, kind):
    untrained_model(kind, tmp_path / "model")
    plain, _ = load_model(tmp_path / "model")
    rng = torch.get_rng_state()
    quick, meta = load_model(tmp_path / "model", initialise=False)
    assert torch.equal(torch.get_rng_state(), rng)              # no random numbers drawn
    assert meta["model_type"] == kind and not quick.network.training
    a, b = plain.network.state_dict(), quick.network.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert not any(t.is_meta for t in list(quick.network.parameters()) + list(quick.network.buffers()))


def test_initialising_draws_random_numbers(tmp_path):
    """The default path still initialises (a trainer that goes on keeps its random sequence as it was)."""
    untrained_model("transform", tmp_path / "model")
    rng = torch.get_rng_state()
    load_model(tmp_path / "model")
    assert not torch.equal(torch.get_rng_state(), rng)


@pytest.mark.parametrize("kind", ["transform", "df", "liae"])
@pytest.mark.parametrize("batch", [1, 8])
def test_the_inference_bound_is_never_below_the_measured_estimate(tmp_path, kind, batch):
    import json

    from pipeline.models.memory import estimate, inference_bound
    from pipeline.models.store import model_class
    untrained_model(kind, tmp_path / "model")
    options = json.loads((tmp_path / "model" / "options.json").read_text())
    measured, bound = estimate(model_class(kind), options, batch, False), inference_bound(model_class(kind), options,
                                                                                         batch)
    # measured: transform 1.00x, df 3.4-11x, liae 3.1-13x
    assert bound.parameters == measured.parameters and bound.total >= measured.total


def test_require_measures_only_when_the_bound_is_near_the_memory(monkeypatch):
    from pipeline.core import memory as machine
    from pipeline.core.errors import UserError
    from pipeline.models import memory
    from pipeline.models.transform import TransformModel
    options = {"resolution": 128, "width": 16, "skip": True}
    calls = []
    real = memory.estimate
    monkeypatch.setattr(memory, "estimate", lambda *a: calls.append(a) or real(*a))
    monkeypatch.setattr(machine, "machine_memory", lambda: machine.Memory(total=64 << 30, available=32 << 30))
    memory.require(TransformModel, options, 8, False, "cpu", "the model", "fix")
    assert calls == []                                       # plenty of memory: no meta forward pass
    monkeypatch.setattr(machine, "machine_memory", lambda: machine.Memory(total=64 << 20, available=1 << 20))
    with pytest.raises(UserError, match="needs about"):
        memory.require(TransformModel, options, 8, False, "cpu", "the model", "fix")
    assert len(calls) == 1                                   # near the limit: measured, then refused
