"""The workspace's dst -> src model as a DeepFaceLive ``.dfm`` file (ONNX), for DeepFaceLive and FaceFusion.

Why: artists who trained a model here can run it live (DeepFaceLive) or in FaceFusion's
"deep swapper" without retraining in DeepFaceLab.

**The format** (a ``.dfm`` is a plain ONNX file; no header, no extra fields), as the
public code that writes and reads it has it:

- Writer: DeepFaceLab, ``models/Model_SAEHD/Model.py`` ``export_dfm`` (iperov/DeepFaceLab,
  commit 46fc2397, 2023-04): a placeholder ``in_face`` of shape (None, R, R, 3), float,
  transposed to NCHW for the network; outputs ``out_face_mask`` (the dst decoder's mask of
  the input face), ``out_celeb_face`` (the swapped face), ``out_celeb_face_mask`` (the src
  decoder's mask of the swapped face), each transposed back to NHWC, so (N, R, R, 1),
  (N, R, R, 3), (N, R, R, 1); the decoders end in a sigmoid, so all three are in [0, 1].
  Converted with tf2onnx, ``input_names=['in_face:0']``, ``output_names=['out_face_mask:0',
  'out_celeb_face:0', 'out_celeb_face_mask:0']``, ``opset=12``; no metadata written.
  ``models/Model_AMP/Model.py`` ``export_dfm``: the same plus a second input
  ``morph_value:0`` of shape (1,) (a latent mix between the src and dst codes), opset 12.
  DeepFaceLab trains on BGR images (``SampleProcessor.ChannelType.BGR``), so colour order
  is **BGR**, values 0..1.
- Reader: DeepFaceLive, ``modelhub/DFLive/DFMModel.py`` ``DFMModel`` (iperov/DeepFaceLive,
  commit fc7b787b, 2024-10): the first input's name must contain ``in_face``; its
  ``shape[1:3]`` is taken as (height, width), so they must be fixed numbers (the batch may
  be symbolic); a second input must contain ``morph_value``, more than two are refused.
  It feeds ``{'in_face:0': NHWC float32 0..1}`` (and ``'morph_value:0': float32[1]``), so
  the names must be exactly these, and takes the outputs **by position**:
  ``out_face_mask, out_celeb, out_celeb_mask = sess.run(None, ...)``. Frames are BGR
  (``xlib/player/VideoFilePlayer.py`` decodes ``-pix_fmt bgr24``; cameras via OpenCV).
  ``apps/DeepFaceLive/backend/FaceMerger.py`` multiplies the masks the user enables
  (source, celeb, landmarks), then erodes, blurs and fades them to the border. DeepFaceLive
  bundles onnxruntime 1.15.1 (``build/windows/WindowsBuilder.py``), which reads ONNX IR
  up to 9; at opset 19 it lacks AveragePool and Reshape kernels, so 18 is the newest opset
  offered.
- Reader: FaceFusion, ``facefusion/processors/modules/deep_swapper/core.py``
  (facefusion/facefusion, commit 33cc6b40): finds the inputs by the exact names
  ``in_face:0`` / ``morph_value:0``, model size from ``in_face:0``'s ``shape[1:3]``, feeds
  a BGR crop / 255 as float32 NHWC (batch 1), unpacks ``target_mask, face, source_mask =
  run(None, ...)`` (the same positional order), takes the minimum of the two masks. Files
  dropped in ``.assets/models/custom/`` are loaded with the ``dfl_whole_face`` crop.

**What this module writes**: exactly that contract, from any model family: ``in_face:0``
(N, R, R, 3) float32 BGR 0..1 with a symbolic batch ``N``, the three outputs in that order
and those names, float32, clamped to [0, 1]; no ``morph_value`` (no family here has a
latent to morph; DeepFaceLive's face opacity gives the pixel blend). A model with
``swap_with_masks(x) -> (face, its mask, the dst side's mask of x)`` (the autoencoder
families: DF's dst decoder, LIAE's decoder on the dst code) gives ``out_celeb_face_mask``
and ``out_face_mask`` as DeepFaceLab's own exports do; one with only ``swap_with_mask(x) ->
(face, mask)`` gives that mask as both; the transformation network has no mask, so both
are all ones: the merger's masks
then come from DeepFaceLive's landmark mask or FaceFusion's own masks. Exported with
PyTorch's TorchScript exporter (``dynamo=False``): it writes opset 12 with IR version 7,
which onnxruntime 1.15 reads; the torch.export-based exporter writes opset 18 or newer
with IR 10, which that onnxruntime refuses, and needs ``onnxscript``. The file carries
``metadata_props`` (model type, face type, resolution, iteration, layout); ONNX readers
ignore them. Before the file is written, onnxruntime loads it, its inputs and outputs are
checked against the contract, and its output is compared with PyTorch's.
"""
from __future__ import annotations

