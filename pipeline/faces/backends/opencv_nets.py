"""Networks run by OpenCV's dnn module: loaded from packaged files, one copy per thread.

A ``cv2.dnn.Net`` keeps its activations inside, so two threads must not share one;
extract's workers each get their own (a net parses in a few milliseconds). The weight
files ship inside pip wheels in containers (ONNX bytes in a Python file, TFLite models
in a MediaPipe ``.task`` zip): they are read as data, and the packages' own code, with
its heavy dependencies, is never imported.
"""
from __future__ import annotations

import ast
import os
import tempfile
import threading
import weakref
import zipfile
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np

from pipeline.core.errors import UserError


def bytes_literal(path: Path, name: str) -> bytes:
    """The bytes assigned to ``name`` at the top of a Python file, read by parsing, not running it."""
    try:
        tree = ast.parse(path.read_bytes(), filename=str(path))
    except (OSError, SyntaxError, ValueError) as exc:
        raise UserError(f"model file {path} cannot be read ({exc}); reinstall the package that ships it") from None
    for node in tree.body:
        if (isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == name for t in node.targets)
                and isinstance(node.value, ast.Constant) and isinstance(node.value.value, bytes)):
            return node.value.value
    raise UserError(f"model file {path} has no bytes constant {name}; reinstall the package that ships it")


def zip_member(path: Path, member: str) -> bytes:
    """One file of a zip container (a MediaPipe ``.task`` bundle)."""
    try:
        with zipfile.ZipFile(path) as archive:
            return archive.read(member)
    except (OSError, zipfile.BadZipFile, KeyError) as exc:
        raise UserError(f"model file {path} has no readable {member} ({exc}); reinstall the package that "
                        f"ships it") from None


class TempModelFile:
    """Model bytes as a file for the whole life of its owner.

    OpenCV's TFLite reader with an engine chosen takes only a path, so bytes from a zip
    are written to a private temporary file, removed when the owner is collected or the
    process ends.
    """

    def __init__(self, owner: object, data: bytes, suffix: str) -> None:
        fd, name = tempfile.mkstemp(suffix=suffix, prefix="faceswap-model-")
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        self.path = Path(name)
        weakref.finalize(owner, _remove, name)


def _remove(name: str) -> None:
    try:
        os.unlink(name)
    except OSError:
        pass


class PerThreadNet:
    """A ``cv2.dnn.Net`` made on first use in each thread by ``make``."""

    def __init__(self, make: Callable[[], cv2.dnn.Net]) -> None:
        self._make = make
        self._local = threading.local()
        make()    # fail now, in the caller's thread, if the model does not parse

    def get(self) -> cv2.dnn.Net:
        net = getattr(self._local, "net", None)
        if net is None:
            net = self._local.net = self._make()
            self._local.names = list(net.getUnconnectedOutLayersNames())
        return net

    def run(self, blob: np.ndarray) -> dict[str, np.ndarray]:
        """Outputs by name for an NCHW float32 input."""
        net = self.get()
        names = self._local.names
        net.setInput(blob)
        return dict(zip(names, net.forward(names)))


def onnx_net(data: bytes, what: Path) -> Callable[[], cv2.dnn.Net]:
    buffer = np.frombuffer(data, np.uint8)

    def make() -> cv2.dnn.Net:
        try:
            return cv2.dnn.readNetFromONNX(buffer)
        except cv2.error as exc:
            raise UserError(f"model file {what} does not hold a valid ONNX network ({str(exc).strip()[:120]}); "
                            f"reinstall the package that ships it") from None
    return make


def tflite_engine() -> dict[str, int]:
    """The engine argument for OpenCV's TFLite reader, by what the installed OpenCV has.

    OpenCV 5.0 has two engines and its default, the new one, leaves out outputs that the
    landmark model's heads need, so the classic one is asked for. OpenCV 5.1 removed the
    classic engine (and its name) and its one engine gives every output (MediaPipe's
    landmarks agree with 5.0's classic engine to 3e-6 eye distances), so nothing is passed.
    """
    classic = getattr(cv2.dnn, "ENGINE_CLASSIC", None)
    return {"engine": int(classic)} if classic is not None else {}


def tflite_net(path: Path, what: Path | None = None) -> Callable[[], cv2.dnn.Net]:
    engine = tflite_engine()

    def make() -> cv2.dnn.Net:
        try:
            return cv2.dnn.readNetFromTFLite(str(path), **engine)
        except cv2.error as exc:
            raise UserError(f"model file {what or path} does not hold a valid TFLite network "
                            f"({str(exc).strip()[:120]}); reinstall the package that ships it") from None
    return make


def nms(boxes: np.ndarray, scores: np.ndarray, threshold: float, overlap: float) -> np.ndarray:
    """Indices kept by non-maximum suppression, best first (boxes as x0, y0, x1, y1)."""
    if len(boxes) == 0:
        return np.zeros(0, dtype=np.int64)
    xywh = np.column_stack([boxes[:, :2], boxes[:, 2:] - boxes[:, :2]]).astype(np.float32)
    keep = cv2.dnn.NMSBoxes(xywh.tolist(), scores.astype(np.float32).tolist(), float(threshold), float(overlap))
    return np.asarray(keep, dtype=np.int64).reshape(-1)
