"""Training on real faces with a tiny network: it learns, resumes exactly, runs under DDP."""
import json
import os
import shutil
import socket
import subprocess
import sys

import numpy as np
import pytest
import torch

from pipeline.models.store import load_model
from tests.conftest import AOC, ROOT, ffmpeg, run_cli, snapshot

pytestmark = pytest.mark.slow      # runs commands end to end: not in the quick selection

TINY = ["--width", "8", "--batch-size", "2", "--n-best", "4", "--save-every", "4", "--preview-every", "4"]


@pytest.fixture(scope="module")
def base_ws(tmp_path_factory, short_clip):
    """dst: 24 frames of one clip, src: 24 frames of the other, extracted once."""
    root = tmp_path_factory.mktemp("train")
    aoc = root / "aoc_24.mp4"
    subprocess.run([ffmpeg(), "-v", "error", "-i", str(AOC), "-frames:v", "24", "-c:v", "mpeg4", "-q:v", "3",
                    str(aoc)], check=True)
    ws = root / "ws"
    assert run_cli("extract", "--input", short_clip, "--workspace", ws).returncode == 0
    assert run_cli("extract", "--input", aoc, "--set", "src", "--workspace", ws).returncode == 0
    return ws


def _log(ws):
    return [json.loads(line) for line in (ws / "model" / "log.jsonl").read_text().splitlines()]


def _train(ws, *extra):
    res = run_cli("train", "--workspace", ws, *TINY, *extra)
    assert res.returncode == 0, res.stderr
    return res


def test_loss_falls_and_the_model_is_complete(ws):
    res = _train(ws, "--iterations", "30", "--alpha-ramp", "0", "--lr", "3e-3")
    losses = [r["loss"] for r in _log(ws) if "loss" in r]
    assert len(losses) == 30
    assert np.mean(losses[-5:]) < 0.8 * np.mean(losses[:5]), losses
    model = ws / "model"
    for name in ("weights.pt", "options.json", "checkpoint.pt", "preview.jpg", "history/preview_000028.jpg"):
        assert (model / name).is_file(), name
    model_, options = load_model(model)
    net = model_.network
    assert options["resolution"] == 128 and options["face_type"] == "full" and options["iteration"] == 30
    out = net(torch.rand(1, 3, 128, 128))
    assert out.shape == (1, 3, 128, 128)
    import cv2
    preview = cv2.imread(str(model / "preview.jpg"))
    assert preview.shape[:2] == (4 * 128, 3 * 128)      # rows: dst | output | closest src
    assert "train: 200 dst" not in res.stderr and "dst faces (content)" in res.stderr
    assert "device cpu" in res.stderr and "features dlib" in res.stderr
    # the int8 ranges convert would compute from these weights and dst faces, stored for it
    assert "int8 calibration for convert stored" in res.stderr
    from pipeline.models.calibration import calibration_crops
    from pipeline.workspace.store import Workspace
    with Workspace(ws) as w:
        faces = calibration_crops(w, w.faces_as_edited("dst"), 128)
    description = model_.predictor(torch.device("cpu"), "auto", faces).description
    assert "stored by train" in description, description


def test_stopping_and_resuming_gives_the_same_losses(ws, tmp_path):
    straight = tmp_path / "straight"
    shutil.copytree(ws, straight)
    _train(straight, "--iterations", "8")
    _train(ws, "--iterations", "8", "--stop-at", "4")
    assert len(_log(ws)) == 4
    res = _train(ws, "--iterations", "8")
    assert "resuming at iteration 4" in res.stderr
    a = [r for r in _log(straight) if "loss" in r]
    b = [r for r in _log(ws) if "loss" in r]
    assert [r["iteration"] for r in b] == list(range(1, 9))
    # Here a resumed run repeats the straight one bit for bit, but a CI machine once differed by 5e-5 (relative,
    # content loss at iteration 8): float rounding between processes, grown over 4 steps. Real resume bugs are far
    # larger: not restoring Adam's state, the batch sampler or the degradation generator moved some loss by
    # 1e-1, 1.3e-1 and 2.4e-2 within these 4 iterations (measured by disabling each restore in turn).
    for x, y in zip(a, b):
        for key in ("loss", "content", "style", "light", "identity"):
            assert x[key] == pytest.approx(y[key], rel=1e-3, abs=1e-7), (key, x, y)


