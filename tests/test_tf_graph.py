"""The frozen-graph reader that replaced OpenCV's TensorFlow importer (removed in OpenCV 5.1).

FaceNet run by ``evaluate.tf_graph`` must say what OpenCV 5.0 said: the reference
embeddings in ``tests/data/facenet/`` were made by ``scripts/facenet_reference.py`` with
OpenCV 5.0.0's ``readNetFromTensorflow``. Small graphs written here check TensorFlow's
semantics where PyTorch differs (SAME padding with the odd pixel after, average pools
that count real pixels only) and that bad graphs stop with a clear error.
"""
import json
import struct

import cv2
import numpy as np
import pytest

from evaluate import tf_graph
from tests.conftest import ROOT

FACENET_DATA = ROOT / "tests" / "data" / "facenet"


# --- a minimal GraphDef writer for the tests --------------------------------------------

def _varint(v: int) -> bytes:
    v &= (1 << 64) - 1
    out = bytearray()
    while True:
        byte = v & 0x7F
        v >>= 7
        if v:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _field(number: int, payload: bytes | int) -> bytes:
    if isinstance(payload, int):
        return _varint(number << 3) + _varint(payload)
    return _varint(number << 3 | 2) + _varint(len(payload)) + payload


def _tensor(array: np.ndarray) -> bytes:
    code = {np.float32: 1, np.int32: 3}[array.dtype.type]
    shape = b"".join(_field(2, _field(1, d)) for d in array.shape)
    return _field(1, code) + _field(2, shape) + _field(4, array.astype(array.dtype.newbyteorder("<")).tobytes())


def _attr(value) -> bytes:
    if isinstance(value, np.ndarray):
        return _field(8, _tensor(value))
    if isinstance(value, str):
        return _field(2, value.encode())
    if isinstance(value, bool):
        return _field(5, int(value))
    if isinstance(value, list):
        return _field(1, _field(3, b"".join(_varint(v) for v in value)))
    return _field(3, value)


def _node(name: str, op: str, inputs=(), **attrs) -> bytes:
    body = _field(1, name.encode()) + _field(2, op.encode())
    body += b"".join(_field(3, i.encode()) for i in inputs)
    body += b"".join(_field(5, _field(1, k.encode()) + _field(2, _attr(v))) for k, v in attrs.items())
    return _field(1, body)


def _graph(*nodes: bytes) -> bytes:
    return b"".join(nodes)


# --- the real network against OpenCV 5.0 ------------------------------------------------

@pytest.fixture(scope="module")
def judge():
    from evaluate.held_apart import FaceNetJudge
    return FaceNetJudge()


def _reference():
    names = json.loads((FACENET_DATA / "opencv50.json").read_text())["chips"]
    chips = [cv2.cvtColor(cv2.imread(str(FACENET_DATA / f"{n}.png")), cv2.COLOR_BGR2RGB) for n in names]
    return chips, np.load(FACENET_DATA / "opencv50.npy", allow_pickle=False)


def test_facenet_matches_opencv_5_0_to_a_cosine_distance_of_1e_4(judge):
    chips, ref = _reference()
    assert len(chips) == len(ref) >= 7
    batched = judge.embed_many(chips)
    single = np.stack([judge.embed(c) for c in chips])
    for got in (batched, single):
        cosine = 1.0 - np.sum(got * ref, axis=1)
        assert cosine.max() <= 1e-4, cosine
    # the references are not all alike: the test could fail on a network that says one thing
    assert (1.0 - ref @ ref.T).max() > 0.3


def test_a_graph_other_than_facenet_would_not_pass_the_parity_check(judge):
    chips, ref = _reference()
    flipped = judge.embed_many([c[:, ::-1] for c in chips])      # mirrored faces: another input
    rolled = np.roll(ref, 1, axis=0)
    assert (1.0 - np.sum(flipped * ref, axis=1)).max() > 1e-4
    assert (1.0 - np.sum(rolled * ref, axis=1)).max() > 1e-4


# --- TensorFlow's semantics on small graphs ----------------------------------------------

