"""dlib's face-recognition ResNet run by ONNX Runtime: identity descriptors on the CPU without PyTorch.

Why: importing PyTorch costs about a second of a core in every process that describes faces,
and on a Ray cluster every extract worker paid it before its first frame (0.9 s of a
worker's 1.2 s set-up on 2026-12-08), in the one-node run and the two-node run alike.
ONNX Runtime, a dependency already (``export`` checks .dfm files in it), imports in 0.2 s and
runs this network faster (4.9 ms a face against 6.4 ms on one CPU thread, 16-face batches).

The graph is exported once from our PyTorch port (``face_net``: the same weights, parsed from
dlib's file), checked against it in the same process (largest difference 3e-7 on a descriptor
of norm about 1), and kept in a per-user cache under the weights file's SHA-256; later
processes read it from there and never import torch. A cache that cannot be written (a
read-only home on a farm node) costs only the export, in each process: the graph is run
from memory.
"""
from __future__ import annotations

import logging
import os
import socket
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.core.errors import first_line
from pipeline.core.files import DiskFullError, write_atomic
from pipeline.core.weights import sha256_of

log = logging.getLogger("identity")

#: Where exported graphs are kept: $FACE_CACHE_DIR, else $XDG_CACHE_HOME/faceswap-workbench, else ~/.cache/...
CACHE_ENV = "FACE_CACHE_DIR"
#: Bumped when the export changes what the graph computes; part of the file's name.
EXPORT_VERSION = 1
#: The export is kept only if ONNX Runtime and PyTorch agree to this (descriptor units; same person < 0.6).
AGREEMENT = 1e-4


def cache_dir() -> Path:
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV])
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "faceswap-workbench"


def graph_path(weights: Path) -> Path:
    """The cached graph for ``weights`` (it may not exist yet)."""
    return cache_dir() / f"dlib_face_net_{sha256_of(weights)[:16]}_v{EXPORT_VERSION}.onnx"


def export_graph(weights: Path) -> bytes:
    """The ONNX graph of the PyTorch port with ``weights`` (batch size free, 150x150 RGB 0-255 in), checked
    against the port on a random batch; raises ``RuntimeError`` when they disagree."""
    import io
    import warnings

    import torch

    from pipeline.faces.face_net import CHIP_SIZE, load_face_net
    net = load_face_net("cpu", weights)
    probe = torch.rand(3, 3, CHIP_SIZE, CHIP_SIZE, generator=torch.Generator().manual_seed(0)) * 255
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")          # the tracer's notes on shape checks: the chip size is fixed
        torch.onnx.export(net, (probe,), buf,  # type: ignore[arg-type]  # any binary file works
                          input_names=["chips"], output_names=["descriptors"],
                          dynamic_axes={"chips": {0: "faces"}, "descriptors": {0: "faces"}}, opset_version=17,
                          dynamo=False)
    data = buf.getvalue()
    with torch.inference_mode():
        want = net(probe).numpy()
    got = _session(data, 1).run(None, {"chips": probe.numpy()})[0]
    worst = float(np.abs(got - want).max())
    if not worst <= AGREEMENT:
        raise RuntimeError(f"the exported graph differs from the PyTorch port by {worst:.2g}")
    return data


def _session(model: bytes | str, threads: int | None) -> Any:
    import onnxruntime as ort
    so = ort.SessionOptions()
    so.log_severity_level = 3
    so.inter_op_num_threads = 1
    so.intra_op_num_threads = threads or 0        # 0: ONNX Runtime's default, every physical core
    so.add_session_config_entry("session.intra_op.allow_spinning", "0")   # beside detector threads: no spin-waiting
    return ort.InferenceSession(model, so, providers=["CPUExecutionProvider"])


class OnnxFaceNet:
    """Descriptors of (N, 150, 150, 3) uint8 RGB chips, the graph exported once and cached."""

    def __init__(self, weights: Path, threads: int | None = None) -> None:
        path = graph_path(weights)
        self.source = str(path)
        session = None
        if path.is_file():
            try:
                session = _session(str(path), threads)
                if [i.name for i in session.get_inputs()] != ["chips"]:
                    raise ValueError("not the graph this version exports")
            except Exception as exc:  # noqa: BLE001 - a damaged cache file: export again
                log.warning("warning: cached face-recognition graph %s unreadable (%s); exporting it again",
                            path, first_line(exc))
        if session is None:
            data = export_graph(weights)
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
                # named for this host first: on a farm's shared cache two nodes' processes can share a pid
                staged = path.with_name(f"{path.name}.{socket.gethostname()}")
                write_atomic(staged, data)
                os.replace(staged, path)
                log.info("identity: exported dlib's face-recognition ResNet to ONNX once, kept in %s", path)
            except (OSError, DiskFullError) as exc:     # read-only, not a folder, or full: run it from memory
                self.source = "memory (the cache could not be written)"
                reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else exc
                log.warning("warning: cannot keep the face-recognition graph in %s (%s); set %s to a writable "
                            "folder to skip this export next time", path.parent, reason, CACHE_ENV)
            session = _session(data, threads)
        self.session = session

    def __call__(self, chips: np.ndarray) -> np.ndarray:
        x = np.ascontiguousarray(chips.transpose(0, 3, 1, 2), dtype=np.float32)
        return self.session.run(None, {"chips": x})[0].astype(np.float64)