def test_changed_settings_need_fresh_and_fresh_keeps_the_old_model(ws):
    _train(ws, "--iterations", "2")
    before = snapshot(ws / "model")
    res = run_cli("train", "--workspace", ws, *TINY, "--iterations", "4", "--features", "dlib", "--width", "16")
    assert res.returncode != 0 and "--fresh" in res.stderr and "width 8 -> 16" in res.stderr
    assert snapshot(ws / "model") == before
    res = run_cli("train", "--workspace", ws, *TINY[2:], "--width", "16", "--iterations", "2", "--fresh")
    assert res.returncode == 0, res.stderr
    old = [p for p in ws.iterdir() if p.name.startswith("model-old-")]
    assert len(old) == 1 and snapshot(old[0]) == before


def test_missing_src_set_and_corrupt_checkpoint_are_clear_errors(ws, tmp_path, short_clip):
    only_dst = tmp_path / "only_dst"
    assert run_cli("extract", "--input", short_clip, "--workspace", only_dst).returncode == 0
    res = run_cli("train", "--workspace", only_dst, *TINY, "--iterations", "2")
    assert res.returncode != 0 and "no src faces" in res.stderr and "Traceback" not in res.stderr
    assert not (only_dst / "model").exists()
    _train(ws, "--iterations", "2")
    (ws / "model" / "checkpoint.pt").write_bytes(b"not a checkpoint")
    res = run_cli("train", "--workspace", ws, *TINY, "--iterations", "4")
    assert res.returncode != 0 and "checkpoint.pt" in res.stderr and "Traceback" not in res.stderr


def test_the_256_stage_grows_from_the_128_model_and_trains_only_the_new_branch(ws):
    _train(ws, "--iterations", "2")
    small = load_model(ws / "model")[0].network
    _train(ws, "--iterations", "2", "--resolution", "256")
    big_model, options = load_model(ws / "model")
    big = big_model.network
    assert options["resolution"] == 256 and (ws / "model" / "base_128" / "weights.pt").is_file()
    small_state = small.state_dict()
    big_state = big.state_dict()
    shared = [k for k in small_state if k.startswith("base.")]        # the 128 model's multi-scale body
    assert shared and all(k in big_state for k in shared)
    for k in shared:                                                  # frozen: unchanged by 256 training
        assert torch.equal(big_state[k], small_state[k]), k
    assert torch.equal(big_state["base_head.weight"], small_state["head.weight"])
    new = [k for k in big_state if k.split(".")[0] in ("branch", "join", "head")]
    assert new and not any(k in small_state and k.split(".")[0] != "head" for k in new)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_processes_under_torchrun_on_gloo(ws):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    res = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
                          "--master_addr", "127.0.0.1", "--master_port", str(_free_port()),
                          str(ROOT / "main.py"), "train", "--workspace", str(ws), *TINY, "--iterations", "3"],
                         capture_output=True, text=True, timeout=600, env=env)
    assert res.returncode == 0, res.stderr[-2000:]
    log = _log(ws)
    assert [r["iteration"] for r in log if "loss" in r] == [1, 2, 3]      # rank 0 logs, once
    assert log[-1] == {"iteration": 3, "world_size": 2, "ranks_in_sync": True}
    assert (ws / "model" / "weights.pt").is_file()


def test_vgg19_features_with_weights_from_the_hub_cache(ws, tmp_path):
    from train.vgg19 import VGG19Features
    hub = tmp_path / "hub"
    (hub / "checkpoints").mkdir(parents=True)
    torch.manual_seed(0)
    torch.save(VGG19Features().state_dict(), hub / "checkpoints" / "vgg19-dcbb9e9d.pth")
    env_home = {"TORCH_HOME": str(tmp_path)}
    os.environ.update(env_home)
    try:
        res = run_cli("train", "--workspace", ws, *TINY, "--iterations", "2", "--features", "vgg19")
    finally:
        os.environ.pop("TORCH_HOME")
    assert res.returncode == 0, res.stderr
    assert "features vgg19 (content relu4_2, style relu3_1,relu4_1)" in res.stderr
    res = run_cli("train", "--workspace", ws, *TINY, "--iterations", "2", "--features", "vgg19", "--fresh")
    assert res.returncode != 0 and "vgg19-dcbb9e9d.pth" in res.stderr and "Traceback" not in res.stderr


# ---------------------------------------------------------------------- failures it must notice


def test_a_diverging_run_stops_and_keeps_the_last_good_model(small_ws):
    shutil.rmtree(small_ws / "model")
    _train(small_ws, "--iterations", "2", "--n-best", "2")
    weights = (small_ws / "model" / "weights.pt").read_bytes()
    res = run_cli("train", "--workspace", small_ws, *TINY, "--n-best", "2", "--iterations", "40", "--lr", "1e6")
    assert res.returncode == 1
    assert "diverged" in res.stderr and "checkpoint of iteration 2" in res.stderr and "Traceback" not in res.stderr
    assert (small_ws / "model" / "weights.pt").read_bytes() == weights
    assert json.loads((small_ws / "model" / "options.json").read_text())["iteration"] == 2
    last = _log(small_ws)[-1]
    assert "diverged" in last and last["iteration"] < 40


