"""``main.py export``: the model as DeepFaceLive's .dfm (ONNX), checked against what its loaders expect.

The contract (export/dfm.py has the sources): input ``in_face:0`` (N, R, R, 3) float32 BGR
0..1, R fixed; outputs, in this order, ``out_face_mask:0`` (N, R, R, 1), ``out_celeb_face:0``
(N, R, R, 3), ``out_celeb_face_mask:0`` (N, R, R, 1), float32 0..1; IR and opset that the
onnxruntime 1.15 bundled with DeepFaceLive reads.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from torch import nn

from export.dfm import DfmGraph, onnx_bytes, run_export
from export.options import ExportOptions
from pipeline.core.errors import UserError
from pipeline.core.images import read_rgb
from pipeline.models.interface import FaceModel, Predictor
from pipeline.models.store import load_model, save_model
from pipeline.models.transform import TransformModel
from pipeline.models.transform_net import TransformNet
from pipeline.workspace.store import Workspace
from tests.conftest import clean_error, run_cli, snapshot

IN = "in_face:0"
OUTS = ["out_face_mask:0", "out_celeb_face:0", "out_celeb_face_mask:0"]
#: What DeepFaceLive's onnxruntime (1.15.1) reads: ONNX IR up to 9, default-domain opsets up to 18
#: (at 19 it has no AveragePool or Reshape kernel).
MAX_IR, MAX_OPSET = 9, 18


def _session(data: bytes | Path, optimize: bool = True) -> ort.InferenceSession:
    options = ort.SessionOptions()
    if not optimize:
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    source = str(data) if isinstance(data, Path) else data
    return ort.InferenceSession(source, options, providers=["CPUExecutionProvider"])


def _assert_contract(session: ort.InferenceSession, r: int) -> None:
    """What DFMModel (DeepFaceLive) and deep_swapper (FaceFusion) read from the session."""
    inputs, outputs = session.get_inputs(), session.get_outputs()
    assert [i.name for i in inputs] == [IN]                       # one input: no morph_value
    shape = inputs[0].shape
    assert shape[1:] == [r, r, 3] and all(isinstance(d, int) for d in shape[1:3])   # H, W read as numbers
    assert isinstance(shape[0], str)                              # any batch
    assert inputs[0].type == "tensor(float)"
    assert [o.name for o in outputs] == OUTS
    assert [o.shape[1:] for o in outputs] == [[r, r, 1], [r, r, 3], [r, r, 1]]
    assert all(o.type == "tensor(float)" for o in outputs)


def _boost(ws: Path) -> TransformModel:
    """The workspace's tiny model with a strong learned change, so a channel or layout slip shows."""
    model, meta = load_model(ws / "model")
    assert isinstance(model, TransformModel)
    torch.manual_seed(1)
    with torch.no_grad():
        model.net.head.weight.normal_(0.0, 0.3)
        model.net.head.bias.copy_(torch.tensor([0.15, -0.10, 0.05]))      # a different shift per channel
    save_model(ws / "model", model, {k: meta[k] for k in ("face_type", "iteration")})
    return model


def _dst_faces(ws: Path, size: int, n: int) -> np.ndarray:
    """n real aligned dst faces of the workspace, RGB uint8 at the model's resolution."""
    import cv2
    with Workspace(ws) as w:
        rows = w.faces("dst", kept=True)[:n]
        faces = [read_rgb(w.aligned_path(r)) for r in rows]
    return np.stack([cv2.resize(f, (size, size), interpolation=cv2.INTER_AREA) for f in faces])


@pytest.mark.slow
def test_export_loads_as_dfm_and_matches_the_pytorch_predictor(small_ws):
    model = _boost(small_ws)
    r = model.resolution
    res = run_cli("export", "--workspace", small_ws)
    assert res.returncode == 0, res.stderr
    out = small_ws / "model.dfm"
    assert str(out) in res.stdout and "opset 12" in res.stdout
    proto = onnx.load(str(out))
    assert proto.ir_version <= MAX_IR and [(o.domain, o.version) for o in proto.opset_import] == [("", 12)]
    meta = {p.key: p.value for p in proto.metadata_props}
    assert meta["model_type"] == "transform" and meta["face_type"] == "full" and meta["resolution"] == "128"
    from pipeline.provenance.credentials import model_hash
    # the weight hash convert's content credentials state, and the consent status
    assert meta["model_sha256"] == model_hash(small_ws / "model") and meta["consent_recorded"] == "no"
    assert json.loads(meta["consent"]) == {"recorded": False, "sets": [], "documents": []}
    session = _session(out)
    _assert_contract(session, r)

    faces = _dst_faces(small_ws, r, 3)                                    # RGB uint8 NHWC
    bgr = faces[..., ::-1].astype(np.float32) / 255.0                     # what DeepFaceLive feeds
    face_mask, celeb, celeb_mask = session.run(None, {IN: np.ascontiguousarray(bgr)})
    predictor: Predictor = model.predictor(torch.device("cpu"), "float", [])
    with torch.no_grad():
        ref = predictor(torch.from_numpy(faces).permute(0, 3, 1, 2).float() / 255.0).clamp(0, 1)
    got = torch.from_numpy(np.ascontiguousarray(celeb[..., ::-1])).permute(0, 3, 1, 2)   # BGR NHWC -> RGB NCHW
    assert float((got - ref).abs().max()) < 1e-4
    assert float(np.abs(celeb - bgr).mean()) > 0.02                       # the change is there, not the input
    assert 0.0 <= celeb.min() and celeb.max() <= 1.0
    assert np.all(face_mask == 1.0) and np.all(celeb_mask == 1.0)         # no mask in this family: whole crop
    one = session.run(None, {IN: np.ascontiguousarray(bgr[:1])})          # DeepFaceLive runs batch 1
    assert np.allclose(one[1], celeb[:1], atol=1e-5)


