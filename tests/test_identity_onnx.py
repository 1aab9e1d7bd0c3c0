"""Identity descriptors in ONNX Runtime on the CPU: the same numbers as the PyTorch port, without importing torch."""
from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from pipeline.core import device as device_mod
from pipeline.core.weights import model_path
from pipeline.faces import face_net_onnx
from pipeline.faces.identity import IdentityEncoder

ROOT = Path(__file__).resolve().parents[1]

_DESCRIBE = """
import json, sys
import numpy as np
from pipeline.faces.identity import IdentityEncoder
chips = [np.random.default_rng(i).integers(0, 256, (150, 150, 3), dtype=np.uint8) for i in range(5)]
enc = IdentityEncoder("auto", 4, 1)
print(json.dumps({"torch": "torch" in sys.modules, "source": enc.description,
                  "descriptors": enc.describe_chips(chips).tolist()}))
"""


def _chips(n: int = 5) -> list[np.ndarray]:
    return [np.random.default_rng(i).integers(0, 256, (150, 150, 3), dtype=np.uint8) for i in range(n)]


def _torch_port(chips: list[np.ndarray]) -> np.ndarray:
    import torch

    from pipeline.faces.face_net import load_face_net
    net = load_face_net("cpu")
    with torch.inference_mode():
        return net(torch.from_numpy(np.stack(chips)).permute(0, 3, 1, 2).float()).double().numpy()


def _describe_in_a_new_process(cache: Path) -> dict:
    res = subprocess.run([sys.executable, "-c", _DESCRIBE], cwd=ROOT, capture_output=True, text=True, timeout=300,
                         env={**os.environ, face_net_onnx.CACHE_ENV: str(cache), "PYTHONPATH": str(ROOT)})
    assert res.returncode == 0, res.stderr[-2000:]
    return {**json.loads(res.stdout.strip().splitlines()[-1]), "stderr": res.stderr}


def test_descriptors_match_the_pytorch_port_and_a_second_process_never_imports_torch(tmp_path):
    want = _torch_port(_chips())
    first = _describe_in_a_new_process(tmp_path)           # exports the graph (torch is imported for that)
    graphs = list(tmp_path.glob("dlib_face_net_*.onnx"))
    assert len(graphs) == 1 and str(graphs[0]) in first["source"], first["stderr"][-1500:]
    assert [p.name for p in tmp_path.iterdir()] == [graphs[0].name], "nothing staged is left beside it"
    second = _describe_in_a_new_process(tmp_path)          # reads it
    assert second["torch"] is False
    for run in (first, second):
        assert np.abs(np.array(run["descriptors"]) - want).max() <= 1e-4
    assert "ONNX Runtime" in second["source"]


def test_a_damaged_cached_graph_is_exported_again(tmp_path, monkeypatch, caplog):
    monkeypatch.setenv(face_net_onnx.CACHE_ENV, str(tmp_path))
    path = face_net_onnx.graph_path(model_path("dlib-face-recognition"))
    path.write_bytes(b"not an onnx graph")
    with caplog.at_level(logging.WARNING, logger="identity"):
        enc = IdentityEncoder("cpu", 16, 1)
    assert "unreadable" in caplog.text and str(path) in caplog.text
    assert path.stat().st_size > 1_000_000                 # exported again over the damaged file
    assert np.abs(enc.describe_chips(_chips(2)) - _torch_port(_chips(2))).max() <= 1e-4


def test_a_cache_that_cannot_be_written_runs_the_graph_from_memory(tmp_path, monkeypatch, caplog):
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    monkeypatch.setenv(face_net_onnx.CACHE_ENV, str(blocker / "cache"))     # its parent is a file: no folder there
    with caplog.at_level(logging.WARNING, logger="identity"):
        enc = IdentityEncoder("cpu", 16, 1)
    assert "cannot keep the face-recognition graph" in caplog.text and face_net_onnx.CACHE_ENV in caplog.text
    assert "memory" in enc.description
    assert np.abs(enc.describe_chips(_chips(2)) - _torch_port(_chips(2))).max() <= 1e-4


def test_a_full_disk_under_the_cache_runs_the_graph_from_memory(tmp_path, monkeypatch, caplog):
    from pipeline.core.files import DiskFullError

    def full(path, data):
        raise DiskFullError(tmp_path, "nothing was written", path.name)
    monkeypatch.setenv(face_net_onnx.CACHE_ENV, str(tmp_path))
    monkeypatch.setattr(face_net_onnx, "write_atomic", full)
    with caplog.at_level(logging.WARNING, logger="identity"):
        enc = IdentityEncoder("cpu", 16, 1)
    assert "cannot keep the face-recognition graph" in caplog.text and "memory" in enc.description
    assert not list(tmp_path.glob("*.onnx"))
    assert np.abs(enc.describe_chips(_chips(2)) - _torch_port(_chips(2))).max() <= 1e-4


def test_an_export_that_disagrees_with_the_port_falls_back_to_pytorch(tmp_path, monkeypatch, caplog):
    monkeypatch.setenv(face_net_onnx.CACHE_ENV, str(tmp_path))
    real = face_net_onnx._session

    class Off:
        def __init__(self, model, threads):
            self.session = real(model, threads)

        def run(self, names, feeds):
            return [self.session.run(names, feeds)[0] + 0.01]
    monkeypatch.setattr(face_net_onnx, "_session", Off)
    with caplog.at_level(logging.WARNING, logger="identity"):
        enc = IdentityEncoder("cpu", 16, 1)
    assert "differs from the PyTorch port" in caplog.text and "using the PyTorch port" in caplog.text
    assert "PyTorch port)" in enc.description and not list(tmp_path.glob("*.onnx"))
    assert np.abs(enc.describe_chips(_chips(2)) - _torch_port(_chips(2))).max() <= 1e-6


@pytest.mark.parametrize(("text", "gpu"), [
    ("cuda: Optional[str] = None\nhip: Optional[str] = None\n", False),
    ("cuda: Optional[str] = '12.4'\nhip: Optional[str] = None\n", True),
    ("cuda = None\nhip = '6.2.41133'\n", True),
    ("__version__ = '2.13.0'\n", True),                      # nothing to read: torch decides
])
def test_a_gpu_build_of_torch_is_told_from_its_version_file(tmp_path, monkeypatch, text, gpu):
    (tmp_path / "version.py").write_text(text)
    monkeypatch.setattr(device_mod.importlib.util, "find_spec",
                        lambda name: SimpleNamespace(submodule_search_locations=[str(tmp_path)]))
    assert device_mod.torch_build_has_gpu() is gpu
    assert device_mod.on_cpu_only("auto") is (not gpu)
    assert device_mod.on_cpu_only("cpu") is True and device_mod.on_cpu_only("cuda") is False