def test_a_run_that_diverges_at_once_saves_no_model(small_ws):
    shutil.rmtree(small_ws / "model")
    res = run_cli("train", "--workspace", small_ws, *TINY, "--n-best", "2", "--iterations", "40", "--lr", "1e6")
    assert res.returncode == 1 and "no model was saved" in res.stderr
    assert not (small_ws / "model" / "weights.pt").exists()
    res = run_cli("convert", "--workspace", small_ws)
    assert res.returncode != 0 and "no trained model" in res.stderr


def test_content_extra_of_another_face_type_is_refused(small_ws, tmp_path):
    other = tmp_path / "whole"
    from tests.conftest import CLIP6
    assert run_cli("extract", "--input", CLIP6, "--size", "128", "--face-type", "whole",
                   "--workspace", other).returncode == 0
    res = run_cli("train", "--workspace", small_ws, *TINY, "--n-best", "2", "--iterations", "1", "--fresh",
                  "--content-extra", other)
    assert res.returncode != 0 and "Traceback" not in res.stderr
    assert "--content-extra" in res.stderr and "'whole'" in res.stderr and "'full'" in res.stderr


def test_ranks_that_disagree_are_an_error():
    from pipeline.training.loop import ranks_agree
    a = torch.tensor([1.0, 2.0], dtype=torch.float64)
    assert ranks_agree([a, a.clone()]) and not ranks_agree([a, a + 1e-3])


def _torchrun(ws, *args):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
                           "--master_addr", "127.0.0.1", "--master_port", str(_free_port()),
                           str(ROOT / "main.py"), "train", "--workspace", str(ws), *TINY, *args],
                          capture_output=True, text=True, timeout=600, env=env)


def test_two_processes_resume_exactly(small_ws, tmp_path):
    """Every process's batches and random views continue where they stopped (not rank 0's only)."""
    shutil.rmtree(small_ws / "model")
    straight = tmp_path / "straight"
    shutil.copytree(small_ws, straight)
    res = _torchrun(straight, "--n-best", "2", "--iterations", "4", "--save-every", "2")
    assert res.returncode == 0, res.stderr[-2000:]
    res = _torchrun(small_ws, "--n-best", "2", "--iterations", "4", "--save-every", "2", "--stop-at", "2")
    assert res.returncode == 0, res.stderr[-2000:]
    res = _torchrun(small_ws, "--n-best", "2", "--iterations", "4", "--save-every", "2")
    assert res.returncode == 0, res.stderr[-2000:]
    assert "resuming at iteration 2" in res.stderr and "written by" not in res.stderr
    a = [r for r in _log(straight) if "loss" in r]
    b = [r for r in _log(small_ws) if "loss" in r]
    assert [r["iteration"] for r in b] == [1, 2, 3, 4]
    # rank 1's batches after the resume change the shared weights: with only rank 0's streams
    # restored (the old behaviour), the content loss at iteration 4 differed by 2.1e-2 (measured)
    for x, y in zip(a, b):
        for key in ("loss", "content", "style", "identity"):
            assert x[key] == pytest.approx(y[key], rel=1e-3, abs=1e-7), (key, x, y)


_AUDIT = """
import runpy, sys
out, argv = sys.argv[1], sys.argv[2:]
seen = []
def hook(event, args):
    name = str(args[0]) if event == "import" else ""
    # main.py declares every command's options and kinds (evaluate.options: dataclasses; evaluate.backends: the
    # judges' registry, names and a lazy import path; no network code either)
    if name.startswith("evaluate.") and name not in ("evaluate.options", "evaluate.backends"):
        seen.append("import " + name)
    elif event == "open" and "graph_final" in str(args[0]):
        seen.append("open " + str(args[0]))
sys.addaudithook(hook)
sys.argv = argv
try:
    runpy.run_path(argv[0], run_name="__main__")
finally:
    with open(out, "w") as f:
        f.write("\\n".join(["ran"] + seen))
"""


def test_a_training_run_never_loads_the_held_apart_network(small_ws, tmp_path):
    """Evaluate judges identity also with FaceNet; training may never import it or read its file."""
    seen = tmp_path / "seen.txt"
    res = subprocess.run([sys.executable, "-c", _AUDIT, str(seen), str(ROOT / "main.py"), "train", "--workspace",
                          str(small_ws), *TINY, "--iterations", "2", "--fresh"], capture_output=True, text=True,
                         cwd=ROOT, timeout=300)
    assert res.returncode == 0, res.stderr
    lines = seen.read_text().splitlines()
    assert lines == ["ran"], lines
