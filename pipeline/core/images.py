"""Image file I/O: tolerant reading (alpha, grayscale, 16-bit, EXIF) and atomic writes."""
from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")


@contextlib.contextmanager
def opencv_threads(count: int) -> Iterator[None]:
    """OpenCV's own thread count set to ``count`` for the block, restored after.

    Why: extract and convert run their per-frame work in a pool of one thread per core, and
    OpenCV splitting each small call (a 128-512 px warp, blur or dnn layer) over its own
    threads on top of that only adds hand-offs: extract's per-frame work took 18% more CPU
    with OpenCV's 2 threads than with one on the 2-core machine.
    """
    before = cv2.getNumThreads()
    cv2.setNumThreads(count)
    try:
        yield
    finally:
        cv2.setNumThreads(before)


class ImageReadError(ValueError):
    """The file exists but is not a decodable image."""


def to_lab(image: np.ndarray) -> np.ndarray:
    """An RGB uint8 image as float32 CIELAB (L* 0-100): the colour space every delta E here is measured in."""
    return cv2.cvtColor(image.astype(np.float32) / 255.0, cv2.COLOR_RGB2Lab)


def is_image_path(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_EXTENSIONS


def list_images(folder: Path) -> list[Path]:
    """Image files directly in ``folder``, in natural (name) order; hidden files skipped."""
    return sorted((p for p in folder.iterdir()
                   if p.is_file() and is_image_path(p) and not p.name.startswith(".")),
                  key=lambda p: p.name)


def read_rgb(path: Path) -> np.ndarray:
    """Decode any image as 8-bit RGB (H, W, 3).

    IMREAD_COLOR drops alpha, expands grayscale, scales 16-bit down and applies the EXIF
    orientation, so phone photos come out upright. Any size that decodes is returned, a
    1x1 PNG too: an image too small to hold a face is the caller's "no face found", not
    an unreadable file.
    """
    try:
        data = np.fromfile(str(path), dtype=np.uint8)
    except OSError as exc:
        raise ImageReadError(f"cannot read {path}: {exc.strerror}") from exc
    image = cv2.imdecode(data, cv2.IMREAD_COLOR) if data.size else None
    if image is None or image.ndim != 3 or min(image.shape[:2]) < 1:
        raise ImageReadError(f"{path} is not a readable image (corrupt or unsupported format)")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def read_gray(path: Path) -> np.ndarray | None:
    """Decode a mask as 8-bit single channel; None when missing or unreadable."""
    if not path.is_file():
        return None
    data = np.fromfile(str(path), dtype=np.uint8)
    return cv2.imdecode(data, cv2.IMREAD_GRAYSCALE) if data.size else None


def encode(image: np.ndarray, ext: str, rgb: bool = True) -> bytes:
    """Encode to ``ext`` (".png"/".jpg") bytes; RGB input is swapped to cv2's BGR."""
    if rgb and image.ndim == 3:
        image = cv2.cvtColor(image, cv2.COLOR_RGB2BGR)
    # PNG: fastest zlib level with Huffman-only coding (3.6 ms and 99 KB a 256 face,
    # against 4.6 ms and 105 KB for the default strategy)
    params = ([cv2.IMWRITE_JPEG_QUALITY, 95] if ext in (".jpg", ".jpeg") else
              [cv2.IMWRITE_PNG_COMPRESSION, 1, cv2.IMWRITE_PNG_STRATEGY, cv2.IMWRITE_PNG_STRATEGY_HUFFMAN_ONLY])
    ok, buf = cv2.imencode(ext, image, params)
    if not ok:
        raise ValueError(f"could not encode image as {ext}")
    return buf.tobytes()


def outlined_text(image: np.ndarray, text: str, origin: tuple[int, int], scale: float,
                  colour: tuple[int, int, int], thickness: int = 1, outline: int = 2) -> None:
    """``text`` in ``colour`` with a black outline ``outline`` pixels wide, drawn into ``image``.

    The outline is the same text, at the same thickness, stamped around the origin: OpenCV 5
    lays out thicker Hershey text wider (a bold face with its own advance), so a thick black
    copy under a thin coloured one ran past it and doubled every label's letters.
    """
    for dy in range(-outline, outline + 1):
        for dx in range(-outline, outline + 1):
            if (dx or dy) and dx * dx + dy * dy <= outline * outline + 1:
                cv2.putText(image, text, (origin[0] + dx, origin[1] + dy), cv2.FONT_HERSHEY_SIMPLEX, scale,
                            (0, 0, 0), thickness, cv2.LINE_AA)
    cv2.putText(image, text, origin, cv2.FONT_HERSHEY_SIMPLEX, scale, colour, thickness, cv2.LINE_AA)
