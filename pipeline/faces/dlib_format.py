"""Reader for dlib's binary serialization format (numpy only, no dlib needed).

dlib model files (``.dat``) are streams of dlib's own ``serialize`` records. Reading
them ourselves lets us load the shape predictor's mean shape (our alignment template)
and the face-recognition ResNet weights into PyTorch without importing dlib, and
without any pickle.
"""
from __future__ import annotations

import bz2
from pathlib import Path

import numpy as np


class DlibFormatError(ValueError):
    """The bytes do not follow dlib's serialization format."""


class DlibReader:
    """Sequential reader over the bytes of a dlib-serialized file."""

    def __init__(self, data: bytes, name: str = "<bytes>") -> None:
        self.data = data
        self.pos = 0
        self.name = name

    @classmethod
    def from_file(cls, path: str | Path, max_bytes: int | None = None) -> DlibReader:
        """Open a .dat file (plain, or .bz2 compressed as dlib distributes them).

        ``max_bytes`` reads only the head of a plain file, for records stored first.
        """
        with open(path, "rb") as fh:
            raw = fh.read(-1 if max_bytes is None else max_bytes)
        if max_bytes is not None and raw[:3] == b"BZh":
            raw = Path(path).read_bytes()
        if raw[:3] == b"BZh":
            raw = bz2.decompress(raw)
        return cls(raw, str(path))

    def _take(self, n: int) -> bytes:
        if self.pos + n > len(self.data):
            raise DlibFormatError(f"{self.name}: unexpected end of file at byte {self.pos}")
        chunk = self.data[self.pos:self.pos + n]
        self.pos += n
        return chunk

    def read_int(self) -> int:
        """Integer: control byte (low 4 bits = byte count, 0x80 = negative), then LE bytes."""
        ctrl = self._take(1)[0]
        size = ctrl & 0x0F
        if size > 8:
            raise DlibFormatError(f"{self.name}: bad integer control byte {ctrl:#x} at {self.pos - 1}")
        value = int.from_bytes(self._take(size), "little") if size else 0
        return -value if ctrl & 0x80 else value

    def read_bool(self) -> bool:
        return self._take(1) != b"0"

    def read_string(self) -> str:
        n = self.read_int()
        return self._take(n).decode("latin-1")

    def read_float(self) -> float:
        """Float: mantissa integer then exponent integer, value = m * 2**e."""
        mantissa = self.read_int()
        exponent = self.read_int()
        return float(np.ldexp(float(mantissa), exponent))

    def read_float_matrix(self) -> np.ndarray:
        """dlib::matrix<float>: -rows, -cols (negated in the format), then row-major floats."""
        rows = abs(self.read_int())
        cols = abs(self.read_int())
        values = [self.read_float() for _ in range(rows * cols)]
        return np.asarray(values, dtype=np.float64).reshape(rows, cols)

    def read_tensor(self) -> np.ndarray:
        """dlib::tensor: version 2, then n, k, nr, nc, then raw little-endian float32."""
        version = self.read_int()
        if version != 2:
            raise DlibFormatError(f"{self.name}: tensor version {version} at byte {self.pos}, expected 2")
        n, k, nr, nc = (self.read_int() for _ in range(4))
        count = n * k * nr * nc
        raw = self._take(4 * count)
        return np.frombuffer(raw, dtype="<f4").reshape(n, k, nr, nc).copy()

    def read_alias_tensor_shape(self) -> tuple[int, int, int, int]:
        """dlib::alias_tensor: version 1, then n, k, nr, nc.

        dnn layers keep all their weights in one flat params tensor and describe each
        part (filters, biases, gamma, beta) by such a shape; we need it to slice them.
        """
        version = self.read_int()
        if version != 1:
            raise DlibFormatError(f"{self.name}: alias_tensor version {version} at byte {self.pos}, expected 1")
        n, k, nr, nc = (self.read_int() for _ in range(4))
        return n, k, nr, nc

    @property
    def at_end(self) -> bool:
        """True once every byte is consumed, so a parser can check nothing was left over."""
        return self.pos >= len(self.data)


def read_shape_predictor_mean_shape(path: str | Path) -> np.ndarray:
    """The shape predictor's initial (mean) shape, as (N, 2) in detection-box units.

    dlib's shape_predictor file starts with a version integer, then the mean shape as a
    column vector (x0, y0, x1, y1, ...), normalised to the unit detection box. It is the
    average face over the model's training set, which makes it a good alignment template.
    """
    reader = DlibReader.from_file(path, max_bytes=1 << 16)  # the mean shape comes first
    version = reader.read_int()
    if version != 1:
        raise DlibFormatError(f"{path}: shape predictor version {version}, expected 1")
    flat = reader.read_float_matrix().reshape(-1)
    if flat.size % 2:
        raise DlibFormatError(f"{path}: odd number of values in the mean shape")
    return flat.reshape(-1, 2)

