"""8-bit CPU inference of a 128 transformation net: about 8x faster than float32 here.

Convert spends most of its CPU time in the network (2.4 GMAC a face at width 16). On a
CPU with VNNI, int8 convolutions (PyTorch's x86 backend, per-channel weights, each conv
fused with its ReLU) cut that from ~38 ms (float, BatchNorm folded) to ~5 ms a face.
Only the learned residual is quantized: the input is added back in float, so an 8-bit
output step never touches the pass-through part of the face (mean change ~1.9 grey
levels on the shared clip's faces, measured in benchmarks/convert_speed.py).

Eager-mode quantization of a mirror of the net's modules, not FX graph mode: FX pulled
in torch._dynamo and torch._inductor (2.4 s of imports per run) and ran slower kernels.
Calibration (activation ranges) uses real dst crops, which convert has at hand. This is
an optional speed path: convert falls back to float when building it fails.
"""
from __future__ import annotations

import warnings

import torch
import torch.nn.functional as F
from torch import nn
from torch.ao.nn.quantized import FloatFunctional, QFunctional

from pipeline.models.transform_net import BASE_RESOLUTION, MultiScale, TransformNet, inference_copy


def _fused_block(block: nn.Module) -> nn.Sequential:
    """A folded conv block (conv, Identity, ReLU, ...) as fused conv+ReLU pairs."""
    from torch.ao.quantization import fuse_modules
    assert isinstance(block, nn.Sequential)
    layers = [m for m in block if not isinstance(m, nn.Identity)]
    seq = nn.Sequential(*layers)
    fuse_modules(seq, [[str(i), str(i + 1)] for i in range(0, len(layers), 2)], inplace=True)
    return seq


class _QuantMultiScale(nn.Module):
    """MultiScale with quantizable concatenations; pooling and nearest upsampling work on int8."""

    def __init__(self, base: MultiScale) -> None:
        super().__init__()
        self.levels = base.levels
        self.branches = nn.ModuleList(_fused_block(b) for b in base.branches)
        self.joins = nn.ModuleList(_fused_block(j) for j in base.joins)
        self.cats = nn.ModuleList(FloatFunctional() for _ in base.joins)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        inputs = [x]
        for _ in range(self.levels - 1):
            inputs.append(F.avg_pool2d(inputs[-1], 2))
        inputs.reverse()
        y = self.branches[0](inputs[0])
        for branch, join, cat, inp in zip(self.branches[1:], self.joins, self.cats, inputs[1:]):
            up = F.interpolate(y, scale_factor=2.0, mode="nearest")
            assert isinstance(cat, (FloatFunctional, QFunctional))   # float, then int8 after convert()
            y = join(cat.cat([up, branch(inp)], dim=1))
        return y


class _QuantResidual(nn.Module):
    qconfig: object = None      # set before torch.ao.quantization.prepare

    def __init__(self, fused: TransformNet) -> None:
        from torch.ao.quantization import DeQuantStub, QuantStub
        super().__init__()
        self.quant, self.dequant = QuantStub(), DeQuantStub()
        self.base = _QuantMultiScale(fused.base)
        self.head = fused.head

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dequant(self.head(self.base(self.quant(x))))


class Int8Net(nn.Module):
    """x + int8 residual(x); same call signature as TransformNet (N, 3, 128, 128) in [0, 1]."""

    def __init__(self, residual: nn.Module) -> None:
        super().__init__()
        self.residual = residual

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.contiguous()
        return x + self.residual(x)


def supported(net: TransformNet) -> bool:
    """int8 is built for 128 nets with the residual skip (the default) on the CPU."""
    return net.resolution == BASE_RESOLUTION and net.skip