@pytest.mark.slow
def test_bad_exports_are_one_line_and_write_nothing(small_ws, tmp_path):
    from export.dfm import run_export
    from export.options import ExportOptions
    from pipeline.core.errors import UserError
    out = tmp_path / "out"
    out.mkdir()
    before = snapshot(small_ws)
    existing = out / "taken.dfm"
    existing.write_bytes(b"keep me")

    def refused(*needles, **opts):
        with pytest.raises(UserError) as err:
            run_export(ExportOptions(**{"workspace": small_ws, **opts}))
        for needle in needles:
            assert needle in str(err.value), str(err.value)

    refused("no trained model", "main.py train", workspace=tmp_path / "nowhere")
    refused("m.txt", ".dfm", output=out / "m.txt")
    refused("missing", "does not exist", output=out / "missing" / "m.dfm")
    refused("is a folder", output=out)
    refused("already exists", "--overwrite", output=existing)
    assert existing.read_bytes() == b"keep me"
    (small_ws / "model" / "weights.pt").rename(tmp_path / "weights.pt")           # a model never trained
    clean_error(run_cli("export", "--workspace", small_ws), "weights.pt is missing", "main.py train")  # as users see it
    (tmp_path / "weights.pt").rename(small_ws / "model" / "weights.pt")
    clean_error(run_cli("export", "--workspace", small_ws, "--opset", "9"), "--opset 9", "11 to 18")
    clean_error(run_cli("export", "--workspace", small_ws, "--opset", "19"), "--opset 19", "11 to 18")
    assert snapshot(small_ws) == before and not (tmp_path / "nowhere").exists()
    assert [p.name for p in out.iterdir()] == ["taken.dfm"]
    run_export(ExportOptions(workspace=small_ws, output=existing, overwrite=True, opset=17))
    _assert_contract(_session(existing), 128)
    assert [p.name for p in out.iterdir()] == ["taken.dfm"]                     # no temp file left


def test_export_from_python_refuses_an_option_out_of_range(tmp_path):
    with pytest.raises(UserError, match="--opset 30 is out of range"):
        run_export(ExportOptions(workspace=tmp_path, opset=30))


def test_the_graph_holds_only_standard_ops_that_plain_cpu_onnxruntime_runs():
    """A 256 model (bilinear upsampling too) at the lowest and default opsets: default-domain ops only,
    each defined at the file's opset, a full checker pass, and a run with every optimisation off."""
    torch.manual_seed(0)
    model = TransformModel(TransformNet(256, width=2).eval())
    for opset in (11, 12):
        data = onnx_bytes(model, opset)
        proto = onnx.load_from_string(data)
        onnx.checker.check_model(proto, full_check=True)
        assert proto.ir_version <= MAX_IR and opset <= MAX_OPSET
        assert {o.domain for o in proto.opset_import} == {""}
        assert {n.domain for n in proto.graph.node} <= {"", "ai.onnx"}                  # no ATen / custom ops
        for node in proto.graph.node:
            onnx.defs.get_schema(node.op_type, opset)                                 # raises if not defined
        session = _session(data, optimize=False)
        _assert_contract(session, 256)
        x = torch.rand(3, 256, 256, 3)
        got = session.run(None, {IN: x.numpy()})
        with torch.no_grad():
            ref = DfmGraph(model).eval()(x)
        assert all(np.abs(a - b.numpy()).max() < 1e-4 for a, b in zip(got, ref))


class _MaskNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.face = nn.Conv2d(3, 3, 3, padding=1)
        self.mask = nn.Conv2d(3, 1, 3, padding=1)


class _MaskModel(FaceModel):
    """A family with its own mask, as the autoencoders give it: ``swap_with_mask(x) -> (face, mask)``."""

    type_name = "masked-test"

    def __init__(self) -> None:
        self.net = _MaskNet().eval()

    @property
    def network(self) -> nn.Module:
        return self.net

    @property
    def resolution(self) -> int:
        return 64

    def architecture(self) -> dict[str, Any]:
        return {}

    @classmethod
    def from_options(cls, options: dict[str, Any], source: Path | None = None) -> _MaskModel:
        return cls()

    def predictor(self, device: torch.device, precision: str, calibration: list[np.ndarray]) -> Predictor:
        raise NotImplementedError

    def swap_with_mask(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return torch.sigmoid(self.net.face(x)), torch.sigmoid(self.net.mask(x))


def test_a_model_with_its_own_mask_exports_it_as_both_masks():
    torch.manual_seed(0)
    model = _MaskModel()
    session = _session(onnx_bytes(model, 12))
    _assert_contract(session, 64)
    rgb = torch.rand(2, 3, 64, 64)
    bgr = rgb.flip(1).permute(0, 2, 3, 1).contiguous().numpy()
    face_mask, celeb, celeb_mask = session.run(None, {IN: bgr})
    with torch.no_grad():
        want_face, want_mask = model.swap_with_mask(rgb)
    assert np.abs(celeb[..., ::-1] - want_face.permute(0, 2, 3, 1).numpy()).max() < 1e-5
    assert np.abs(celeb_mask - want_mask.permute(0, 2, 3, 1).numpy()).max() < 1e-5
    assert np.array_equal(face_mask, celeb_mask)