import json
import os
import tempfile
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from export.options import DEFAULT_NAME, ExportOptions
from pipeline.core.errors import UserError
from pipeline.core.files import DiskFullError, write_atomic
from pipeline.core.options import check
from pipeline.models.interface import FaceModel
from pipeline.models.store import load_model, one_line
from pipeline.workspace import layout

SUFFIXES = (".dfm", ".onnx")
INPUT_NAME = "in_face:0"
#: Output names in the order DeepFaceLive and FaceFusion unpack them.
OUTPUT_NAMES = ("out_face_mask:0", "out_celeb_face:0", "out_celeb_face_mask:0")
OUTPUT_CHANNELS = (1, 3, 1)
BATCH_DIM = "N"
#: Largest difference between onnxruntime's and PyTorch's output accepted when checking the file (0..1 scale).
TOLERANCE = 1e-3


class DfmGraph(nn.Module):
    """A face model behind the DFM contract: NHWC BGR in, (face mask, swapped face, its mask) NHWC out."""

    def __init__(self, model: FaceModel) -> None:
        super().__init__()
        self.net = model.network               # registered, so its weights become the graph's initializers
        self.resolution = model.resolution
        self.swap_with_mask = getattr(model, "swap_with_mask", None)
        self.swap_with_masks = getattr(model, "swap_with_masks", None)

    def forward(self, in_face: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        x = in_face[..., [2, 1, 0]].permute(0, 3, 1, 2)          # BGR NHWC -> RGB NCHW, what the models take
        if self.swap_with_masks is not None:                      # the dst side's mask and the swap's
            face, mask, dst_mask = self.swap_with_masks(x)
        elif self.swap_with_mask is not None:
            face, mask = self.swap_with_mask(x)
            dst_mask = mask
        else:
            face = self.net(x)
            mask = dst_mask = torch.ones_like(x[:, :1])           # no mask: the whole crop

        def nhwc_mask(m: torch.Tensor) -> torch.Tensor:
            return m.reshape(-1, 1, self.resolution, self.resolution).clamp(0.0, 1.0).permute(0, 2, 3, 1)

        face = face.clamp(0.0, 1.0).permute(0, 2, 3, 1)[..., [2, 1, 0]]
        return nhwc_mask(dst_mask), face, nhwc_mask(mask)


@dataclass
class ExportSummary:
    output: Path
    model_type: str
    resolution: int
    face_type: str
    iteration: Any
    opset: int
    size_bytes: int
    max_difference: float
    masks: str
    seconds: float

    def line(self) -> str:
        return (f"export: {self.model_type} model ({self.resolution} px, face type {self.face_type}, iteration "
                f"{self.iteration}) -> {self.output} ({self.size_bytes / 1e6:.1f} MB, ONNX opset {self.opset}; "
                f"in_face:0 N x {self.resolution} x {self.resolution} x 3 BGR 0..1; masks: {self.masks}; "
                f"onnxruntime matches PyTorch to {self.max_difference:.1e}; {self.seconds:.1f} s)")


def output_path(opts: ExportOptions) -> Path:
    """Where the file goes: ``--output`` or ``WORKSPACE/model.dfm``."""
    return Path(opts.output) if opts.output is not None else Path(opts.workspace) / DEFAULT_NAME


def _check_output(path: Path, overwrite: bool) -> None:
    if path.is_dir():
        raise UserError(f"--output {path} is a folder; give a file name such as {path / DEFAULT_NAME}")
    if path.suffix.lower() not in SUFFIXES:
        raise UserError(f"--output {path}: use a .dfm file name (DeepFaceLive, FaceFusion) or .onnx (the same file)")
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.is_dir():
        raise UserError(f"cannot write {path}: folder {parent} does not exist; create it or choose another --output")
    if path.exists() and not overwrite:
        raise UserError(f"--output {path} already exists; add --overwrite to replace it or choose another file name")
    if not os.access(parent, os.W_OK | os.X_OK):     # before the export's minutes, not after them
        raise UserError(f"cannot write {path}: folder {parent} is not writable (permission denied or a read-only "
                        f"disk); choose another --output")


def onnx_bytes(model: FaceModel, opset: int) -> bytes:
    """The model as an ONNX file's bytes, in the DFM layout (TorchScript exporter; see the module docstring)."""
    graph = DfmGraph(model).eval()
    r = model.resolution
    example = torch.rand(1, r, r, 3, generator=torch.Generator().manual_seed(0))
    dynamic = {name: {0: BATCH_DIM} for name in (INPUT_NAME, *OUTPUT_NAMES)}
    with tempfile.TemporaryDirectory(prefix="export-") as tmp, warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")        # the exporter's deprecation notice and tracer notes are not the user's
        path = Path(tmp) / "model.onnx"
        torch.onnx.export(graph, (example,), path, input_names=[INPUT_NAME], output_names=list(OUTPUT_NAMES),
                          dynamic_axes=dynamic, opset_version=opset, do_constant_folding=True, dynamo=False)
        return path.read_bytes()


def with_metadata(data: bytes, props: dict[str, str]) -> bytes:
    """``data`` with ``props`` as the ONNX file's metadata_props (what made it, how to feed it)."""
    import onnx
    proto = onnx.load_from_string(data)
    onnx.helper.set_model_props(proto, props)
    proto.doc_string = "dst -> src face model in DeepFaceLive's .dfm layout (in_face:0 NHWC BGR 0..1)"
    return bytes(proto.SerializeToString())


def provenance(workspace: Path, model_dir: Path) -> dict[str, str]:
    """The model's weight hash and the consent status, as convert's content credentials state them (issue 30).

    Why in the .dfm: the exported model leaves this tool for live-swap players, and whoever
    receives it can match it to the manifests of videos it made, and see whether the people's
    consent was recorded (document hashes and dates, not names).
    """
    from pipeline.provenance.consent import summary
    from pipeline.provenance.credentials import model_hash
    consent = summary(workspace)
    return {"model_sha256": model_hash(model_dir), "consent_recorded": "yes" if consent["recorded"] else "no",
            "consent": json.dumps(consent, separators=(",", ":"))}


def verify(data: bytes, graph: DfmGraph) -> float:
    """Load ``data`` in onnxruntime, check the DFM contract, return its largest difference from PyTorch.

    A mismatch is this tool's fault, never the user's; it is still one line, and nothing is written.
    """
    import onnxruntime as ort
    r = graph.resolution
    options = ort.SessionOptions()
    options.log_severity_level = 3
    session = ort.InferenceSession(data, options, providers=["CPUExecutionProvider"])
    inputs, outputs = session.get_inputs(), session.get_outputs()
    found = ([(i.name, list(i.shape), i.type) for i in inputs], [(o.name, list(o.shape), o.type) for o in outputs])
    wanted = ([(INPUT_NAME, [BATCH_DIM, r, r, 3], "tensor(float)")],
              [(name, [BATCH_DIM, r, r, c], "tensor(float)") for name, c in zip(OUTPUT_NAMES, OUTPUT_CHANNELS)])
    if found != wanted:
        raise UserError(f"the exported file does not have the DFM inputs and outputs ({found} instead of {wanted}); "
                        f"nothing was written; please report this with the model's options.json")
    x = torch.rand(2, r, r, 3, generator=torch.Generator().manual_seed(1))
    got = session.run(None, {INPUT_NAME: x.numpy()})
    with torch.no_grad():
        ref = [t.numpy() for t in graph(x)]
    return max(float(np.abs(a - b).max()) for a, b in zip(got, ref))


def run_export(opts: ExportOptions) -> ExportSummary:
    """Write the workspace's trained model as a ``.dfm`` (ONNX) file, atomically; the workspace is only read."""
    check(opts)
    started = time.perf_counter()
    folder = layout.model_dir(opts.workspace)
    # UserError naming the file when there is no trained model (no folder, no options.json or weights.pt)
    model, meta = load_model(folder, "cpu", retrain=f"retrain with 'python main.py train --workspace {opts.workspace}'")
    path = output_path(opts)
    _check_output(path, opts.overwrite)
    has_masks = hasattr(model, "swap_with_mask")
    masks = ("the model's own (face mask: its dst side's, celeb mask: the swap's)" if hasattr(model, "swap_with_masks")
             else "the model's own" if has_masks else "all ones (this model type has no mask)")
    try:
        data = onnx_bytes(model, opts.opset)
    except Exception as err:  # noqa: BLE001 - a family whose graph the exporter cannot trace
        raise UserError(f"the {meta['model_type']} model in {folder} could not be exported to ONNX opset "
                        f"{opts.opset} ({one_line(err)}); nothing was written; try another --opset") from err
    face_type = str(meta.get("face_type", "unknown"))
    data = with_metadata(data, {
        "producer": "faceswap-stages export", "model_type": str(meta["model_type"]), "face_type": face_type,
        "resolution": str(model.resolution), "iteration": str(meta.get("iteration", "")),
        "input": f"{INPUT_NAME} NHWC float32 BGR 0..1", "outputs": ", ".join(OUTPUT_NAMES),
        "masks": "model" if has_masks else "ones", **provenance(Path(opts.workspace), folder)})
    difference = verify(data, DfmGraph(model).eval())
    if not difference <= TOLERANCE:
        raise UserError(f"the exported file's output differs from PyTorch's by {difference:.2g} (more than "
                        f"{TOLERANCE:g}); nothing was written; please report this with the model's options.json")
    try:
        write_atomic(path, data)
    except DiskFullError:
        raise                       # its own line: the folder, the free space, the file left as it was
    except OSError as err:          # read-only disk, permissions changed meanwhile, a file system refusing
        raise UserError(f"cannot write {path}: {err.strerror or one_line(err)}; nothing was written: choose another "
                        f"--output") from err
    return ExportSummary(path, str(meta["model_type"]), model.resolution, face_type, meta.get("iteration", "?"),
                         opts.opset, len(data), difference, masks, time.perf_counter() - started)
