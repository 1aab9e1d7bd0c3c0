"""convert's network in a child process (``convert.network_process``): the same video as in one process,
no torch in the parent, and a child that fails or dies is one clear line with nothing written."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from pipeline.core.video import FrameReader
from pipeline.models.store import save_model
from pipeline.models.transform import TransformModel
from pipeline.models.transform_net import TransformNet
from tests.conftest import ROOT, run_cli, snapshot

SIZE = 512


@pytest.fixture(scope="module")
def ws(tmp_path_factory, short_clip):
    ws = tmp_path_factory.mktemp("network_process") / "ws"
    res = run_cli("extract", "--input", short_clip, "--workspace", ws)
    assert res.returncode == 0, res.stderr
    torch.manual_seed(0)
    net = TransformNet(128, width=4)
    with torch.no_grad():
        net.head.weight.mul_(0.3)          # a visible change to the faces, as a trained model makes
    save_model(ws / "model", TransformModel(net), {"face_type": "full", "iteration": 0})
    return ws


def _frames(path: Path) -> list[np.ndarray]:
    return [f for _, f in FrameReader(path, SIZE, SIZE)]


def test_the_child_renders_what_one_process_renders(ws, monkeypatch):
    """Int8 built in the child from the calibration crops the parent sends, every default step on: the same
    decoded frames as with the network in this process."""
    from convert import runner
    from convert.options import ConvertOptions
    runner.run_convert(ConvertOptions(workspace=ws, output=ws / "child.mp4", end=10))
    monkeypatch.setattr(runner, "NETWORK_PROCESS", False)
    runner.run_convert(ConvertOptions(workspace=ws, output=ws / "here.mp4", end=10))
    child, here = _frames(ws / "child.mp4"), _frames(ws / "here.mp4")
    assert len(child) == len(here) == 10
    assert all(np.array_equal(a, b) for a, b in zip(child, here))
    # and the faces were swapped: the network's change shows in the result (the test can fail)
    original = _frames(Path(runner.Renderer(ConvertOptions(workspace=ws)).input_path))[:10]
    assert max(float(np.abs(a.astype(np.int16) - b).mean()) for a, b in zip(child, original)) > 0.5


def test_the_parent_process_never_imports_torch(ws):
    """Torch's import is the child's: the parent's start-up runs beside it (``-X importtime`` lists every
    module a process imports)."""
    res = subprocess.run([sys.executable, "-X", "importtime", str(ROOT / "main.py"), "convert", "-w", str(ws),
                          "-o", str(ws / "imports.mp4"), "--end", "4"], capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]
    imported = {ln.rsplit("|", 1)[-1].strip() for ln in res.stderr.splitlines() if ln.startswith("import time:")}
    assert "numpy" in imported and "cv2" in imported          # the listing works
    assert "torch" not in imported, sorted(m for m in imported if m.startswith("torch"))[:5]
    # the child's log line (model, device, int8) still reaches the terminal
    assert "convert: model " in res.stderr and "int8" in res.stderr


def test_a_model_the_child_cannot_load_is_one_line(ws, tmp_path):
    """Weights that are not a state dict: the child's UserError becomes convert's one error line; the
    workspace and the previous result are as they were, no temp video is left."""
    import shutil
    bad = tmp_path / "ws"
    shutil.copytree(ws, bad, ignore=shutil.ignore_patterns("*.mp4"))
    (bad / "model" / "weights.pt").write_bytes(b"not a torch file")
    (bad / "result.mp4").write_bytes(b"the artist's previous render")
    before = snapshot(bad)
    res = run_cli("convert", "--workspace", bad)
    errors = [ln for ln in res.stderr.splitlines() if ln.startswith("error:")]
    assert res.returncode != 0 and len(errors) == 1, res.stderr[-2000:]
    assert "weights" in errors[0] and "unreadable" in errors[0] and "Traceback" not in res.stderr
    assert snapshot(bad) == before


def _child_of(pid: int) -> int | None:
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        if ppid == pid and b"convert.network_process" in cmdline:
            return int(entry.name)
    return None


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="finds the child through /proc")
def test_a_child_killed_mid_render_is_one_line_and_writes_nothing(ws):
    """The network process killed (the OOM killer, say) while frames render: one error line, exit non-zero,
    the previous result intact, no temp video left."""
    old = ws / "result.mp4"
    old.write_bytes(b"the artist's previous render")
    proc = subprocess.Popen([sys.executable, str(ROOT / "main.py"), "convert", "-w", str(ws), "--batch-size", "1",
                             "--preset", "veryslow"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline, child = time.time() + 120, None
    while time.time() < deadline and proc.poll() is None:
        if list(ws.glob(".result.*.tmp.mp4")):          # rendering: the model is loaded, frames are coming
            child = _child_of(proc.pid)
            break
        time.sleep(0.05)
    assert child is not None, "no network process found while convert rendered"
    os.kill(child, signal.SIGKILL)
    _, err = proc.communicate(timeout=120)
    errors = [ln for ln in err.splitlines() if ln.startswith("error:")]
    assert proc.returncode != 0 and len(errors) == 1, err[-2000:]
    assert "network process ended unexpectedly" in errors[0] and "signal 9" in errors[0]
    assert "Traceback" not in err
    assert old.read_bytes() == b"the artist's previous render"
    assert not list(ws.glob(".*.tmp*"))


def test_the_parent_plans_with_the_models_facts_before_the_child_has_loaded(ws):
    """Resolution, options and the family's convert defaults come from ``options.json`` at once (no wait on
    torch's import in the child); ``ready`` turns true once the child has loaded, and its facts agree."""
    from convert.network_process import NetworkProcess
    network = NetworkProcess(ws / "model", "cpu", 8)
    try:
        started = time.perf_counter()
        assert network.resolution == 128 and network.meta["model_type"] == "transform"
        assert network.convert_defaults == {}
        assert network._facts is None and time.perf_counter() - started < 0.5     # nothing waited for
        deadline = time.time() + 120
        while not network.ready() and time.time() < deadline:
            time.sleep(0.02)
        assert network._facts is not None and network._facts["resolution"] == 128
        assert network._facts["device"] == "cpu"
    finally:
        network.close()


