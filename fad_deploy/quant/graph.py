"""The network as a padding-free core (what torch.fx traces, quantizes and what the
exporters rebuild) plus the pad/crop around it.

Exports use the residual core (the network without its final ``input + residual`` add):
the residual has a noise-sized range that one int8 scale covers finely, whereas the
denoised output spans the whole anchor-space range. The add moves into
:meth:`fad_deploy.runners.base.Runner.run`, in float (onto the input, or onto the quantized
input an int8 network saw: :func:`fad_deploy.runners.base.quantized_base`).
"""
from __future__ import annotations

import torch
import torch.fx as fx
import torch.nn as nn

from ..errors import FadError


class Core(nn.Module):
    """``net.forward_padded`` (or ``net.residual_padded`` with ``residual``): the network on
    inputs whose h, w divide by ``multiple``. Module names stay ``net.<the network's own>``."""

    def __init__(self, net: nn.Module, residual: bool = False):
        super().__init__()
        method = "residual_padded" if residual else "forward_padded"
        if not hasattr(net, method):
            raise FadError(f"network {type(net).__name__} has no padding-free core ({method}) to export")
        self.net, self.residual = net, residual
        self.multiple = net.pad.multiple

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net.residual_padded(x) if self.residual else self.net.forward_padded(x)


class Padded(nn.Module):
    """Replicate-pad to the core's multiple, run the core (float, QAT or traced), crop back:
    the same computation as the network's own forward, for any h, w."""

    def __init__(self, core: nn.Module, pad: nn.Module):
        super().__init__()
        self.core, self.pad = core, pad

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        return self.core(self.pad(x))[..., :h, :w]


def trace_float(net: nn.Module, residual: bool = False) -> fx.GraphModule:
    """The float core as a torch.fx graph (module names as in ``net`` under ``net.``)."""
    return fx.symbolic_trace(Core(net, residual))
