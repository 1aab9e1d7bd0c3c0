"""dlib's face-recognition ResNet as a PyTorch module (identity descriptor and feature taps).

dlib's ``dlib_face_recognition_resnet_model_v1.dat`` gives 128-D identity descriptors
(same person < 0.6 apart). Porting it to PyTorch makes it differentiable, so it can drive
identity and content/style losses in training, batch on a GPU, and run without dlib.
The weights are parsed from dlib's own file with numpy only (no pickle, no dlib).

File layout (dlib serialization, see ``pipeline.faces.dlib_format``): a version integer, the
loss layer record, one version integer per layer (outermost first; tag and skip layers
have a version but no record), the input layer record, then one record per layer in
forward order, each followed by three bools and three empty tensors (the first layer
also by its sample expansion factor).
"""
from __future__ import annotations

import functools
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from pipeline.core.errors import UserError
from pipeline.core.weights import model_path
from pipeline.faces.dlib_format import DlibFormatError, DlibReader

#: Names of the intermediate maps ``DlibFaceNet.features`` can return, shallow to deep, with
#: their shapes for a 150x150 input: stem (32, 72, 72), level1 (32, 35, 35),
#: level2 (64, 17, 17), level3 (128, 8, 8), level4 (256, 4, 4), level5 (256, 2, 2),
#: pooled (256,), descriptor (128,).
TAPS = ("stem", "level1", "level2", "level3", "level4", "level5", "pooled", "descriptor")

CHIP_SIZE = 150


# ----------------------------------------------------------------------------- parsing

def _read_layer_tail(reader: DlibReader) -> None:
    """Skip what dlib writes after each layer's own record: 3 bools, 3 (empty) tensors."""
    for _ in range(3):
        reader.read_bool()
    for _ in range(3):
        reader.read_tensor()


def _read_con(reader: DlibReader) -> dict[str, Any]:
    flat = reader.read_tensor().reshape(-1)
    num_filters, kh, kw, sy, sx, py, px = (reader.read_int() for _ in range(7))
    f_shape = reader.read_alias_tensor_shape()
    b_shape = reader.read_alias_tensor_shape()
    for _ in range(4):                      # learning-rate / weight-decay multipliers
        reader.read_float()
    n_filter = int(np.prod(f_shape))
    n_bias = int(np.prod(b_shape))
    if f_shape[0] != num_filters or f_shape[2:] != (kh, kw) or n_filter + n_bias != flat.size:
        raise DlibFormatError(f"{reader.name}: inconsistent con_ layer before byte {reader.pos}")
    weight = flat[:n_filter].reshape(f_shape)
    bias = flat[n_filter:].copy() if n_bias else np.zeros(num_filters, np.float32)
    return {"type": "con", "weight": weight, "bias": bias, "stride": (sy, sx), "padding": (py, px)}


def _read_affine(reader: DlibReader) -> dict[str, Any]:
    flat = reader.read_tensor().reshape(-1)
    g_shape = reader.read_alias_tensor_shape()
    b_shape = reader.read_alias_tensor_shape()
    mode = reader.read_int()
    n = int(np.prod(g_shape))
    if mode != 0 or n != int(np.prod(b_shape)) or flat.size != 2 * n:
        # mode 0 = one gamma/beta per channel (batch norm folded for conv layers).
        raise DlibFormatError(f"{reader.name}: unsupported affine_ layer (mode {mode}) before byte {reader.pos}")
    return {"type": "affine", "gamma": flat[:n].copy(), "beta": flat[n:].copy()}


def _read_pool(kind: str):
    def read(reader: DlibReader) -> dict[str, Any]:
        nr, nc, sy, sx, py, px = (reader.read_int() for _ in range(6))
        # A window of 0 means "the whole input" (dlib's avg_pool_everything).
        return {"type": kind, "window": (nr, nc), "stride": (sy, sx), "padding": (py, px)}
    return read


