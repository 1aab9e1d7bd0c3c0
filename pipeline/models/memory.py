"""Will the model fit? Its memory estimated before it is built, and a one-line refusal when it will not.

A width or batch too large for the machine used to show itself as a process growing
until the kernel's OOM killer ended it (convert reached 24 GB on a tampered
options.json), often taking other programs with it. Here the model is built on torch's
``meta`` device, where tensors have shapes but no storage, and run once on a meta
batch of the size the command will use, so its parameters and activations are counted
in a few milliseconds without allocating them:

- convert (inference): parameters and buffers, plus three times the largest
  activation (the input and output of a layer and a skip connection held meanwhile),
  plus the batch in and out;
- train: parameters four times (weights, gradients, Adam's two moments), buffers, and
  every activation of the forward pass (autograd keeps them for the backward pass).

Loss networks, data and the frames convert holds come on top; the estimate is what the
model alone needs, so a refusal is certain to be right while a model that passes may
still meet a machine that is nearly full.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from pipeline.core import memory as machine
from pipeline.core.errors import UserError
from pipeline.core.files import format_bytes
from pipeline.models.interface import FaceModel

log = logging.getLogger("models")

#: Inference keeps about this many of its largest activations at once (a layer's input and output, a skip).
INFERENCE_LIVE_ACTIVATIONS = 3
#: Training keeps each parameter this many times: weights, gradients and Adam's two moments.
TRAINING_PARAMETER_COPIES = 4


@dataclass(frozen=True)
class Estimate:
    """Bytes a model needs at a batch size, for training or inference."""

    parameters: int            # scalar parameters
    parameter_bytes: int
    activation_bytes: int      # measured on the meta device (0 where the forward pass could not run there)
    total: int
    batch: int
    training: bool


def _size(out: Any) -> tuple[int, int]:
    """(sum, largest) of the bytes of the tensors in a module's output."""
    tensors = [t for t in (out if isinstance(out, (tuple, list)) else (out,)) if isinstance(t, torch.Tensor)]
    sizes = [t.numel() * t.element_size() for t in tensors]
    return sum(sizes), max(sizes, default=0)


def estimate(cls: type[FaceModel], options: dict[str, Any], batch: int, training: bool) -> Estimate:
    """What a ``cls`` model with ``options`` (checked by ``cls.check_options`` first) needs at ``batch``."""
    with torch.device("meta"):
        model = cls.from_options(options)
    net = model.network
    params = sum(p.numel() for p in net.parameters())
    param_bytes = sum(p.numel() * p.element_size() for p in net.parameters())
    buffer_bytes = sum(b.numel() * b.element_size() for b in net.buffers())
    total_act = largest = 0

    def count(module: nn.Module, inputs: Any, out: Any) -> None:
        nonlocal total_act, largest
        if getattr(module, "inplace", False):           # writes into its input: no new memory
            return
        whole, big = _size(out)
        total_act += whole
        largest = max(largest, big)

    leaves = [m for m in net.modules() if next(m.children(), None) is None]
    hooks = [m.register_forward_hook(count) for m in leaves]
    x = torch.empty(batch, 3, model.resolution, model.resolution, device="meta")
    try:
        with torch.set_grad_enabled(training):
            model.run_for_estimate(x, training)
    except Exception as exc:  # noqa: BLE001 - an op without a meta kernel: the parameters still count
        log.debug("memory estimate: the forward pass did not run on the meta device (%s)", exc)
        total_act = largest = 0
    finally:
        for h in hooks:
            h.remove()
    batch_bytes = 2 * x.numel() * x.element_size()
    if training:
        act = total_act
        total = TRAINING_PARAMETER_COPIES * param_bytes + buffer_bytes + act + batch_bytes
    else:
        act = INFERENCE_LIVE_ACTIVATIONS * largest
        total = param_bytes + buffer_bytes + act + batch_bytes
    return Estimate(params, param_bytes, act, total, batch, training)


def device_memory(device: torch.device) -> machine.Memory:
    """Memory the model's tensors will live in: the GPU's for CUDA, else this machine's (or container's)."""
    if device.type == "cuda":
        free, total = torch.cuda.mem_get_info(device)
        return machine.Memory(total=int(total), available=int(free))
    return machine.machine_memory()


#: ``inference_bound`` is trusted in place of the measured estimate when this many times it still fits.
BOUND_MARGIN = 4


def inference_bound(cls: type[FaceModel], options: dict[str, Any], batch: int) -> Estimate:
    """An upper bound of what inference needs, without running the net: every live activation counted as
    the batch times the widest layer (convolutions' input or output channels, linear layers' features) at
    the input's full resolution.

    Why: the meta-device forward of ``estimate`` makes torch import its tracing machinery
    (torch._dynamo, 0.7-1.5 s on 2 cores) on every convert, to prove that a 0.3M-parameter
    net fits in gigabytes. Building the net on the meta device imports nothing. The bound
    holds for nets whose layers do not work above the input's resolution (all of ours).
    """
    with torch.device("meta"):
        model = cls.from_options(options)
    net = model.network
    params = sum(p.numel() for p in net.parameters())
    param_bytes = sum(p.numel() * p.element_size() for p in net.parameters())
    buffer_bytes = sum(b.numel() * b.element_size() for b in net.buffers())
    pixels = model.resolution * model.resolution
    widest = max([max(m.in_channels, m.out_channels) * pixels for m in net.modules()
                  if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d))] +
                 [max(m.in_features, m.out_features) for m in net.modules() if isinstance(m, nn.Linear)] + [3 * pixels])
    act = INFERENCE_LIVE_ACTIVATIONS * batch * widest * 4
    batch_bytes = 2 * batch * 3 * pixels * 4
    return Estimate(params, param_bytes, act, param_bytes + buffer_bytes + act + batch_bytes, batch, False)


def require(cls: type[FaceModel], options: dict[str, Any], batch: int, training: bool, device: torch.device | str,
            what: str, fix: str) -> Estimate:
    """The estimate, or a UserError when it exceeds the memory available: what needs how much, what there is,
    and ``fix`` (what to lower). Call it after ``cls.check_options`` and before building the model.

    For inference, ``inference_bound`` answers when ``BOUND_MARGIN`` times it fits; otherwise (and for
    training) the net is measured on the meta device."""
    device = torch.device(device)
    have = device_memory(device)
    if not training:
        bound = inference_bound(cls, options, batch)
        if BOUND_MARGIN * bound.total <= have.available:
            log.debug("memory: %s needs at most %s, %s available", what, format_bytes(bound.total),
                      format_bytes(have.available))
            return bound
    need = estimate(cls, options, batch, training)
    if need.total > have.available:
        where = f"the GPU ({device})" if device.type == "cuda" else "this machine"
        raise UserError(f"{what} needs about {format_bytes(need.total)} of memory ({need.parameters / 1e6:.1f}M "
                        f"parameters, batch {batch}{', training' if training else ''}) but {where} has "
                        f"{format_bytes(have.available)} available ({format_bytes(have.total)} in all); {fix}",
                        exit_code=1)
    log.debug("memory: %s needs about %s, %s available", what, format_bytes(need.total),
              format_bytes(have.available))
    return need
