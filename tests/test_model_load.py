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
