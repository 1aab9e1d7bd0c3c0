"""Loading a published PyTorch weight file into our own module definition, or a clear error.

The facexlib backends define their networks here (facexlib imports torchvision, which
cannot load on this machine) and read facexlib's published ``.pth`` files into them.
Those files are never downloaded by the tool: ``pipeline.core.weights.model_path``
names the file, its URL and where to put it when it is missing, and everything that can
go wrong after that (a truncated or foreign file, keys or shapes that do not fit) is a
one-line UserError too, never a traceback and never a fallback to another model.
"""
from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from pipeline.core.errors import UserError
from pipeline.core.weights import WEIGHTS, how_to_get, model_path


def _one_line(err: BaseException, limit: int = 200) -> str:
    return " ".join(str(err).split())[:limit] or type(err).__name__


def strip_module_prefix(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Keys without the ``module.`` that ``nn.DataParallel`` training puts in front of every name."""
    return {(k[len("module."):] if k.startswith("module.") else k): v for k, v in state.items()}


def load_weights(key: str, net: nn.Module) -> Path:
    """Fill ``net`` from the registered weight file ``key`` (strict keys and shapes); its path.

    ``weights_only=True``: a ``.pth`` file is a pickle, and only tensors and plain
    containers are accepted from it.
    """
    w = WEIGHTS[key]
    path = model_path(key)                       # UserError naming file, URL and folder if absent
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:
        raise UserError(f"model file {path} is unreadable ({_one_line(err)}); delete it and "
                        f"{how_to_get(key)}") from err
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise UserError(f"model file {path} holds no state dict of tensors ({w.purpose}); "
                        f"{how_to_get(key)}")
    try:
        net.load_state_dict(strip_module_prefix(state), strict=True)
    except RuntimeError as err:
        raise UserError(f"model file {path} does not fit {type(net).__name__} ({_one_line(err)}); "
                        f"it should be {w.file} from {w.url}") from err
    return path


def ready_network(key: str, net: nn.Module) -> tuple[nn.Module, Path, torch.device]:
    """A backend's network with its weights, frozen, on CUDA when present, else the CPU.

    Returns (network, weights path, device): every torch backend starts this way.
    """
    from pipeline.core.device import choose_device
    device = choose_device("auto")
    path = load_weights(key, net)
    return net.eval().requires_grad_(False).to(device), path, device
