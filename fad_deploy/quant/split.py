"""The split int8 input: one int8 tensor of 8 channels that carries the network input to
1/k of its int8 step. Channels 0-3 hold the input rounded down onto its int8 grid, channels
4-7 k times the remainder on the same grid (:func:`fad_deploy.runners.base.split_channels`);
every conv that reads the input reads the remainder with its weights divided by k, so it sees
the input to scale / k while every op stays int8. Other readers of the input (the
Feature-Align pyramid's average pool) read the rounded-down channels only.

One int8 input tensor costs the sub-range models up to 0.1 dB at every noise level
(benchmarks/results/int8_sensitivity_fan-nsma-0.md); what the split gives back and what its
4 more input channels cost in MACs and time: benchmarks/results/int8_split_input.md.

With the input's rounding gone, its range need no longer trade clipping for a fine step: the
split also widens the input grid to cover the inputs QAT trained on (a quantile of them,
:func:`fad_deploy.quant.qat.split_input`), raising k with it so that the remainder keeps its
step. (The QAT learned that range for one int8 tensor, clipping the brightest inputs of a
sub-range's lowest noise levels.)

A split is made from a quantized checkpoint without training (:func:`split_checkpoint`): its
``extra["quantization"]["input_split"]`` is k (and its input quantizer's stored range the
widened one), and :func:`split_core` rewrites its frozen fake-quant core when the checkpoint is
loaded."""
from __future__ import annotations

import dataclasses
import operator

import torch
import torch.fx as fx
import torch.nn as nn

from ..errors import FadError
from ..models.registry import Checkpoint
from ..runners.base import IN_CHANNELS, QUANTIZED_BASE, input_channels_of

SPLIT_KEY = "input_split"
WIDEN_KEY = "input_widen"  # the factor the split widened the input grid by (provenance; the grid itself is stored)
LEARNED_KEY = "input_learned"  # the input quantizer's range as QAT learned it, before the widening


def split_core(gm: fx.GraphModule, k: int) -> fx.GraphModule:
    """``gm`` (a frozen fake-quant core whose input quantizer is its placeholder's only user)
    rewritten in place for the split input: each conv reading the input gets the remainder
    channels with its weights / k, every other reader the first four channels."""
    placeholder = next(n for n in gm.graph.nodes if n.op == "placeholder")
    (quantized,) = placeholder.users
    mods = dict(gm.named_modules())
    coarse = None
    for user in list(quantized.users):
        mod = mods.get(user.target) if user.op == "call_module" else None
        if isinstance(mod, nn.Conv2d):
            if mod.in_channels != IN_CHANNELS or mod.groups != 1:
                raise FadError(f"{user.target}: only plain convs of the {IN_CHANNELS}-plane input take a split input")
            mod.weight = nn.Parameter(torch.cat([mod.weight, mod.weight / k], 1).detach(), requires_grad=False)
            mod.in_channels = 2 * IN_CHANNELS
            continue
        if coarse is None:
            with gm.graph.inserting_after(quantized):
                coarse = gm.graph.call_function(operator.getitem, (quantized, (slice(None), slice(0, IN_CHANNELS))))
        user.replace_input_with(quantized, coarse)
    gm.recompile()
    return gm


def split_checkpoint(ckpt: Checkpoint, k: int, widen: float = 1.0) -> Checkpoint:
    """A quantized checkpoint (residual added to the quantized input) whose network takes the
    split input, nothing retrained; ``widen`` >= 1 scales its input grid's step (its minimum
    kept) and k with it. The remainder channels hold [0, k scale), which must lie on the grid
    above its zero point: the network's k is lowered to 127 - zero point where that is less
    (the card keeps the k asked for, as the recipe's setting, and the widening)."""
    from .qat import fake_quant_core, io_quantizers, quantizers

    q = ckpt.extra.get("quantization", {})
    if q.get(SPLIT_KEY):
        raise FadError(f"{ckpt.name}: its input is split already (k = {q[SPLIT_KEY]})")
    if q.get("base") != QUANTIZED_BASE:
        raise FadError(f"{ckpt.name}: a split input needs the residual added to the quantized input")
    if widen < 1:
        raise FadError(f"input widening {widen}: must be at least 1")
    gm = fake_quant_core(ckpt)[0]
    fq_in = io_quantizers(gm)[0]
    key = next(name for name, fq in quantizers(gm).items() if fq is fq_in)
    state = q["fake_quant"][key]
    (scale,), (zero_point,) = state["scale"], state["zero_point"]
    wide_scale = scale * widen
    wide_zero = int(round(state["quant_min"] - (state["quant_min"] - zero_point) * scale / wide_scale))
    fits = min(round(k * widen), state["quant_max"] - wide_zero)  # the grid's top level above its zero
    if fits < 2:
        raise FadError(f"{ckpt.name}: its int8 input grid has no room above zero for a split input")
    fake_quant = {**q["fake_quant"], key: {**state, "scale": [wide_scale], "zero_point": [wide_zero]}}
    card = {**ckpt.card, "quantization": {**ckpt.card.get("quantization", {}), SPLIT_KEY: k, WIDEN_KEY: widen}}
    return dataclasses.replace(ckpt, card=card, extra={**ckpt.extra, "quantization": {
        **q, SPLIT_KEY: fits, WIDEN_KEY: widen, LEARNED_KEY: {key: state}, "fake_quant": fake_quant}})


def single_checkpoint(ckpt: Checkpoint) -> Checkpoint:
    """A quantized checkpoint with one 4-channel int8 input: a split one's split (and its
    widening of the learned input grid) taken off; any other as it is."""
    q = ckpt.extra["quantization"]
    plain = lambda d: {k: v for k, v in d.items() if k not in (SPLIT_KEY, WIDEN_KEY, LEARNED_KEY)}  # noqa: E731
    extra = {**plain(q), "fake_quant": {**q["fake_quant"], **q.get(LEARNED_KEY, {})}}
    return dataclasses.replace(ckpt, card={**ckpt.card, "quantization": plain(ckpt.card.get("quantization", {}))},
                               extra={**ckpt.extra, "quantization": extra})


def input_channels(ckpt: Checkpoint) -> int:
    """The channels of a checkpoint's network input: 8 where its int8 input is split, else 4."""
    return input_channels_of({"split": ckpt.extra.get("quantization", {}).get(SPLIT_KEY)})
