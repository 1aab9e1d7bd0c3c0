"""A model on disk: ``weights.pt`` (a plain state dict) and ``options.json``, for any model type.

``options.json`` records ``model_type`` (the registry name; models written before it
existed are transformation networks), ``format_version``, the architecture and how it
was trained. Weights are tensors only, loaded with ``weights_only=True``: opening
someone else's model cannot run code.
"""
from __future__ import annotations

import contextlib
import itertools
import json
from pathlib import Path
from typing import Any

import torch

from pipeline.core.errors import UserError
from pipeline.core.files import write_atomic
from pipeline.models.interface import FaceModel

FORMAT_VERSION = 1
WEIGHTS_FILE = "weights.pt"
OPTIONS_FILE = "options.json"
#: What a model without a ``model_type`` key is (every model written before the key existed).
LEGACY_MODEL_TYPE = "transform"
_RETRAIN = "retrain with 'python main.py train'"


def model_class(type_name: str) -> type[FaceModel]:
    from pipeline.registries import MODEL_TYPES
    cls: type[FaceModel] = MODEL_TYPES.load(type_name)
    return cls


def save_model(folder: Path, model: FaceModel, options: dict[str, Any]) -> None:
    """Write ``weights.pt`` and ``options.json`` (``options`` + type, version, architecture), atomically."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    meta = {**options, **model.architecture(), "model_type": model.type_name, "format_version": FORMAT_VERSION}
    text = json.dumps(meta, indent=2, sort_keys=True) + "\n"
    state = {k: v.detach().cpu() for k, v in model.network.state_dict().items()}
    write_atomic(folder / WEIGHTS_FILE, lambda fh: torch.save(state, fh))
    write_atomic(folder / OPTIONS_FILE, text.encode())


def read_options(folder: Path, kind: type[FaceModel] | None = None, retrain: str = _RETRAIN) -> dict[str, Any]:
    """``options.json`` checked for what every model needs; UserError naming the file and the fix.

    ``kind`` is a model class outside the model-type registry (the mask segmenter): the
    file must name its type. ``retrain`` is the fix to name (how to train that kind).
    """
    path = Path(folder) / OPTIONS_FILE
    if not path.is_file():
        raise UserError(f"no trained model in {folder} ({OPTIONS_FILE} is missing); {_first(retrain)}")
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise UserError(f"model options {path} are unreadable ({one_line(err)}); restore the file "
                        f"or {retrain}") from err
    if not isinstance(meta, dict):
        raise UserError(f"model options {path} are not a JSON object; restore the file or {retrain}")
    version = meta.get("format_version")
    if not isinstance(version, int) or isinstance(version, bool):
        raise UserError(f"model options {path} have no valid format_version; restore the file or {retrain}")
    if version > FORMAT_VERSION:
        raise UserError(f"model {path} has format_version {version}, newer than this tool understands "
                        f"({FORMAT_VERSION}); update the tool")
    meta.setdefault("model_type", LEGACY_MODEL_TYPE)
    if kind is not None:
        if meta["model_type"] != kind.type_name:
            raise UserError(f"{path} describes a '{meta['model_type']}' model, not a '{kind.type_name}' "
                            f"model; {retrain}")
    else:
        from pipeline.registries import MODEL_TYPES
        if meta["model_type"] not in MODEL_TYPES:
            raise UserError(f"model {path} is of type '{meta['model_type']}', which this tool does not know "
                            f"(it knows {', '.join(MODEL_TYPES.names())}); update the tool or {retrain}")
    # sizes in range before anyone builds (or estimates) the network: a tampered width must not allocate
    (kind or model_class(meta["model_type"])).check_options(meta, path, f"restore the file or {retrain}")
    return meta


def one_line(err: BaseException) -> str:
    text = " ".join(str(err).split())
    return text if len(text) <= 300 else text[:297] + "..."


def _first(retrain: str) -> str:
    """"retrain with 'CMD'" -> "run 'CMD' first" (the fix when there is no model yet)."""
    return retrain.replace("retrain with", "run", 1) + " first"


def load_model(folder: Path, device: str | torch.device = "cpu", kind: type[FaceModel] | None = None,
               retrain: str = _RETRAIN, batch: int = 1, initialise: bool = True) -> tuple[FaceModel, dict[str, Any]]:
    """Rebuild the model ``options.json`` describes and load ``weights.pt`` into it; eval mode.

    UserError (naming the file and the fix) for a missing model, unreadable, newer or
    out-of-range options, an unknown type, a model (run at ``batch`` faces a call) that
    needs more memory than the device has, and weights that are corrupt, not a plain
    state dict, or do not fit the options.

    ``initialise=False`` builds the network on the meta device and takes the file's tensors
    as its parameters: the random initialisation the weights replace is skipped (the
    orthogonal init's QR decompositions were a second of convert's start-up on 2 cores), and
    so is its use of torch's random numbers, which a caller that goes on training wants kept
    as it was.
    """
    from pipeline.models.memory import require
    folder = Path(folder)
    options_path, weights_path = folder / OPTIONS_FILE, folder / WEIGHTS_FILE
    for path in (options_path, weights_path):
        if not path.is_file():
            raise UserError(f"no trained model in {folder} ({path.name} is missing); {_first(retrain)}")
    meta = read_options(folder, kind, retrain)
    cls = kind or model_class(meta["model_type"])
    require(cls, meta, batch, False, device, f"the model in {folder}",
            f"lower --batch-size (now {batch}) if the command has it, or free memory (close other programs)")
    with torch.device("meta") if not initialise else contextlib.nullcontext():
        model = cls.from_options(meta, options_path)
    try:
        state = torch.load(weights_path, map_location=device, weights_only=True)
    except Exception as err:  # corrupt/truncated file, or pickled objects refused
        raise UserError(f"model weights {weights_path} are unreadable or not a plain state dict "
                        f"({one_line(err)}); {retrain}") from err
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise UserError(f"model weights {weights_path} are not a state dict of tensors; {retrain}")
    net = model.network
    try:
        net.load_state_dict(state, strict=True, assign=not initialise)
    except RuntimeError as err:
        expected = net.state_dict()
        missing = sorted(set(expected) - set(state))
        unexpected = sorted(set(state) - set(expected))
        shapes = sorted(k for k in set(expected) & set(state) if expected[k].shape != state[k].shape)
        detail = "; ".join(f"{name} {keys[:3]}{'...' if len(keys) > 3 else ''}"
                           for name, keys in (("missing", missing), ("unexpected", unexpected),
                                              ("wrong shape", shapes)) if keys)
        arch = ", ".join(f"{k} {v}" for k, v in model.architecture().items())
        raise UserError(f"model weights {weights_path} do not match {options_path} ({arch}: "
                        f"{detail or one_line(err)}); restore the matching {OPTIONS_FILE} or {retrain}") from err
    if any(t.is_meta for t in itertools.chain(net.parameters(), net.buffers())):     # a tensor the file lacks
        return load_model(folder, device, kind, retrain, batch, initialise=True)
    net.to(device)
    net.eval()
    model.folder = folder
    return model, meta