def _tf_conv_same(x: np.ndarray, w: np.ndarray, stride: int) -> np.ndarray:
    """NHWC/HWIO convolution with TensorFlow's SAME padding, written out in numpy."""
    n, h, wd, c = x.shape
    kh, kw, _, o = w.shape
    oh, ow = -(-h // stride), -(-wd // stride)
    ph = max((oh - 1) * stride + kh - h, 0)
    pw = max((ow - 1) * stride + kw - wd, 0)
    xp = np.pad(x, ((0, 0), (ph // 2, ph - ph // 2), (pw // 2, pw - pw // 2), (0, 0)))
    out = np.zeros((n, oh, ow, o), np.float64)
    for i in range(oh):
        for j in range(ow):
            patch = xp[:, i * stride:i * stride + kh, j * stride:j * stride + kw, :]
            out[:, i, j] = np.tensordot(patch, w, axes=([1, 2, 3], [0, 1, 2]))
    return out


@pytest.mark.parametrize("size,stride", [(6, 2), (7, 2), (5, 1)])
def test_conv_same_padding_puts_the_odd_pixel_after(size, stride):
    rng = np.random.default_rng(size * 10 + stride)
    x = rng.standard_normal((2, size, size, 3)).astype(np.float32)
    w = rng.standard_normal((3, 3, 3, 4)).astype(np.float32)
    b = rng.standard_normal(4).astype(np.float32)
    data = _graph(
        _node("x", "Placeholder", dtype=1),
        _node("w", "Const", value=w),
        _node("b", "Const", value=b),
        _node("conv", "Conv2D", ["x:0", "w"], strides=[1, stride, stride, 1], padding="SAME", data_format="NHWC"),
        _node("out", "BiasAdd", ["conv", "b"]),
        _node("relu", "Relu", ["out"]),
    )
    runner = tf_graph.GraphRunner(tf_graph.parse_graph(data), "out")
    got = runner(x=x).numpy()
    want = _tf_conv_same(x, w, stride) + b
    assert got.shape == want.shape
    assert np.abs(got - want).max() < 1e-4


def test_average_pool_with_same_padding_counts_real_pixels_only():
    x = np.ones((1, 4, 4, 1), np.float32)
    data = _graph(_node("x", "Placeholder", dtype=1),
                  _node("pool", "AvgPool", ["x"], ksize=[1, 3, 3, 1], strides=[1, 2, 2, 1], padding="SAME"),
                  _node("maxp", "MaxPool", ["x"], ksize=[1, 3, 3, 1], strides=[1, 2, 2, 1], padding="SAME"))
    nodes = tf_graph.parse_graph(data)
    avg = tf_graph.GraphRunner(nodes, "pool")(x=x).numpy()
    assert avg.shape == (1, 2, 2, 1) and np.allclose(avg, 1.0)     # zero padding counted would give < 1
    x2 = -np.ones((1, 4, 4, 1), np.float32)
    assert np.allclose(tf_graph.GraphRunner(nodes, "maxp")(x=x2).numpy(), -1.0)   # padding is -inf, not 0


def test_a_constant_stored_as_one_value_fills_its_shape_and_reshape_batches():
    shape = b"".join(_field(2, _field(1, d)) for d in (2, 3))
    splat = _field(1, 1) + _field(2, shape) + _field(5, struct.pack("<f", 2.5))
    value = _field(5, _field(1, b"value") + _field(2, _field(8, splat)))
    const = _field(1, _field(1, b"c") + _field(2, b"Const") + value)
    data = _graph(const, _node("x", "Placeholder", dtype=1),
                  _node("shape", "Const", value=np.array([1, -1], np.int32)),
                  _node("flat", "Reshape", ["x", "shape"]),
                  _node("mm", "MatMul", ["flat", "c"]))
    nodes = tf_graph.parse_graph(data)
    runner = tf_graph.GraphRunner(nodes, "mm")
    assert np.array_equal(runner.consts["c"].numpy(), np.full((2, 3), 2.5, np.float32))
    # a shape frozen at batch 1 still takes a batch of three
    out = runner(x=np.ones((3, 1, 1, 2), np.float32)).numpy()
    assert out.shape == (3, 3) and np.allclose(out, 5.0)


def test_an_operation_the_reader_does_not_run_is_named():
    data = _graph(_node("x", "Placeholder", dtype=1), _node("y", "Softplus", ["x"]))
    with pytest.raises(tf_graph.GraphFormatError, match="Softplus"):
        tf_graph.GraphRunner(tf_graph.parse_graph(data), "y")


@pytest.mark.parametrize("data", [b"", b"\x0a\xff\xff\xff", b"\x0a\x05abc", b"not a graph at all"])
def test_bytes_that_are_not_a_graph_are_refused(data):
    with pytest.raises(tf_graph.GraphFormatError):
        tf_graph.parse_graph(data)


def test_a_missing_output_node_or_input_is_named():
    data = _graph(_node("x", "Placeholder", dtype=1), _node("y", "Relu", ["z"]))
    nodes = tf_graph.parse_graph(data)
    with pytest.raises(tf_graph.GraphFormatError, match="'nope'"):
        tf_graph.GraphRunner(nodes, "nope")
    with pytest.raises(tf_graph.GraphFormatError, match="'z'"):
        tf_graph.GraphRunner(nodes, "y")


def test_facenet_stays_off_opencv_s_tensorflow_importer():
    """The held-apart network must run where OpenCV has no TensorFlow importer (5.1 and later)."""
    source = (ROOT / "evaluate" / "held_apart.py").read_text() + (ROOT / "evaluate" / "tf_graph.py").read_text()
    assert "readNetFromTensorflow" not in source
