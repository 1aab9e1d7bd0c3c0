"""The src person's face enhancer (issue 26): its degradations, its model file, its training, and that it restores."""
import json

import cv2
import numpy as np
import pytest
import torch

from enhance.degrade import FAULTS, blotch, degrade, plasticise, soften
from enhance.options import EnhanceOptions
from enhance.training import fine, run_enhance
from pipeline.core.errors import UserError
from pipeline.models.enhancer import EnhancerModel, EnhancerNet, load_enhancer
from pipeline.workspace import layout
from tests.conftest import ROOT, clean_error, run_cli

FACE = ROOT.parent / "shared" / "data" / "photos"


def _face(side: int = 128) -> np.ndarray:
    """A real face, cropped and resized (RGB uint8)."""
    path = sorted(FACE.glob("*.jpg"))[0]
    img = cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)
    h, w = img.shape[:2]
    s = min(h, w)
    return cv2.resize(img[(h - s) // 2:(h + s) // 2, (w - s) // 2:(w + s) // 2], (side, side),
                      interpolation=cv2.INTER_AREA)


def _detail(img: np.ndarray) -> float:
    f = img.astype(np.float32)
    return float(np.abs(f - cv2.blur(f, (3, 3))).mean())


def test_each_fault_is_what_it_says():
    face, rng = _face(), np.random.default_rng(0)
    assert _detail(soften(face, rng)) < 0.8 * _detail(face)                # softer
    assert _detail(plasticise(face, rng)) < 0.9 * _detail(face)            # less fine texture
    b = blotch(face, rng).astype(np.float32) - face
    assert 1.0 < np.abs(b).mean() < 15 and _detail(b.clip(-255, 255)) < 1.0   # a smooth colour field
    for fault in FAULTS:
        out = fault(face, np.random.default_rng(1))
        assert out.shape == face.shape and out.dtype == np.uint8 and not np.array_equal(out, face)
    assert np.array_equal(degrade(face, rng, clean_share=1.0), face)
    assert not np.array_equal(degrade(face, rng, clean_share=0.0), face)


def test_an_untrained_enhancer_leaves_the_face_as_it_is(tmp_path):
    net = EnhancerNet(64, 8)
    x = torch.rand(2, 3, 64, 64)
    assert torch.equal(net(x), x)
    from pipeline.models.store import save_model
    save_model(tmp_path, EnhancerModel(net), {"iteration": 0})
    predictor, meta = load_enhancer(tmp_path, torch.device("cpu"))
    assert meta["model_type"] == "enhancer" and meta["resolution"] == 64
    assert torch.allclose(predictor(x), x)
    meta["width"] = 4096
    (tmp_path / "options.json").write_text(json.dumps(meta))
    with pytest.raises(UserError, match="width 4096 is out of range"):
        load_enhancer(tmp_path, torch.device("cpu"))


def test_the_fine_detail_of_a_flat_image_is_zero():
    assert torch.allclose(fine(torch.full((1, 3, 8, 8), 0.3)), torch.zeros(1, 3, 8, 8), atol=1e-7)


@pytest.mark.slow
def test_enhance_learns_to_restore_the_src_faces_and_resumes(small_ws):
    """A short run at 64 px: softened faces (drawn with seeds training never used) come out nearer the real ones
    than they went in (softness is what it learns first; plastic skin and blotches take longer: see the README),
    and a second run continues the first."""
    opts = EnhanceOptions(workspace=small_ws, iterations=300, batch_size=8, resolution=64, width=8,
                          save_every=150, preview_every=150, stop_at=150, lr=3e-3, lr_end=1e-3)
    first = run_enhance(opts)
    assert first.iterations_done == 150
    folder = layout.enhancer_dir(small_ws)
    assert (folder / "weights.pt").is_file() and (folder / "preview.jpg").is_file()
    opts.stop_at = None
    second = run_enhance(opts)
    assert second.start_iteration == 150 and second.iterations_done == 300
    predictor, meta = load_enhancer(folder, torch.device("cpu"))
    assert meta["model_type"] == "enhancer" and meta["resolution"] == 64 and meta["src_faces"] == 2
    from pipeline.training.data import to_tensor
    src = sorted((small_ws / "data_src" / "aligned").iterdir())
    faces = [cv2.resize(cv2.cvtColor(cv2.imread(str(p)), cv2.COLOR_BGR2RGB), (64, 64), interpolation=cv2.INTER_AREA)
             for p in src]
    before, after = [], []
    for seed in range(1000, 1016):
        for face in faces:
            bad = soften(face, np.random.default_rng(seed))
            with torch.no_grad():
                out = predictor(to_tensor(bad[None], torch.device("cpu")))[0].permute(1, 2, 0).numpy() * 255
            before.append(np.abs(bad.astype(np.float32) - face).mean())
            after.append(np.abs(out - face).mean())
    # an untrained enhancer is the identity (ratio 1); this run restores 5-9 % of the softening, depending on how
    # many threads add up its sums (0.945 on one, 0.913 on two)
    assert np.mean(after) < 0.97 * np.mean(before), (np.mean(after), np.mean(before))


def test_enhance_without_src_faces_is_one_line_and_writes_nothing(tmp_path):
    ws = tmp_path / "ws"
    res = run_cli("enhance", "--workspace", ws, "--iterations", "2")
    clean_error(res, str(ws))
    assert not ws.exists() or not layout.enhancer_dir(ws).exists()


def test_convert_refuses_an_enhancer_made_for_another_resolution_and_writes_nothing(small_ws):
    """The face model makes 128 px faces; an enhancer for 64 px ones is one line, the workspace as it was."""
    from pipeline.models.store import save_model
    from tests.conftest import snapshot
    save_model(layout.enhancer_dir(small_ws), EnhancerModel(EnhancerNet(64, 8)), {"iteration": 0})
    before = snapshot(small_ws)
    clean_error(run_cli("convert", "--workspace", small_ws), "restores 64 px faces", "128 px", "--enhance 0")
    assert snapshot(small_ws) == before
    assert run_cli("convert", "--workspace", small_ws, "--enhance", "0").returncode == 0


def _restoring_enhancer(tmp_path):
    """An enhancer whose correction is not zero (its head drawn at random), saved like a trained one."""
    torch.manual_seed(3)
    net = EnhancerNet(64, 8)
    torch.nn.init.normal_(net.head.weight, std=0.02)
    from pipeline.models.store import save_model
    save_model(tmp_path, EnhancerModel(net), {"iteration": 1})
    return net


def test_the_enhancer_runs_in_bfloat16_only_where_the_cpu_computes_it_and_stays_within_a_level(tmp_path, monkeypatch):
    from pipeline.models import cpu_bfloat16
    net = _restoring_enhancer(tmp_path)
    x = torch.rand(3, 3, 64, 64)
    with torch.inference_mode():
        want = net(x).clamp(0, 1)
    monkeypatch.setattr(cpu_bfloat16, "native", lambda device: True)
    fast, _ = load_enhancer(tmp_path, torch.device("cpu"))
    exact, _ = load_enhancer(tmp_path, torch.device("cpu"), "float")
    assert "bfloat16" in fast.description and exact.description == "float32"
    with torch.inference_mode():
        y, z = fast(x), exact(x)
    assert y.dtype == torch.float32 and y.is_contiguous()
    assert torch.allclose(z, want, atol=1e-5)
    assert (want - z).abs().max() < (want - y).abs().max() < 1.0 / 255     # bfloat16 moves it, by under a level
    monkeypatch.setattr(cpu_bfloat16, "native", lambda device: False)
    assert load_enhancer(tmp_path, torch.device("cpu"))[0].description == "float32"


def test_native_bfloat16_is_read_from_the_cpu_probes_and_never_claimed_off_the_cpu(monkeypatch):
    from pipeline.models import cpu_bfloat16
    for name in cpu_bfloat16._PROBES:
        monkeypatch.setattr(torch.cpu, name, lambda: False, raising=False)
    assert not cpu_bfloat16.native(torch.device("cpu"))
    monkeypatch.setattr(torch.cpu, cpu_bfloat16._PROBES[-1], lambda: True)
    assert cpu_bfloat16.native(torch.device("cpu"))
    assert not cpu_bfloat16.native(torch.device("cuda"))

    def broken() -> bool:
        raise RuntimeError("no cpuinfo")
    monkeypatch.setattr(torch.cpu, cpu_bfloat16._PROBES[-1], broken)
    assert not cpu_bfloat16.native(torch.device("cpu"))
    monkeypatch.delattr(torch.cpu, cpu_bfloat16._PROBES[-1])
    assert not cpu_bfloat16.native(torch.device("cpu"))