def test_each_model_familys_convert_defaults_are_readable_without_torch():
    """The registry's ``convert_defaults`` part (what the parent reads) is the model class's own."""
    from pipeline.registries import MODEL_TYPES
    for name in MODEL_TYPES.names():
        assert MODEL_TYPES.load(name, "convert_defaults") == MODEL_TYPES.load(name).convert_defaults, name
    assert MODEL_TYPES.load("df", "convert_defaults") == {"chroma_smooth": 0.0, "part_colour": 0.0}


def test_no_child_where_the_parent_cannot_plan_with_the_options_file(ws, tmp_path):
    """No readable options.json (the in-process load says what is wrong), or a family registered at run time
    without the torch-free convert defaults (the child would not know it): the model loads in-process."""
    from convert.network_process import NetworkProcess
    from pipeline.core.registry import Entry
    from pipeline.registries import MODEL_TYPES
    assert NetworkProcess.start(tmp_path / "no_model", "cpu", 8) is None
    import json
    import shutil
    plugin = tmp_path / "plugin"
    shutil.copytree(ws / "model", plugin)
    meta = json.loads((plugin / "options.json").read_text())
    (plugin / "options.json").write_text(json.dumps({**meta, "model_type": "plugin_family"}))
    MODEL_TYPES.register(Entry("plugin_family", "pipeline.models.transform:TransformModel", "a plugin (test)"))
    try:
        assert NetworkProcess.start(plugin, "cpu", 8) is None
    finally:
        MODEL_TYPES.unregister("plugin_family")
    child = NetworkProcess.start(ws / "model", "cpu", 8)
    assert child is not None
    child.close()


def test_a_cluster_driver_plans_with_the_facts_the_loaded_model_has(ws, tmp_path):
    """``ModelFacts`` (a cluster's driver: no torch, no network) says what the loaded model says: resolution,
    options, the family's convert defaults and whether it paints its own mask, for each family; without the
    weights file it gives way to the in-process load, whose error says what is wrong."""
    from convert.network import Network
    from convert.network_process import ModelFacts
    from pipeline.models.autoencoder import DFModel
    from pipeline.models.autoencoder_net import build
    df_dir = tmp_path / "df"
    torch.manual_seed(0)
    save_model(df_dir, DFModel(build("df", 64, ae_dims=8, e_dims=4, d_dims=4, d_mask_dims=2)),
               {"face_type": "full", "iteration": 1})
    for model_dir in (ws / "model", df_dir):
        facts = ModelFacts.read(model_dir)
        loaded = Network(model_dir, "cpu", 1)
        loaded.prepare("float", [])
        assert facts is not None and facts.plans_only
        assert facts.resolution == loaded.resolution and facts.meta["model_type"] == loaded.meta["model_type"]
        assert facts.convert_defaults == loaded.convert_defaults
        assert facts.learned_mask == loaded.learned_mask, model_dir
    assert ModelFacts.read(tmp_path / "no_model") is None
    (df_dir / "weights.pt").unlink()
    assert ModelFacts.read(df_dir) is None