def _prepared(net: TransformNet) -> _QuantResidual:
    """The fused residual with observers in place, ready to calibrate (or to take stored ranges)."""
    from torch.ao.quantization import MinMaxObserver, QConfig, default_per_channel_weight_observer, prepare
    if not supported(net):
        raise ValueError("int8 inference needs a 128 model with the residual skip")
    engines = torch.backends.quantized.supported_engines
    torch.backends.quantized.engine = "x86" if "x86" in engines else "fbgemm"
    # torch's type stubs lack Module.to(memory_format=...), which exists and is documented
    fused = inference_copy(net).cpu().to(memory_format=torch.contiguous_format)  # type: ignore[call-overload]
    model = _QuantResidual(fused).eval()
    # min/max ranges calibrate in a fraction of a second; 7-bit activations (reduce_range)
    # keep the fast VNNI kernels free of overflow.
    model.qconfig = QConfig(activation=MinMaxObserver.with_args(dtype=torch.quint8, reduce_range=True),
                            weight=default_per_channel_weight_observer)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        prepare(model, inplace=True)
    return model


def _observers(model: nn.Module) -> dict[str, nn.Module]:
    """The activation observers ``prepare`` put in, by module name (the ranges a calibration fills)."""
    from torch.ao.quantization.observer import MinMaxObserver
    return {name: m for name, m in model.named_modules() if isinstance(m, MinMaxObserver)}


def _calibrate(model: nn.Module, calibration: torch.Tensor, batch: int) -> None:
    threads = torch.get_num_threads()
    # one thread: the float ranges (and so every int8 output) then do not depend on the machine's core count
    # or on what else runs; OpenMP threads beside a busy pool or another program waited on each other at
    # every layer (16 faces: 4 s with 2 threads on the loaded 2-core machine)
    torch.set_num_threads(1)
    try:
        with torch.inference_mode():
            for i in range(0, len(calibration), batch):
                model(calibration[i:i + batch].contiguous())
    finally:
        torch.set_num_threads(threads)


def activation_ranges(model: nn.Module) -> dict[str, list[float]]:
    """Each observer's [min, max] after calibration: all a calibration produces, so it can be stored
    (JSON floats hold float32 values exactly) and ``quantize(ranges=...)`` skips the float passes."""
    out = {}
    for name, obs in _observers(model).items():
        lo, hi = obs.min_val, obs.max_val
        assert isinstance(lo, torch.Tensor) and isinstance(hi, torch.Tensor)
        out[name] = [float(lo), float(hi)]
    return out


def _set_ranges(model: nn.Module, ranges: dict[str, list[float]]) -> None:
    observers = _observers(model)
    if set(observers) != set(ranges):
        raise ValueError(f"stored int8 ranges name {len(ranges)} observers, the net has {len(observers)} "
                         f"(another architecture or torch version)")
    for name, obs in observers.items():
        lo, hi = ranges[name]
        obs.min_val = torch.tensor(lo, dtype=torch.float32)
        obs.max_val = torch.tensor(hi, dtype=torch.float32)


def quantize(net: TransformNet, calibration: torch.Tensor, batch: int = 8) -> Int8Net:
    """Post-training static quantization, activation ranges from ``calibration`` crops."""
    return calibrated(net, calibration, batch)[0]


def calibrated(net: TransformNet, calibration: torch.Tensor | None = None, batch: int = 8,
               ranges: dict[str, list[float]] | None = None) -> tuple[Int8Net, dict[str, list[float]]]:
    """Post-training static quantization: (the int8 net, its activation ranges).

    The ranges come from ``calibration`` crops (float passes, most of convert's start-up
    after the imports) or, when given, from ``ranges`` as an earlier calibration of the
    same weights on the same crops returned them: the same int8 net, no float passes.
    """
    from torch.ao.quantization import convert
    if calibration is None and ranges is None:
        raise ValueError("quantize needs calibration crops or stored ranges")
    model = _prepared(net)
    if ranges is not None:
        _set_ranges(model, ranges)
    else:
        assert calibration is not None
        _calibrate(model, calibration, batch)
    found = activation_ranges(model)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        convert(model, inplace=True)
    return Int8Net(model).eval(), found
