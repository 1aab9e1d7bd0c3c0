"""Which torch device to run on: CUDA when present, else the CPU, with the same code."""
from __future__ import annotations

from pipeline.core.errors import UserError

DEVICE_CHOICES = ("auto", "cpu", "cuda")


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
