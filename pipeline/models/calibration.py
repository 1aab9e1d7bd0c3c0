"""int8 activation ranges stored with the model, so convert need not calibrate on every run.

Why: the int8 net's activation ranges come from float passes over a few dst crops (about
1.4 s of convert's start-up on 2 cores, a tenth of the whole run on the Hill clip), and they
depend only on the weights and those crops. Train, which writes the weights, stores the
ranges beside them (``int8_calibration.json``); convert reads them back when both still
match and otherwise calibrates as it always did. Convert never writes the file: it only
reads the workspace.

The file is JSON (no pickle), written atomically, and keyed by a hash of the weights'
tensors, a hash of the calibration crops and torch's version. Anything that does not
match exactly (other weights, faces deleted or re-extracted since, another torch, a
damaged or edited file) is ignored and the ranges are computed again.
"""
from __future__ import annotations

import hashlib
import json
import logging
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

import cv2
import numpy as np

from pipeline.core.files import write_atomic
from pipeline.core.images import ImageReadError, read_gray, read_rgb
from pipeline.core.low_light import DEFAULT_TARGET, lift
from pipeline.workspace.records import FaceRow
from pipeline.workspace.store import Workspace

if TYPE_CHECKING:
    from torch import nn

log = logging.getLogger("convert")

CALIBRATION_FILE = "int8_calibration.json"
FORMAT = 1
#: how many dst faces calibrate (evenly spaced over the kept ones)
COUNT = 16


def calibration_crops(ws: Workspace, rows: list[FaceRow], resolution: int, count: int = COUNT,
                      low_light: float = DEFAULT_TARGET) -> list[np.ndarray]:
    """Evenly spaced kept dst faces at the network's resolution (for int8 activation ranges); train and
    convert take the same ones, so what train stores is what convert would compute. A face darker than
    ``low_light`` is lifted as convert lifts it for the network (``pipeline.core.low_light``), so the
    ranges are those of what the network sees; faces as bright as that are as before."""
    kept = [r for r in rows if not r.dropped]
    crops: list[np.ndarray] = []
    if not kept:
        return crops
    for i in np.linspace(0, len(kept) - 1, min(count, len(kept))).round().astype(int):
        try:
            img = read_rgb(ws.aligned_path(kept[i]))
        except ImageReadError:
            continue
        crop = cv2.resize(img, (resolution, resolution), interpolation=cv2.INTER_AREA)
        if low_light > 0:                    # the mask at the aligned size: ``lift`` brings it to the crop's
            crop = lift(crop, read_gray(ws.mask_path(kept[i])), low_light)[0]
        crops.append(crop)
    return crops


def weights_digest(net: nn.Module) -> str:
    """sha256 of the net's state dict: names, dtypes, shapes and bytes (the weights as loaded, whatever file
    format held them)."""
    import torch
    h = hashlib.sha256()
    for name, tensor in net.state_dict().items():
        t = tensor.detach().cpu().contiguous()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}\n".encode())
        h.update(t.numpy().tobytes() if t.dtype != torch.bfloat16 else t.float().numpy().tobytes())
    return h.hexdigest()


def crops_digest(crops: list[np.ndarray]) -> str:
    """sha256 of the calibration crops' pixels, in order."""
    h = hashlib.sha256()
    for c in crops:
        h.update(f"{c.shape}|{c.dtype}\n".encode())
        h.update(np.ascontiguousarray(c).tobytes())
    return h.hexdigest()


def key(net: nn.Module, crops: list[np.ndarray]) -> dict[str, Any]:
    """What stored ranges must have been computed from to be used."""
    import torch  # here, not at the top: convert reads the calibration crops in a process without torch
    return {"format": FORMAT, "weights_sha256": weights_digest(net), "crops_sha256": crops_digest(crops),
            "crops": len(crops), "torch": torch.__version__}


def _valid_ranges(ranges: object) -> bool:
    if not isinstance(ranges, dict) or not ranges:
        return False
    for name, pair in ranges.items():
        if not isinstance(name, str) or not isinstance(pair, list) or len(pair) != 2:
            return False
        if not all(isinstance(v, float) and math.isfinite(v) for v in pair) or pair[0] > pair[1]:
            return False
    return True


def load_ranges(folder: Path, expected: dict[str, Any]) -> dict[str, list[float]] | None:
    """The stored ranges when the file exists, is well formed and its key equals ``expected``; else None
    (and a log line saying why, unless there is no file)."""
    path = Path(folder) / CALIBRATION_FILE
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        log.info("convert: %s is unreadable (%s); calibrating int8 again", path, exc)
        return None
    if not isinstance(data, dict) or data.get("key") != expected:
        log.info("convert: %s was stored for other weights, dst faces or torch; calibrating int8 again", path)
        return None
    ranges = data.get("ranges")
    if not _valid_ranges(ranges):
        log.info("convert: %s holds no valid ranges; calibrating int8 again", path)
        return None
    assert isinstance(ranges, dict)
    return ranges


def save_ranges(folder: Path, stored_key: dict[str, Any], ranges: dict[str, list[float]]) -> Path:
    """Write the ranges and their key to ``folder``, atomically; the path written."""
    if not _valid_ranges(ranges):
        raise ValueError("int8 ranges must be finite [min, max] pairs")
    path = Path(folder) / CALIBRATION_FILE
    text = json.dumps({"key": stored_key, "ranges": ranges}, indent=1, sort_keys=True, allow_nan=False) + "\n"
    write_atomic(path, text.encode())
    return path
