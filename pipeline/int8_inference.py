"""8-bit CPU inference of a 128 transformation net: about 4x faster than float32 here.

Convert spends most of its CPU time in the network (2.4 GMAC a face at width 16). On a
CPU with VNNI, int8 convolutions (PyTorch's x86/fbgemm backend, per-channel weights)
cut that from ~38 ms to ~8 ms a face. Only the learned residual is quantized: the input
is added back in float, so an 8-bit output step never touches the pass-through part of
the face (mean error ~1.5 grey levels, measured in benchmarks/convert_speed.py).

Calibration (activation ranges) uses real dst crops, which convert has at hand. This is
an optional speed path: any failure to build it falls back to float with a log line.
"""
from __future__ import annotations

import logging
import warnings

import torch
from torch import nn

from pipeline.transform_net import BASE_RESOLUTION, TransformNet

log = logging.getLogger("int8")


class _Residual(nn.Module):
    def __init__(self, net: TransformNet) -> None:
        super().__init__()
        self.base, self.head = net.base, net.head

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.base(x))


class Int8Net(nn.Module):
    """x + int8 residual(x); same call signature as TransformNet (N, 3, 128, 128) in [0, 1]."""

    def __init__(self, residual: nn.Module) -> None:
        super().__init__()
        self.residual = residual

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.residual(x.contiguous())


def supported(net: TransformNet) -> bool:
    """int8 is built for 128 nets with the residual skip (the default) on the CPU."""
    return net.resolution == BASE_RESOLUTION and net.skip


def quantize(net: TransformNet, calibration: torch.Tensor, batch: int = 8) -> Int8Net:
    """Post-training static quantization, activation ranges from ``calibration`` crops."""
    import copy
    from torch.ao.quantization import (MinMaxObserver, QConfig, QConfigMapping,
                                       default_per_channel_weight_observer)
    from torch.ao.quantization.quantize_fx import convert_fx, prepare_fx
    if not supported(net):
        raise ValueError("int8 inference needs a 128 model with the residual skip")
    torch.backends.quantized.engine = "x86" if "x86" in torch.backends.quantized.supported_engines else "fbgemm"
    model = _Residual(copy.deepcopy(net).cpu().eval()).eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        # min/max ranges calibrate in a fraction of a second (histograms took seconds for
        # no visible gain); 7-bit activations (reduce_range) keep the fast VNNI kernels.
        qconfig = QConfig(activation=MinMaxObserver.with_args(dtype=torch.quint8, reduce_range=True),
                          weight=default_per_channel_weight_observer)
        prepared = prepare_fx(model, QConfigMapping().set_global(qconfig), (calibration[:1],))
        with torch.inference_mode():
            for i in range(0, len(calibration), batch):
                prepared(calibration[i:i + batch])
        quantized = convert_fx(prepared)
    return Int8Net(quantized).eval()
