"""Learned activation ranges (LSQ, Esser et al. 2020): a per-tensor fake quantizer whose
scale is trained with the weights, started from the scale that minimises the quantization
error on observed activations (not their min/max).

Life of a :class:`LearnedFakeQuantize` in QAT: it first watches (observer on, fake quant
off) and keeps a sample of its input; :func:`init_ranges` then picks each quantizer's
clipping range by mean squared error on that sample and makes its log-scale trainable;
from there on the forward is ``(clamp(round(x / s) + z, qmin, qmax) - z) * s`` with a
straight-through round, so the task loss moves ``s`` (:class:`GridRound`). The zero point
stays the integer the search chose. After :func:`freeze` it is a plain fixed-scale fake quantizer: the scale is
an ordinary per-tensor float32 that the exporters write as it is.
"""
from __future__ import annotations

import torch
import torch.nn as nn
from torch.ao.quantization import FakeQuantize

SAMPLE_PER_BATCH = 1 << 14  # values kept from each observed batch, per quantizer
SAMPLE_MAX = 1 << 18
CLIP_FRACTIONS = torch.linspace(0.25, 1.0, 31)  # of the observed range, searched for the least MSE


class GridRound(torch.autograd.Function):
    """``clamp(round(x / s), lo, hi) * s`` (the zero point folded into ``lo``, ``hi``), rounded
    as PyTorch's and TFLite's kernels round (``x * (1 / s)``, half to even), with LSQ's
    gradients: ``x``'s passes straight through inside the grid and is zero outside; ``s``'s
    is ``round(x / s) - x / s`` inside and the clamped level outside. Written out as one
    function it keeps fewer tensors and passes than the same expression left to autograd
    (``benchmarks/fake_quant_speed.py`` times it against that and PyTorch's fake-quant
    kernels): the quantizers are a good part of each QAT step."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, s: torch.Tensor, lo: int, hi: int) -> torch.Tensor:
        inv = 1.0 / s
        r = torch.round(x * inv)
        inside = (r >= lo) & (r <= hi)
        q = r.clamp_(lo, hi)
        ctx.save_for_backward(x, q, inside, inv)
        return q * s

    @staticmethod
    def backward(ctx, g: torch.Tensor):
        x, q, inside, inv = ctx.saved_tensors
        gx = g * inside
        gs = None
        if ctx.needs_input_grad[1]:  # sum of g * (q - x / s inside the grid, q outside)
            gs = (torch.dot(g.flatten(), q.flatten()) - torch.dot(gx.flatten(), x.flatten()) * inv).reshape(inv.shape)
        return gx, gs, None, None


def quantize_error(x: torch.Tensor, scale: float, zero_point: int, qmin: int, qmax: int) -> float:
    q = torch.clamp(torch.round(x / scale) + zero_point, qmin, qmax)
    return float(((q - zero_point) * scale - x).pow(2).mean())


def affine_grid(lo: float, hi: float, qmin: int, qmax: int) -> tuple[float, int]:
    """Scale and integer zero point of the grid over [lo, hi] (which must contain 0)."""
    lo, hi = min(lo, 0.0), max(hi, 0.0)
    scale = max((hi - lo) / (qmax - qmin), 1e-12)
    return scale, int(min(max(round(qmin - lo / scale), qmin), qmax))


def mse_grid(sample: torch.Tensor, qmin: int, qmax: int) -> tuple[float, int]:
    """The grid, among the observed range shrunk by :data:`CLIP_FRACTIONS`, with the least
    squared quantization error on ``sample``."""
    lo, hi = float(sample.min()), float(sample.max())
    grids = [affine_grid(c * lo, c * hi, qmin, qmax) for c in CLIP_FRACTIONS.tolist()]
    return min(grids, key=lambda g: quantize_error(sample, *g, qmin, qmax))


class LearnedFakeQuantize(FakeQuantize):
    """Per-tensor affine fake quantizer with a trainable scale (see the module doc)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.log_scale = nn.Parameter(torch.zeros(()), requires_grad=False)
        self.learning = False
        self.sample: list[torch.Tensor] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.observer_enabled[0] == 1 and not self.learning:
            self.activation_post_process(x.detach())
            flat = x.detach().flatten()
            if sum(len(s) for s in self.sample) < SAMPLE_MAX:
                idx = torch.randint(len(flat), (min(SAMPLE_PER_BATCH, len(flat)),), device=flat.device)
                self.sample.append(flat[idx])
        return self.quantize(x)

    def quantize(self, x: torch.Tensor) -> torch.Tensor:
        """The forward without observing."""
        if self.fake_quant_enabled[0] == 0:
            return x
        if self.training:  # learning the scale, or (ranges frozen) training the weights
            if self.learning:
                s = self.log_scale.exp()
                with torch.no_grad():
                    self.scale.copy_(s.detach().reshape(self.scale.shape))
            else:
                s = self.scale.reshape(())
            z = int(self.zero_point)
            return GridRound.apply(x, s, self.quant_min - z, self.quant_max - z)
        return torch.fake_quantize_per_tensor_affine(x, self.scale, self.zero_point, self.quant_min,
                                                     self.quant_max)

    @torch.no_grad()
    def init_range(self) -> None:
        """Set the MSE-best grid from the kept sample and start learning the scale."""
        if not self.sample:
            raise RuntimeError("init_range before any observation")
        scale, zero_point = mse_grid(torch.cat(self.sample), self.quant_min, self.quant_max)
        self.sample = []
        self.scale.copy_(torch.tensor(scale).reshape(self.scale.shape))
        self.zero_point.copy_(torch.tensor(zero_point).reshape(self.zero_point.shape))
        self.log_scale.copy_(torch.tensor(scale).log())
        self.log_scale.requires_grad_(True)
        self.learning = True

    def stop_learning(self) -> None:
        self.learning = False
        self.log_scale.requires_grad_(False)


def learned(gm: nn.Module) -> list[LearnedFakeQuantize]:
    """The distinct learned quantizers of a prepared network."""
    seen, out = set(), []
    for m in gm.modules():
        if isinstance(m, LearnedFakeQuantize) and id(m) not in seen:
            seen.add(id(m))
            out.append(m)
    return out


def init_ranges(gm: nn.Module) -> list[nn.Parameter]:
    """MSE-initialise every learned quantizer; returns their log-scales (to optimise)."""
    qs = learned(gm)
    for q in qs:
        q.init_range()
    return [q.log_scale for q in qs]


def stop_learning(gm: nn.Module) -> None:
    for q in learned(gm):
        q.stop_learning()
