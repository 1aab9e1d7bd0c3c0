"""Which torch device to run on: CUDA when present, else the CPU, with the same code."""
from __future__ import annotations

import importlib.util
import re
from pathlib import Path

from pipeline.core.errors import UserError

DEVICE_CHOICES = ("auto", "cpu", "cuda")


def torch_build_has_gpu() -> bool:
    """Whether the installed torch was built for a GPU (CUDA or ROCm), read from its ``version.py``.

    Why not ``torch.cuda.is_available()``: it imports torch, about a second of a core, which a
    process that only needs the CPU (an extract worker describing faces in ONNX Runtime) can
    skip. A build without a GPU can never see one; a GPU build, or a file this cannot read,
    answers True and leaves the question to torch.
    """
    spec = importlib.util.find_spec("torch")
    if spec is None:
        return False
    for folder in spec.submodule_search_locations or ():
        try:
            text = (Path(folder) / "version.py").read_text()
        except OSError:
            continue
        builds = re.findall(r"^(cuda|hip)\s*(?::[^=\n]*)?=\s*(.+?)\s*$", text, re.M)
        return not builds or any(value not in ("None", "''", '""') for _, value in builds)
    return True


def on_cpu_only(requested: str = "auto") -> bool:
    """True when ``requested`` resolves to the CPU, decided without importing torch where it can be."""
    if requested == "cpu":
        return True
    return requested == "auto" and not torch_build_has_gpu()


def choose_device(requested: str = "auto"):
    """torch.device for ``auto``/``cpu``/``cuda``/``cuda:N``; a clear error if CUDA is asked for but absent."""
    import torch
    if requested == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if requested.startswith("cuda") and not torch.cuda.is_available():
        raise UserError(f"--device {requested}: this machine's torch sees no CUDA GPU "
                        f"(torch {torch.__version__}); use --device cpu or install a CUDA build of torch")
    try:
        return torch.device(requested)
    except RuntimeError as exc:
        raise UserError(f"--device {requested}: not a torch device ({exc}); use auto, cpu or cuda") from exc


def describe_device(device) -> str:
    import torch
    if device.type == "cuda":
        return f"cuda ({torch.cuda.get_device_name(device)}), torch {torch.__version__}"
    return f"cpu ({torch.get_num_threads()} threads), torch {torch.__version__}"
