"""The network as a padding-free core (what torch.fx traces, quantizes and what the
exporters rebuild) plus the pad/crop around it."""
from __future__ import annotations

import torch
import torch.fx as fx
import torch.nn as nn

from ..errors import FadError


class Core(nn.Module):
    """``net.forward_padded``: the network on inputs whose h, w divide by ``multiple``."""

    def __init__(self, net: nn.Module):
        super().__init__()
        if not hasattr(net, "forward_padded"):
            raise FadError(f"network {type(net).__name__} has no padding-free core (forward_padded) to export")
        self.net = net
        self.multiple = net.pad.multiple

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net.forward_padded(x)


class Padded(nn.Module):
    """Replicate-pad to the core's multiple, run the core (float, QAT or traced), crop back:
    the same computation as the network's own forward, for any h, w."""

    def __init__(self, core: nn.Module, pad: nn.Module):
        super().__init__()
        self.core, self.pad = core, pad

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        return self.core(self.pad(x))[..., :h, :w]


def trace_float(net: nn.Module) -> fx.GraphModule:
    """The float core as a torch.fx graph (module names as in ``net`` under ``net.``)."""
    return fx.symbolic_trace(Core(net))
