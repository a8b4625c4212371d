"""TFLite 16x8 (int8 weights, int16 activations) made from an int8 QAT checkpoint, nothing
retrained: the weights keep the int8 grid QAT trained them on, and every activation keeps the
range QAT learned for it as a clamp, with 65,536 levels inside it instead of 256.

The clamps are part of what QAT trained: the network learned to rely on them (a gamma that
always sits at its range's end, decoder tensors clipped a few percent of the time), and the
same weights with unclamped activations lose 0.14-22.5 dB more on held-out photos. The network
input is the exception: it is not clamped (an int16 input has no need to trade clipping for
a fine step), not split (that is int8's way to a fine input), and the residual goes onto the
float input, since the int16 input's rounding is far below the noise. The input map (the
square root of a sqrt-input checkpoint) stays. What this costs against the float networks and
against the int8 files: benchmarks/results/int16_from_qat.md.

:func:`int16_core` is the PyTorch network a 16x8 export must reproduce;
:class:`fad_deploy.export.tf_graph.TFRebuild` writes the same network with ``clamps=True``.
"""
from __future__ import annotations

import torch
import torch.fx as fx
import torch.nn as nn
from torch.ao.quantization import FakeQuantize

from ..models.registry import Checkpoint
from ..runners.torch_runner import TorchRunner
from .graph import Padded
from .qat import fake_quant_core, grid, io_quantizers
from .split import single_checkpoint

INT16_BACKEND = "torch-16x8"  # the PyTorch reference of a 16x8 file (validation's name for it)


class Clamp(nn.Module):
    """An activation quantizer's range without its rounding."""

    def __init__(self, lo: float, hi: float):
        super().__init__()
        self.lo, self.hi = lo, hi

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.clamp(self.lo, self.hi)


def input_map(ckpt: Checkpoint) -> str:
    """The input map of a quantized checkpoint ("linear" or "sqrt")."""
    return ckpt.extra["quantization"].get("input_map", "linear")


def int16_grid(ckpt: Checkpoint) -> dict:
    """A 16x8 file's input grid for the runners and the manifest: its input map only (the
    residual goes onto the float input: :func:`fad_deploy.runners.base.residual_base`)."""
    return {"input_map": input_map(ckpt)}


def int16_core(ckpt: Checkpoint) -> tuple[fx.GraphModule, nn.Module]:
    """The 16x8 network of an int8 QAT checkpoint, as PyTorch runs it: its frozen fake-quant
    core with one int8 input (a split one's split taken off), the weights still on their int8
    grid, every activation quantizer a :class:`Clamp` to its range, the input's removed (where it
    quantizes the input and where it quantizes the pooled input pyramid); and the float network
    it wraps."""
    gm, net = fake_quant_core(single_checkpoint(ckpt))
    fq_in = io_quantizers(gm)[0]
    for node in list(gm.graph.nodes):
        mod = gm.get_submodule(node.target) if node.op == "call_module" else None
        if not isinstance(mod, FakeQuantize):
            continue
        if mod is fq_in:  # the input's quantizer, also where it quantizes the pooled input pyramid
            node.replace_all_uses_with(node.args[0])
            gm.graph.erase_node(node)
            gm.delete_submodule(node.target)
        else:
            g = grid(mod)
            parent, _, name = node.target.rpartition(".")
            setattr(gm.get_submodule(parent), name, Clamp(g["min"], g["max"]))
    gm.graph.lint()
    gm.recompile()
    return gm, net


class Int16Runner(TorchRunner):
    """PyTorch running the 16x8 network of an int8 QAT checkpoint (a 16x8 file's reference)."""

    backend = INT16_BACKEND

    def __init__(self, checkpoint: Checkpoint, device: str = "cpu", batch: int = 16):
        super().__init__(checkpoint, device, batch)
        gm, net = int16_core(checkpoint)
        self.model = Padded(gm, net.pad).eval().to(device)
        self.residual = True
        self.base_grid = int16_grid(checkpoint)
