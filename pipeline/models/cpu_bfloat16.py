"""bfloat16 inference on CPUs that compute it natively (AMX tiles or AVX-512 BF16).

Why: on such a CPU oneDNN runs a float network's convolutions in bfloat16 about 4x faster
than in float32 (the src person's face enhancer: 14-17 -> 4.2 ms a face on one core,
Intel Xeon with AMX, 2026-12-07), while a CPU without them emulates bfloat16 and is
slower than float32. So it is chosen by what the CPU has, never by a release's name; the
answer is read from torch's own CPU probes, which are private and so feature-detected.
"""
from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

#: torch.cpu's probes for native bfloat16 (private in torch 2.13: looked up, never named unguarded)
_PROBES = ("_is_amx_tile_supported", "_is_avx512_bf16_supported")


def native(device: Any) -> bool:
    """Whether ``device`` is a CPU that computes bfloat16 natively (False when torch cannot say)."""
    import torch
    if getattr(device, "type", str(device)) != "cpu":
        return False
    cpu = getattr(torch, "cpu", None)
    for name in _PROBES:
        probe = getattr(cpu, name, None)
        try:
            if callable(probe) and probe():
                return True
        except (RuntimeError, OSError):      # a probe that cannot run: treat as absent
            continue
    return False


def chosen(precision: str, device: Any) -> bool:
    """Whether ``--precision`` ``precision`` computes in bfloat16 on ``device``: ``auto`` on a CPU that
    computes it natively (``native``); ``float``, and ``auto`` anywhere else, stay float32."""
    return precision == "auto" and native(device)


def description(bfloat16: bool) -> str:
    """What a network's log line says about its arithmetic."""
    return "bfloat16 (the CPU's own)" if bfloat16 else "float32"


@contextlib.contextmanager
def autocast(enabled: bool) -> Iterator[None]:
    """torch's CPU autocast to bfloat16 for the block when ``enabled``, else nothing."""
    if not enabled:
        yield
        return
    import torch
    with torch.autocast("cpu", dtype=torch.bfloat16):
        yield
