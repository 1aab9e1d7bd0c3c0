"""Loading a published PyTorch state dict into our own module definition, safely and strictly.

Backends that port another project's network (S3FD, 2D-FAN) define the architecture here
and read the other project's weight file as plain tensors: ``torch.load`` with
``weights_only=True`` refuses pickled code, and ``strict=True`` makes any drift between our
definition and the file a clear error instead of a half-initialised network. Every failure
is a one-line UserError naming the file, where it comes from and where it must go.
"""
from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import torch
from torch import nn

from pipeline.core.errors import UserError
from pipeline.core.weights import WEIGHTS, how_to_get, model_path


def _one_line(err: BaseException, limit: int = 200) -> str:
    return " ".join(str(err).split())[:limit] or type(err).__name__


def load_state(key: str, net: nn.Module) -> Path:
    """Fill ``net`` from the registered weight file ``key`` (strict keys); return the file's path.

    Missing file, unreadable bytes, something that is not a tensor dict, or keys and shapes
    that do not fit ``net``: each raises UserError with how to get the right file. Nothing
    is ever downloaded here and no other model is substituted.
    """
    w = WEIGHTS[key]
    path = model_path(key)                 # UserError naming file, URL and place when absent
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:
        raise UserError(f"model file {path} is unreadable ({_one_line(err)}); delete it and "
                        f"{how_to_get(key)}") from err
    if not isinstance(state, Mapping) or not all(
            isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items()):
        raise UserError(f"model file {path} is not a state dict of tensors ({w.purpose}); {how_to_get(key)}")
    try:
        net.load_state_dict(state, strict=True)
    except RuntimeError as err:
        raise UserError(f"model file {path} does not fit the {w.purpose} network "
                        f"({_one_line(err)}); {how_to_get(key)}") from err
    return path
