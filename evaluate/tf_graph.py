"""A frozen TensorFlow graph (``GraphDef``), read without TensorFlow and run with PyTorch.

OpenCV 5.1 removed its TensorFlow importer, and the held-apart identity network (FaceNet)
ships only as a frozen graph. Installing TensorFlow to read one file would add a gigabyte
and a second numerics stack, so this module reads the protobuf wire format itself (the few
message fields a frozen inference graph uses) and runs the graph's nodes as PyTorch
operations with TensorFlow's semantics: NHWC activations, HWIO filters, ``SAME`` padding
that puts the odd pixel after. Only the operations frozen inference graphs of this kind
use are implemented; any other stops with one line that names it.

Activations keep TensorFlow's logical NHWC shape. A convolution or pool views them as
NCHW through ``permute`` (channels-last memory), so PyTorch's kernels run on them without
copies, and every other operation (bias, concatenation on axis 3, reshape) keeps
TensorFlow's meaning unchanged.
"""
from __future__ import annotations

import struct
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

# --- protobuf wire format -------------------------------------------------------------------

_VARINT, _FIXED64, _BYTES, _FIXED32 = 0, 1, 2, 5


class GraphFormatError(ValueError):
    """The bytes are not a GraphDef this reader understands."""


def _varint(buf: memoryview, i: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if i >= len(buf):
            raise GraphFormatError("truncated varint")
        byte = buf[i]
        i += 1
        result |= (byte & 0x7F) << shift
        if byte < 0x80:
            return result, i
        shift += 7
        if shift > 70:
            raise GraphFormatError("varint longer than 10 bytes")


def _fields(buf: memoryview) -> Iterator[tuple[int, int, Any]]:
    """(field number, wire type, value) of one message: ints for varints, memoryviews otherwise."""
    i, end = 0, len(buf)
    while i < end:
        key, i = _varint(buf, i)
        number, wire = key >> 3, key & 7
        if wire == _VARINT:
            value, i = _varint(buf, i)
        elif wire == _BYTES:
            length, i = _varint(buf, i)
            if i + length > end:
                raise GraphFormatError("length-delimited field runs past its message")
            value, i = buf[i:i + length], i + length
        elif wire == _FIXED32:
            value, i = buf[i:i + 4], i + 4
        elif wire == _FIXED64:
            value, i = buf[i:i + 8], i + 8
        else:
            raise GraphFormatError(f"unsupported wire type {wire}")
        if i > end:
            raise GraphFormatError("field runs past its message")
        yield number, wire, value


def _packed_varints(value: Any, wire: int) -> list[int]:
    if wire == _VARINT:
        return [value]
    out, i = [], 0
    while i < len(value):
        v, i = _varint(value, i)
        out.append(v)
    return out


def _signed64(v: int) -> int:
    return v - (1 << 64) if v >= 1 << 63 else v


def _packed_floats(value: Any, wire: int) -> list[float]:
    raw = bytes(value)
    return list(struct.unpack(f"<{len(raw) // 4}f", raw))


# TensorFlow's DataType enum: the types a frozen inference graph's constants use.
_DTYPES = {1: np.float32, 2: np.float64, 3: np.int32, 4: np.uint8, 9: np.int64, 10: np.bool_}


def _shape(buf: memoryview) -> list[int] | None:
    dims: list[int] = []
    for number, _, value in _fields(buf):
        if number == 2:                     # repeated Dim { int64 size = 1; }
            size = -1
            for n, _, v in _fields(value):
                if n == 1:
                    size = _signed64(v)
            dims.append(size)
        elif number == 3 and value:         # unknown_rank
            return None
    return dims


def _tensor(buf: memoryview) -> np.ndarray:
    dtype_code, dims, content = 0, [], None
    floats: list[float] = []
    ints: list[int] = []
    for number, wire, value in _fields(buf):
        if number == 1:
            dtype_code = value
        elif number == 2:
            dims = _shape(value) or []
        elif number == 4:
            content = bytes(value)
        elif number == 5:
            floats.extend(_packed_floats(value, wire))
        elif number in (7, 10, 11):          # int_val, int64_val, bool_val
            ints.extend(_signed64(v) for v in _packed_varints(value, wire))
    dtype = _DTYPES.get(dtype_code)
    if dtype is None:
        raise GraphFormatError(f"constant of unsupported TensorFlow dtype {dtype_code}")
    count = int(np.prod(dims)) if dims else 1
    if content is not None:
        array = np.frombuffer(content, dtype=np.dtype(dtype).newbyteorder("<")).astype(dtype)
    else:
        values = floats if floats else ints
        # TensorFlow stores a constant whose values are all equal as one value, repeated on read
        array = np.asarray(values + values[-1:] * (count - len(values)) if values else [0] * count, dtype=dtype)
    if array.size != count:
        raise GraphFormatError(f"constant holds {array.size} values for shape {dims}")
    return array.reshape(dims)


def _attr(buf: memoryview) -> Any:
    for number, _wire, value in _fields(buf):
        if number == 1:                         # ListValue
            items: list[Any] = []
            for n, w, v in _fields(value):
                if n == 2:
                    items.append(bytes(v).decode())
                elif n in (3, 6):
                    items.extend(_signed64(x) for x in _packed_varints(v, w))
                elif n == 4:
                    items.extend(_packed_floats(v, w))
            return items
        if number == 2:
            return bytes(value).decode(errors="replace")
        if number in (3, 6):
            return _signed64(value)
        if number == 4:
            return struct.unpack("<f", bytes(value))[0]
        if number == 5:
            return bool(value)
        if number == 7:
            return _shape(value)
        if number == 8:
            return _tensor(value)
    return None


@dataclass
class Node:
    """One NodeDef: its name, operation, data inputs (control inputs dropped) and attributes."""

    name: str
    op: str
    inputs: list[str] = field(default_factory=list)
    attrs: dict[str, Any] = field(default_factory=dict)


def _node(buf: memoryview) -> Node:
    node = Node("", "")
    for number, _, value in _fields(buf):
        if number == 1:
            node.name = bytes(value).decode()
        elif number == 2:
            node.op = bytes(value).decode()
        elif number == 3:
            name = bytes(value).decode()
            if not name.startswith("^"):       # a control dependency orders, it carries no data
                node.inputs.append(name)
        elif number == 5:                      # map<string, AttrValue>: entries of key = 1, value = 2
            key, attr = "", None
            for n, _, v in _fields(value):
                if n == 1:
                    key = bytes(v).decode()
                elif n == 2:
                    attr = _attr(v)
            node.attrs[key] = attr
    return node


def parse_graph(data: bytes) -> list[Node]:
    """The nodes of a serialised GraphDef, in file order."""
    nodes = [_node(value) for number, wire, value in _fields(memoryview(data)) if number == 1 and wire == _BYTES]
    if not nodes or any(not n.name or not n.op for n in nodes):
        raise GraphFormatError("no named nodes: not a TensorFlow GraphDef")
    return nodes


# --- running the graph with PyTorch -------------------------------------------------------


def _same_pads(size: int, kernel: int, stride: int, dilation: int = 1) -> tuple[int, int]:
    """TensorFlow's SAME padding along one axis: (before, after), the odd pixel after."""
    out = -(-size // stride)
    total = max((out - 1) * stride + (kernel - 1) * dilation + 1 - size, 0)
    return total // 2, total - total // 2


class GraphRunner:
    """A parsed frozen graph, run from its placeholder(s) to one output node with PyTorch.

    Constants become tensors once (filters turned to PyTorch's OIHW), on ``device``. The
    graph is run node by node in topological order; values no later node needs are dropped
    as soon as they are used, so memory holds only live activations.
    """

    def __init__(self, nodes: list[Node], output: str, device: Any = "cpu") -> None:
        import torch
        self.torch = torch
        self.device = torch.device(device)
        by_name = {n.name: n for n in nodes}
        if output not in by_name:
            raise GraphFormatError(f"the graph has no node named {output!r}")
        self.order = self._topological(by_name, output)
        unknown = sorted({n.op for n in self.order} - set(_OPS))
        if unknown:
            raise GraphFormatError(f"operations this reader does not run: {', '.join(unknown)}")
        self.output = output
        self.placeholders = [n.name for n in self.order if n.op == "Placeholder"]
        self.consts: dict[str, Any] = {}
        conv_filters = {_source(n.inputs[1]) for n in self.order if n.op == "Conv2D"}
        for n in self.order:
            if n.op == "Const":
                value = n.attrs.get("value")
                if not isinstance(value, np.ndarray):
                    raise GraphFormatError(f"constant {n.name} holds no tensor")
                if n.name in conv_filters:      # HWIO -> OIHW, once
                    value = np.ascontiguousarray(value.transpose(3, 2, 0, 1))
                self.consts[n.name] = torch.from_numpy(np.array(value)).to(self.device)
        self.last_use: dict[str, int] = {}
        for step, n in enumerate(self.order):
            for i in n.inputs:
                self.last_use[_source(i)] = step

    @staticmethod
    def _topological(by_name: dict[str, Node], output: str) -> list[Node]:
        order: list[Node] = []
        state: dict[str, int] = {}
        stack: list[tuple[str, bool]] = [(output, False)]
        while stack:
            name, done = stack.pop()
            if done:
                state[name] = 2
                order.append(by_name[name])
                continue
            if state.get(name):
                if state[name] == 1:
                    raise GraphFormatError(f"the graph has a cycle through {name!r}")
                continue
            if name not in by_name:
                raise GraphFormatError(f"input {name!r} names no node")
            state[name] = 1
            stack.append((name, True))
            for i in reversed(by_name[name].inputs):
                if state.get(_source(i)) != 2:
                    stack.append((_source(i), False))
        return order

    def __call__(self, **feeds: Any) -> Any:
        """The output tensor for ``feeds`` (placeholder name -> tensor or array)."""
        torch = self.torch
        missing = set(self.placeholders) - set(feeds)
        if missing:
            raise ValueError(f"no value fed for placeholder(s) {sorted(missing)}")
        values: dict[str, Any] = {}
        with torch.inference_mode():
            for step, n in enumerate(self.order):
                if n.op == "Const":
                    values[n.name] = self.consts[n.name]
                elif n.op == "Placeholder":
                    values[n.name] = torch.as_tensor(feeds[n.name], device=self.device)
                else:
                    args = [values[_source(i)] for i in n.inputs]
                    values[n.name] = _OPS[n.op](torch, n, args)
                for i in n.inputs:
                    if self.last_use.get(_source(i)) == step and _source(i) != self.output:
                        values.pop(_source(i), None)
            return values[self.output]


def _source(name: str) -> str:
    """The node that feeds an input: ``conv:0`` and ``conv`` are both node ``conv``'s first output."""
    base, _, index = name.partition(":")
    if index not in ("", "0"):
        raise GraphFormatError(f"input {name!r} reads output {index} of a node; only first outputs are supported")
    return base


def _check_nhwc(n: Node) -> None:
    layout = n.attrs.get("data_format", "NHWC")
    if layout not in ("NHWC", None):
        raise GraphFormatError(f"{n.name}: data_format {layout} is not supported (only NHWC)")


def _conv2d(torch: Any, n: Node, args: list[Any]) -> Any:
    _check_nhwc(n)
    x, w = args                                         # x: NHWC; w: OIHW (turned at load)
    strides = n.attrs.get("strides") or [1, 1, 1, 1]
    dil = n.attrs.get("dilations") or [1, 1, 1, 1]
    nchw = x.permute(0, 3, 1, 2)
    if n.attrs.get("padding") == "SAME":
        pads_h = _same_pads(nchw.shape[2], w.shape[2], strides[1], dil[1])
        pads_w = _same_pads(nchw.shape[3], w.shape[3], strides[2], dil[2])
        if pads_h[0] == pads_h[1] and pads_w[0] == pads_w[1]:
            padding: Any = (pads_h[0], pads_w[0])
        else:
            nchw = torch.nn.functional.pad(nchw, (*pads_w, *pads_h))
            padding = 0
    elif n.attrs.get("padding") == "VALID":
        padding = 0
    else:
        raise GraphFormatError(f"{n.name}: padding {n.attrs.get('padding')} is not supported")
    out = torch.nn.functional.conv2d(nchw, w, stride=(strides[1], strides[2]), padding=padding,
                                     dilation=(dil[1], dil[2]))
    return out.permute(0, 2, 3, 1)


def _pool(torch: Any, n: Node, args: list[Any]) -> Any:
    _check_nhwc(n)
    k, s = n.attrs["ksize"], n.attrs["strides"]
    if k[0] != 1 or k[3] != 1 or s[0] != 1 or s[3] != 1:
        raise GraphFormatError(f"{n.name}: pooling across batch or channels is not supported")
    nchw = args[0].permute(0, 3, 1, 2)
    pads = (0, 0, 0, 0)
    if n.attrs.get("padding") == "SAME":
        ph = _same_pads(nchw.shape[2], k[1], s[1])
        pw = _same_pads(nchw.shape[3], k[2], s[2])
        pads = (*pw, *ph)
    F = torch.nn.functional
    if n.op == "MaxPool":
        if any(pads):
            nchw = F.pad(nchw, pads, value=float("-inf"))
        out = F.max_pool2d(nchw, (k[1], k[2]), (s[1], s[2]))
    else:                                               # TensorFlow averages over real pixels only
        if any(pads):
            ones = torch.ones_like(nchw[:1, :1])
            total = F.avg_pool2d(F.pad(nchw, pads), (k[1], k[2]), (s[1], s[2]), divisor_override=1)
            count = F.avg_pool2d(F.pad(ones, pads), (k[1], k[2]), (s[1], s[2]), divisor_override=1)
            out = total / count
        else:
            out = F.avg_pool2d(nchw, (k[1], k[2]), (s[1], s[2]))
    return out.permute(0, 2, 3, 1)


def _reshape(torch: Any, n: Node, args: list[Any]) -> Any:
    x, shape = args
    target = [int(v) for v in shape.reshape(-1).tolist()]
    # Freezing folded some shapes at batch 1: a leading 1 in a batch of several is the batch.
    if target and target[0] == 1 and x.shape[0] != 1:
        target[0] = int(x.shape[0])
    return x.reshape(target)


def _batch_norm(torch: Any, n: Node, args: list[Any]) -> Any:
    _check_nhwc(n)
    if n.attrs.get("is_training"):
        raise GraphFormatError(f"{n.name}: batch normalisation in training mode is not supported")
    x, scale, offset, mean, var = args[:5]
    eps = float(n.attrs.get("epsilon") or 1e-3)
    return (x - mean) * (scale * torch.rsqrt(var + eps)) + offset


def _bias_add(torch: Any, n: Node, args: list[Any]) -> Any:
    _check_nhwc(n)
    return args[0] + args[1]


def _sum(torch: Any, n: Node, args: list[Any]) -> Any:
    axes = [int(a) for a in args[1].reshape(-1).tolist()]
    return torch.sum(args[0], dim=axes, keepdim=bool(n.attrs.get("keep_dims")))


def _concat(torch: Any, n: Node, args: list[Any]) -> Any:
    return torch.cat(args[:-1], dim=int(args[-1].reshape(-1)[0]))


def _matmul(torch: Any, n: Node, args: list[Any]) -> Any:
    a, b = args
    if n.attrs.get("transpose_a"):
        a = a.t()
    if n.attrs.get("transpose_b"):
        b = b.t()
    return a @ b


_OPS: dict[str, Any] = {
    "Const": None, "Placeholder": None,
    "Identity": lambda torch, n, a: a[0],
    "Conv2D": _conv2d,
    "BiasAdd": _bias_add,
    "Relu": lambda torch, n, a: torch.relu(a[0]),
    "Relu6": lambda torch, n, a: torch.clamp(a[0], 0.0, 6.0),
    "ConcatV2": _concat,
    "Mul": lambda torch, n, a: a[0] * a[1],
    "Add": lambda torch, n, a: a[0] + a[1],
    "AddV2": lambda torch, n, a: a[0] + a[1],
    "Sub": lambda torch, n, a: a[0] - a[1],
    "MaxPool": _pool,
    "AvgPool": _pool,
    "Reshape": _reshape,
    "MatMul": _matmul,
    "FusedBatchNorm": _batch_norm,
    "FusedBatchNormV3": _batch_norm,
    "Square": lambda torch, n, a: a[0] * a[0],
    "Sum": _sum,
    "Maximum": lambda torch, n, a: torch.maximum(a[0], a[1]),
    "Rsqrt": lambda torch, n, a: torch.rsqrt(a[0]),
}


def load_graph(path: Path, output: str, device: Any = "cpu") -> GraphRunner:
    """Read ``path`` (a frozen GraphDef) and prepare it to run up to ``output``."""
    return GraphRunner(parse_graph(Path(path).read_bytes()), output, device)