def _read_fc(reader: DlibReader) -> dict[str, Any]:
    num_outputs = reader.read_int()
    num_inputs = reader.read_int()
    flat = reader.read_tensor().reshape(-1)
    w_shape = reader.read_alias_tensor_shape()
    reader.read_alias_tensor_shape()        # biases: follow the weights when present
    bias_mode = reader.read_int()           # 0 = has bias, 1 = no bias
    for _ in range(4):
        reader.read_float()
    n_w = num_inputs * num_outputs
    if int(np.prod(w_shape)) != n_w or flat.size != n_w + (num_outputs if bias_mode == 0 else 0):
        raise DlibFormatError(f"{reader.name}: inconsistent fc_ layer before byte {reader.pos}")
    # dlib computes x @ W with W stored (inputs, outputs): torch wants (outputs, inputs).
    weight = flat[:n_w].reshape(num_inputs, num_outputs).T.copy()
    bias = flat[n_w:].copy() if bias_mode == 0 else None
    return {"type": "fc", "weight": weight, "bias": bias}


_LAYER_READERS = {
    "con_4": _read_con,
    "affine_": _read_affine,
    "relu_": lambda reader: {"type": "relu"},
    "max_pool_2": _read_pool("max_pool"),
    "avg_pool_2": _read_pool("avg_pool"),
    "add_prev_": lambda reader: {"type": "add_prev"},
    "fc_2": _read_fc,
}


def load_dlib_resnet_params(path: str | Path) -> dict[str, Any]:
    """Parse dlib's face-recognition ResNet file into numpy arrays, layers in forward order.

    Returns ``{"loss": {...}, "layer_versions": [...], "input": {"mean_rgb", "size"},
    "layers": [...]}``; each layer is a dict with a ``type`` (con, affine, relu, max_pool,
    avg_pool, add_prev, fc) and its arrays. The structure (which add_prev joins what) is
    not stored per layer; ``DlibFaceNet`` rebuilds it from the layer sequence.
    """
    reader = DlibReader.from_file(path)
    reader.read_int()                                  # loss wrapper version
    loss_name = reader.read_string()
    if not loss_name.startswith("loss_metric"):
        raise DlibFormatError(f"{path}: loss layer {loss_name!r}, expected loss_metric (face recognition)")
    loss = {"name": loss_name, "margin": reader.read_float(), "distance_threshold": reader.read_float()}

    versions: list[int] = []
    while True:                                       # outermost layer first; 3 = over the input
        v = reader.read_int()
        if v not in (1, 2, 3) or len(versions) > 10_000:
            raise DlibFormatError(f"{path}: unexpected layer version {v} at byte {reader.pos}")
        versions.append(v)
        if v == 3:
            break

    input_name = reader.read_string()
    if input_name != "input_rgb_image_sized":
        raise DlibFormatError(f"{path}: input layer {input_name!r}, expected input_rgb_image_sized")
    mean_rgb = np.array([reader.read_float() for _ in range(3)], dtype=np.float32)
    size = (reader.read_int(), reader.read_int())

    layers: list[dict[str, Any]] = []
    while not reader.at_end:
        name = reader.read_string()
        read = _LAYER_READERS.get(name)
        if read is None:
            raise DlibFormatError(f"{path}: unknown layer {name!r} before byte {reader.pos}")
        layers.append(read(reader))
        _read_layer_tail(reader)
        if len(layers) == 1:
            reader.read_int()                          # first layer: sample expansion factor
    return {"loss": loss, "layer_versions": versions,
            "input": {"mean_rgb": mean_rgb, "size": size}, "layers": layers}


# ----------------------------------------------------------------------------- network

def _folded_conv(con: dict[str, Any], affine: dict[str, Any]) -> nn.Conv2d:
    """Conv followed by dlib's affine (frozen batch norm), merged into one conv."""
    weight = con["weight"].astype(np.float64)
    gamma = affine["gamma"].astype(np.float64)
    nf, k, kh, kw = weight.shape
    conv = nn.Conv2d(k, nf, (kh, kw), stride=con["stride"], padding=con["padding"], bias=True)
    with torch.no_grad():
        conv.weight.copy_(torch.from_numpy(weight * gamma[:, None, None, None]))
        assert conv.bias is not None
        conv.bias.copy_(torch.from_numpy(con["bias"] * gamma + affine["beta"]))
    return conv


def _zero_fill_add(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """dlib's add_prev: sizes differ -> take the max per dimension, missing parts are 0.

    The stride-2 path can be one pixel smaller than its pooled shortcut and has more
    channels; dlib pads with zeros at the bottom/right and in the extra channels.
    """
    if a.shape == b.shape:
        return a + b
    c = max(a.shape[1], b.shape[1])
    h = max(a.shape[2], b.shape[2])
    w = max(a.shape[3], b.shape[3])

    def grow(t: torch.Tensor) -> torch.Tensor:
        return F.pad(t, (0, w - t.shape[3], 0, h - t.shape[2], 0, c - t.shape[1]))

    return grow(a) + grow(b)


class _Residual(nn.Module):
    """relu(add_prev(conv-affine-relu-conv-affine(x), shortcut(x)))."""

    def __init__(self, conv1: nn.Conv2d, conv2: nn.Conv2d, pool: dict[str, Any] | None) -> None:
        super().__init__()
        self.conv1 = conv1
        self.conv2 = conv2
        self.pool = (pool["window"], pool["stride"]) if pool else None

    @property
    def downsamples(self) -> bool:
        return self.pool is not None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv2(F.relu(self.conv1(x)))
        shortcut = F.avg_pool2d(x, self.pool[0], self.pool[1]) if self.pool else x
        return F.relu(_zero_fill_add(y, shortcut))


class _LayerSequence:
    """Cursor over parsed layers that checks each one has the type the structure needs."""

    def __init__(self, layers: list[dict[str, Any]]) -> None:
        self.layers = layers
        self.i = 0

    def peek(self) -> dict[str, Any] | None:
        return self.layers[self.i] if self.i < len(self.layers) else None

    def take(self, kind: str) -> dict[str, Any]:
        layer = self.peek()
        if layer is None or layer["type"] != kind:
            found = layer["type"] if layer else "end of file"
            raise DlibFormatError(f"face ResNet layer {self.i}: expected {kind}, found {found}")
        self.i += 1
        return layer


class DlibFaceNet(nn.Module):
    """dlib's face-recognition ResNet (29 conv layers) in PyTorch.

    Input: float (N, 3, 150, 150) RGB chips in 0..255, aligned like ``dlib.get_face_chip``
    (see ``pipeline.faces.face_chip``). Output: (N, 128) descriptors, not unit length, as dlib's.
    """

    mean_rgb: torch.Tensor       # a buffer: moves with the module, saved with its state

    def __init__(self, params: dict[str, Any]) -> None:
        super().__init__()
        mean = torch.as_tensor(np.asarray(params["input"]["mean_rgb"], np.float32)).view(1, 3, 1, 1)
        self.register_buffer("mean_rgb", mean)
        seq = _LayerSequence(params["layers"])
        con = seq.take("con")
        self.stem = _folded_conv(con, seq.take("affine"))
        seq.take("relu")
        pool = seq.take("max_pool")
        self.stem_pool = (pool["window"], pool["stride"], pool["padding"])

        blocks = []
        while (layer := seq.peek()) is not None and layer["type"] == "con":
            conv1 = _folded_conv(seq.take("con"), seq.take("affine"))
            seq.take("relu")
            conv2 = _folded_conv(seq.take("con"), seq.take("affine"))
            nxt = seq.peek()
            short = seq.take("avg_pool") if nxt is not None and nxt["type"] == "avg_pool" else None
            if short is not None and (short["padding"] != (0, 0) or 0 in short["window"]):
                raise DlibFormatError("face ResNet: unsupported shortcut pooling")
            seq.take("add_prev")
            seq.take("relu")
            blocks.append(_Residual(conv1, conv2, short))
        self.blocks = nn.ModuleList(blocks)

        head = seq.take("avg_pool")
        if head["window"] != (0, 0):
            raise DlibFormatError("face ResNet: expected a global average pool before the fc layer")
        fc = seq.take("fc")
        if seq.peek() is not None:
            raise DlibFormatError(f"face ResNet: {len(params['layers']) - seq.i} unexpected layers at the end")
        out_f, in_f = fc["weight"].shape
        self.fc = nn.Linear(in_f, out_f, bias=fc["bias"] is not None)
        with torch.no_grad():
            self.fc.weight.copy_(torch.from_numpy(fc["weight"]))
            if fc["bias"] is not None:
                self.fc.bias.copy_(torch.from_numpy(fc["bias"]))

        # Cross-check with the tag/skip layers (version 1, no record): one tag per
        # residual, plus one more tag and a skip per downsampling residual.
        n_down = sum(b.downsamples for b in blocks)
        if "layer_versions" in params and params["layer_versions"].count(1) != len(blocks) + 2 * n_down:
            raise DlibFormatError("face ResNet: tag/skip layers do not match the residual structure")

        # Resolution levels: a new level starts at each downsampling residual.
        self._level_end: dict[str, int] = {}
        level = 1
        for i, block in enumerate(blocks):
            if block.downsamples and i > 0:
                level += 1
            self._level_end[f"level{level}"] = i

    @property
    def taps(self) -> tuple[str, ...]:
        """Names ``features`` accepts, shallow to deep."""
        return ("stem", *self._level_end, "pooled", "descriptor")

    def _normalise(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 4 or x.shape[1] != 3:
            raise ValueError(f"DlibFaceNet expects (N, 3, H, W) RGB in 0..255, got shape {tuple(x.shape)}")
        # Subtract the mean in at least float32 (in half, 122.78 would be off by 0.03),
        # then run the network in the weights' dtype.
        dtype = self.stem.weight.dtype
        work = torch.promote_types(dtype, torch.float32)
        x = (x.to(work) - self.mean_rgb.to(work)) / 256.0
        return x.to(dtype)

    def features(self, x: torch.Tensor, taps: Iterable[str]) -> dict[str, torch.Tensor]:
        """Intermediate maps by name (see ``TAPS``), for content/style/identity losses.

        Runs only as deep as the deepest tap asked for.
        """
        wanted = list(taps)
        unknown = [t for t in wanted if t not in self.taps]
        if unknown:
            raise ValueError(f"unknown DlibFaceNet taps {unknown}; choose from {list(self.taps)}")
        out: dict[str, torch.Tensor] = {}
        remaining = set(wanted)

        def keep(name: str, value: torch.Tensor) -> bool:
            if name in remaining:
                out[name] = value
                remaining.discard(name)
            return not remaining

        y = F.relu(self.stem(self._normalise(x)))
        if keep("stem", y):
            return out
        y = F.max_pool2d(y, *self.stem_pool)
        level_at = {i: name for name, i in self._level_end.items()}
        for i, block in enumerate(self.blocks):
            y = block(y)
            if i in level_at and keep(level_at[i], y):
                return out
        y = y.mean(dim=(2, 3))
        if keep("pooled", y):
            return out
        keep("descriptor", self.fc(y))
        return out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(N, 3, 150, 150) RGB 0..255 -> (N, 128) dlib face descriptors."""
        return self.features(x, ["descriptor"])["descriptor"]


# ----------------------------------------------------------------------------- loading

@functools.lru_cache(maxsize=2)
def _cached_params(path: str) -> dict[str, Any]:
    return load_dlib_resnet_params(path)


def load_face_net(device: str | torch.device = "cpu", path: str | Path | None = None) -> DlibFaceNet:
    """DlibFaceNet with dlib's weights, in eval mode with frozen parameters.

    The file is parsed once per process; each call builds its own module, so a caller
    that casts it to half or moves it does not affect other callers.
    """
    if path is None:
        path = model_path("dlib-face-recognition")
    path = Path(path)
    if not path.is_file():
        raise UserError(f"face recognition model {path} not found; it ships in the pip package "
                        f"face_recognition_models (file dlib_face_recognition_resnet_model_v1.dat): "
                        f"pip install face_recognition_models")
    net = DlibFaceNet(_cached_params(str(path.resolve())))
    net.requires_grad_(False)
    return net.eval().to(device)
