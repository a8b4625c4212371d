"""Rebuild a torch.fx core (float, or frozen fake-quant from :mod:`fad_deploy.quant`) in
TensorFlow, NHWC, node by node, over a closed op list: conv (incl. grouped; depthwise as
DEPTHWISE_CONV_2D; fused ReLU/ReLU6), ReLU, ReLU6, add, mul, concat, average pool (as a
convolution, see :meth:`TFRebuild.pool`), channel slice, pixel
shuffle (DEPTH_TO_SPACE, or RESHAPE-TRANSPOSE-RESHAPE where int16 activations need it: TFLite
has no int16 DEPTH_TO_SPACE kernel) and identity; anything else fails loudly. Fake quantizers become
``tf.quantization.fake_quant_with_min_max_vars(_per_channel)`` at exactly PyTorch's grid,
which TFLiteConverter turns into int8 tensors with the same scales (no re-calibration). For a
16x8 file made from a fake-quant core (``clamps=True``, see :mod:`fad_deploy.quant.int16`) the
weights are written on their int8 grid and every activation quantizer but the input's becomes a
clamp to its range (MAXIMUM / MINIMUM), inside which the converter calibrates int16.

A concatenation of k copies of one narrow convolution's output (FAN's full-resolution shrunk
skip copied back to the decoder's width) becomes that convolution with its output channels
tiled k times: the same numbers without the copy (see :meth:`TFRebuild._tiled_by_concat`).

Convs with a ReLU that read one tensor alike (FAN's two Feature-Align conditioning convs per
level, encoder's and decoder's, on the same resized input) become one conv with their outputs
side by side, each consumer reading its own channels of it through zero weights elsewhere:
the same numbers, in int8 too (see :meth:`TFRebuild._merged_siblings`).

A plain k x k conv to a few channels (a denoiser's head, to the 4 RAW planes) is written on 2x2
blocks of its output: a (k+1) x (k+1) stride-2 conv to 4x the channels, then DEPTH_TO_SPACE
(see :func:`block_kernel`): the same sums, on a kernel that fills XNNPACK's output tile.
"""
from __future__ import annotations

import math
import operator
from dataclasses import dataclass

import numpy as np
import torch
import torch.fx as fx
import torch.nn as nn
import torch.nn.functional as F
from torch.ao.nn.intrinsic import qat as nniqat
from torch.ao.quantization import FakeQuantize

from ..errors import FadError
from ..quant.graph import Core
from ..quant.qat import io_quantizers
from ..quant.qconfig import QATConvReLU62d

NUM_BITS = 8
# A concatenation of copies is folded into the conv it copies (tiled output channels) where that adds at most
# this many MACs per copied value. FAN's full-resolution skip (16 channels in, 4 copies: 12 MACs per copied value)
# takes 11.1 ms copied against 5.3 tiled in fp32, 10.4 against 8.9 in int8; at 256x256x24 (18) 3.2 against 3.2
# and 2.9 against 4.0; the coarser ones lose more (AVX2, benchmarks/results/skip_as_conv.md).
MAX_TILED_MACS_PER_COPY = 12


# Sibling convs (see the module doc) are merged where their readers' added MACs (reading the merged channels) are
# at most this many times the siblings' own MACs: a narrow conv runs far below XNNPACK's MAC rate, its 1x1 readers
# near it. FAN's conditioning convs (4 -> 8 channels, 3x3) at levels 0 / 1 / 2 / 3 give 0.9 / 1.3 / 2.7 / 5.3:
# merged at level 0, d8-12-24 (groups of at least 16) takes 3% less int8 time, 1.5% less fp32; with levels 1-2
# too, 4% and 1%; level 3 adds nothing (AVX-512 VNNI, benchmarks/results/group_width-siblings.md).
MAX_SIBLING_EXTRA_MACS = 3.0

# A plain conv to at most this many channels leaves most of XNNPACK's output tile empty: FAN's head (3x3, 16 -> 4
# channels at full resolution) takes as long as its 3x3 16 -> 16 convs with 4x the MACs. Written on 2x2 blocks of
# its output (block_kernel: 1.78x the MACs for a 3x3) it takes about half the time, fp32 and int8 (AVX-512 VNNI,
# benchmarks/results/blocked_conv.md). Only k x k convs with k >= 3: a 1x1 would run 4x its MACs.
MAX_BLOCKED_OUT_CHANNELS = 4


def folds_copies(in_channels: int, copies: int) -> bool:
    """Whether k copies of a plain conv's output (reading ``in_channels``) export as that conv tiled k times."""
    return in_channels * (copies - 1) / copies <= MAX_TILED_MACS_PER_COPY


def grid_range(scale: np.ndarray, zero_point: np.ndarray, qmin: int, qmax: int) -> tuple[np.ndarray, np.ndarray]:
    """The real interval of a quantizer's grid: TF's fake quant nudges onto the same grid."""
    scale, zero_point = np.asarray(scale, np.float64), np.asarray(zero_point, np.float64)
    return (qmin - zero_point) * scale, (qmax - zero_point) * scale


def per_tensor_range(fq: FakeQuantize, factor: float = 1.0) -> tuple[float, float]:
    """A per-tensor quantizer's real interval, its scale times ``factor`` (a merged sibling's)."""
    lo, hi = grid_range(fq.scale.numpy() * factor, fq.zero_point.numpy(), fq.quant_min, fq.quant_max)
    return float(lo.reshape(-1)[0]), float(hi.reshape(-1)[0])


def on_grid(w: np.ndarray, scale: np.ndarray, qmin: int, qmax: int) -> np.ndarray:
    """OIHW weights rounded onto their per-output-channel grid (what fake quantization gives)."""
    s = scale.reshape(-1, *([1] * (w.ndim - 1)))
    return (np.clip(np.round(w / s), qmin, qmax) * s).astype(np.float32)


def fake_quant(tf, x, fq: FakeQuantize):
    if fq.quant_max - fq.quant_min != 2**NUM_BITS - 1:
        raise FadError(f"only full-range 8-bit quantizers export to TFLite (got [{fq.quant_min}, {fq.quant_max}])")
    if fq.qscheme in (torch.per_tensor_affine, torch.per_tensor_symmetric):
        return tf.quantization.fake_quant_with_min_max_vars(x, *per_tensor_range(fq), num_bits=NUM_BITS)
    lo, hi = grid_range(fq.scale.numpy(), fq.zero_point.numpy(), fq.quant_min, fq.quant_max)
    return tf.quantization.fake_quant_with_min_max_vars_per_channel(
        x, lo.astype(np.float32), hi.astype(np.float32), num_bits=NUM_BITS)


def depth_to_space_order(channels_out: int, r: int) -> np.ndarray:
    """Channel order that makes TF's DEPTH_TO_SPACE (depth index (i r + j) C + c) equal
    torch's PixelShuffle (channel c r^2 + i r + j)."""
    return np.array([c * r * r + ij for ij in range(r * r) for c in range(channels_out)])


def depth_to_space_moves(tf, x, r: int):
    """DEPTH_TO_SPACE of ``x`` (TF's channel order) as RESHAPE, 6-D TRANSPOSE, RESHAPE: the
    same data movement with ops that TFLite also runs on int16 tensors. The shapes are
    constants, so the model keeps its export size."""
    _, h, w, c = x.shape
    y = tf.reshape(x, [1, h, w, r, r, c // (r * r)])
    y = tf.transpose(y, [0, 1, 3, 2, 4, 5])
    return tf.reshape(y, [1, h * r, w * r, c // (r * r)])


def merged_groups(groups: int, in_channels: int, width: float) -> int:
    """The groups of a grouped conv written with at least ``width`` input channels per group:
    the fewest adjacent groups merged that reach it and divide the groups (inf: one plain conv)."""
    per_group = in_channels // groups
    k = next((k for k in range(1, groups + 1) if groups % k == 0 and k * per_group >= width), groups)
    return groups // k


def written_groups(conv: nn.Conv2d, width: float) -> int:
    """The groups ``conv`` is written with (:func:`merged_groups`); depthwise convs keep theirs."""
    if conv.groups > 1 and conv.groups == conv.in_channels == conv.out_channels:
        return conv.groups
    return merged_groups(conv.groups, conv.in_channels, width)


def merge_groups(w: np.ndarray, groups: int, new_groups: int) -> np.ndarray:
    """(O, I/groups, kh, kw) grouped weights -> (O, I/new_groups, kh, kw): adjacent groups merged,
    block-diagonal inside each merged group (new_groups = 1: one plain conv); the same numbers."""
    o, i_g = w.shape[:2]
    k, per_group = groups // new_groups, o // groups
    merged = np.zeros((o, i_g * k, *w.shape[2:]), w.dtype)
    for g in range(groups):  # group g sits at place g % k of its merged group's inputs
        merged[g * per_group : (g + 1) * per_group, (g % k) * i_g : (g % k + 1) * i_g] = \
            w[g * per_group : (g + 1) * per_group]
    return merged


def block_kernel(w: np.ndarray) -> np.ndarray:
    """(C, I, k, k) weights of a stride-1 conv padded by k // 2 -> (4C, I, k+1, k+1) weights of the
    stride-2 conv (TF's SAME padding, even sizes) that computes its output on 2x2 blocks, in
    DEPTH_TO_SPACE's channel order: output pixel (2i + di, 2j + dj), channel c is block (i, j)'s
    channel (2 di + dj) C + c, and its window starts di rows, dj columns into the block's."""
    c, i, k, _ = w.shape
    blocked = np.zeros((4 * c, i, k + 1, k + 1), w.dtype)
    for di in range(2):
        for dj in range(2):
            blocked[(2 * di + dj) * c : (2 * di + dj + 1) * c, :, di : di + k, dj : dj + k] = w
    return blocked


def blocked_macs(conv: nn.Conv2d) -> float:
    """MACs per output value of ``conv`` written on 2x2 blocks (:func:`block_kernel`) over its own:
    a (k+1) x (k+1) window for k x k (its weights: 4x that, one kernel per pixel of a block)."""
    return math.prod(k + 1 for k in conv.kernel_size) / math.prod(conv.kernel_size)


@dataclass(frozen=True)
class Sibling:
    """A conv merged with its siblings: its place in the merged conv's outputs, and the factor
    its weights and bias are scaled by so that its int8 grid becomes the merged tensor's (a ReLU
    output's grid starts at zero, so the scaled conv gives the same integers)."""
    offset: int
    channels: int  # of the merged conv
    factor: float


@dataclass(frozen=True)
class WrittenLayout:
    """Where :class:`TFRebuild` writes convs otherwise than the network has them, by module path:
    merged sibling convs (the first of each group -> the merged conv's output channels; the
    others, written within it; each reader -> the merged channels it reads), and the convs
    written on 2x2 blocks of their output."""
    merged_out: dict[str, int]
    within: set[str]
    reader_in: dict[str, int]
    blocked: set[str]

    def conv_factors(self, path: str, conv: nn.Conv2d, group_width: float) -> tuple[float, float]:
        """The MACs and the weights of ``conv`` (at ``path``) as written over its own: groups merged to at least
        ``group_width`` channels, a merged sibling conv's channels read, 2x2 blocks (a larger kernel with zeros,
        one per pixel of a block); not a merged sibling conv's other members' outputs (``merged_out``)."""
        macs = conv.groups // written_groups(conv, group_width) * self.reader_in.get(path, conv.in_channels) \
            / conv.in_channels
        if path in self.blocked:
            return macs * blocked_macs(conv), 4 * macs * blocked_macs(conv)
        return macs, macs


def written_layout(net: nn.Module) -> WrittenLayout:
    """How the TFLite export of ``net``'s float residual core writes its convs (as the network has
    them for a network without such a core)."""
    try:
        core = Core(net, residual=True)
        rebuild = TFRebuild(fx.symbolic_trace(core), multiple=core.multiple)
    except FadError:
        return WrittenLayout({}, set(), {}, set())
    path = lambda node: node.target.removeprefix("net.")  # noqa: E731 - the core's modules are net.<path>
    first = {path(c): rebuild.sibling_places[end].channels for c, ((_, end), *_) in rebuild.siblings.items()}
    within = {path(c) for members in rebuild.siblings.values() for c, _ in members[1:]}
    readers = {path(r): place.channels for end, place in rebuild.sibling_places.items() for r in end.users}
    return WrittenLayout(first, within, readers, {path(c) for c in rebuild.blocked})


def concat_dim(node: fx.Node) -> int:
    """The dimension a ``torch.cat`` node concatenates along."""
    return node.kwargs.get("dim", node.args[1] if len(node.args) > 1 else 0)


class TFRebuild:
    """Translate ``gm`` (an fx core) into a TF function on NHWC tensors."""

    def __init__(self, gm: fx.GraphModule, group_width: float = 0, depth_to_space: bool = True, multiple: int = 1,
                 clamps: bool = False):
        """``group_width``: grouped convs with fewer input channels per group are written with at
        least this many (:func:`merged_groups`; inf: plain convs). ``depth_to_space=False``: pixel
        shuffles as :func:`depth_to_space_moves`. ``multiple``: the input's h and w are multiples of
        it (the core's), so that an even one lets narrow convs be written on 2x2 blocks. ``clamps``:
        a fake-quant ``gm`` written for 16x8 (weights on their grid as constants, activation
        quantizers as clamps, the input's left out), the network :func:`fad_deploy.quant.int16.int16_core`
        runs."""
        self.gm, self.group_width, self.depth_to_space = gm, group_width, depth_to_space
        self.modules = dict(gm.named_modules(remove_duplicate=False))
        self.quantized = any(isinstance(m, FakeQuantize) for m in self.modules.values())
        self.clamps = clamps
        self.input_quantizer = io_quantizers(gm)[0] if clamps else None  # left out of a 16x8 file
        self.shuffle_fed = self._convs_feeding_pixel_shuffle()
        self.tiled, self.tiled_concats = self._tiled_by_concat()
        self.siblings, self.sibling_places = self._merged_siblings()
        self.blocked = self._blocked_convs() if multiple % 2 == 0 else {}
        self.env: dict[fx.Node, object] = {}  # each node's TF value, while __call__ runs

    # ---- graph helpers -----------------------------------------------------------------------
    def _is(self, node: fx.Node, *types) -> bool:
        return node.op == "call_module" and isinstance(self.modules[node.target], types)

    def _convs_feeding_pixel_shuffle(self) -> dict[str, int]:
        """conv module name -> shuffle factor, for convs whose only consumer (through
        quantizers) is a PixelShuffle: their output channels are reordered for TF."""
        fed = {}
        for node in self.gm.graph.nodes:
            if self._is(node, nn.PixelShuffle):
                src = self._producer(node)
                if self._is(src, nn.Conv2d) and len(src.users) == 1:
                    fed[src.target] = self.modules[node.target].upscale_factor
        return fed

    def _tiled_by_concat(self) -> tuple[dict[str, int], set[fx.Node]]:
        """conv module name -> k, for plain convs whose only consumer (through single-use
        per-tensor quantizers) is a channel concatenation of k copies of their output, and
        which read few enough channels that tiling adds at most MAX_TILED_MACS_PER_COPY MACs
        per copied value. Their output channels are tiled k times and the concatenation passes
        the conv's value on. Also the concatenations."""
        tiled, concats = {}, set()
        for node in self.gm.graph.nodes:
            if not (node.op == "call_function" and node.target is torch.cat):
                continue
            parts = node.args[0]
            if len(set(parts)) != 1 or concat_dim(node) not in (1, -3):
                continue
            src = parts[0]
            while self._is(src, FakeQuantize) and len(src.users) == 1 and self._per_tensor(src):
                src = src.args[0]
            if not (self._is(src, nn.Conv2d) and len(src.users) == 1 and src.target not in self.shuffle_fed):
                continue
            conv, k = self.modules[src.target], len(parts)
            if conv.groups == 1 and folds_copies(conv.in_channels, k):
                tiled[src.target] = k
                concats.add(node)
        return tiled, concats

    def _relu_chain(self, node: fx.Node) -> fx.Node | None:
        """The node holding ``node``'s conv + ReLU output (a fused QAT conv's quantizer, per tensor
        with its grid from zero; a float conv's ReLU), if ``node`` is such a plain conv."""
        if not (self._is(node, nn.Conv2d) and self.modules[node.target].groups == 1 and len(node.users) == 1
                and node.target not in self.shuffle_fed and node.target not in self.tiled):
            return None
        (user,) = node.users
        mod = self.modules[node.target]
        if isinstance(mod, nniqat.ConvReLU2d):
            fq = self.modules[user.target] if self._is(user, FakeQuantize) else None
            fits = fq is not None and self._per_tensor(user) and int(fq.zero_point) == fq.quant_min
            return user if fits else None
        if type(mod) is nn.Conv2d and (self._is(user, nn.ReLU) or user.target in (F.relu, torch.relu)):
            return user
        return None

    def _merged_siblings(self) -> tuple[dict[fx.Node, list[tuple[fx.Node, fx.Node]]], dict[fx.Node, Sibling]]:
        """Convs merged with their siblings: first conv node -> each conv with the node holding its
        ReLU output (graph order), and that node -> its place in the merged conv. Siblings read the
        same node with the same geometry, each has a ReLU (:meth:`_relu_chain`) read only by
        plain convs, and the merge adds at most MAX_SIBLING_EXTRA_MACS times their MACs to
        those readers."""
        merged, places = {}, {}
        for node in self.gm.graph.nodes:
            found = {}
            for conv in node.users:
                end = self._relu_chain(conv)
                if end is None or not all(self._is(r, nn.Conv2d) and self.modules[r.target].groups == 1
                                          for r in end.users):
                    continue
                m = self.modules[conv.target]
                fq = self.modules[end.target] if self._is(end, FakeQuantize) else None
                key = (type(m), m.kernel_size, m.stride, m.padding, fq and (fq.quant_min, fq.quant_max))
                found.setdefault(key, []).append((conv, end))
            for members in found.values():
                widths = [self.modules[c.target].out_channels for c, _ in members]
                own = sum(self.modules[c.target].weight.numel() for c, _ in members)
                extra = sum(r.out_channels * math.prod(r.kernel_size) * (sum(widths) - width)
                            for (_, end), width in zip(members, widths)
                            for r in (self.modules[u.target] for u in end.users))
                if len(members) < 2 or extra > MAX_SIBLING_EXTRA_MACS * own:
                    continue
                # int8: each conv scaled onto the widest grid (ReLU outputs: grids from zero)
                scales = [float(self.modules[end.target].scale) if self.quantized else 1.0 for _, end in members]
                merged[members[0][0]] = members
                for (_, end), offset, scale in zip(members, np.cumsum([0, *widths[:-1]]), scales):
                    places[end] = Sibling(int(offset), sum(widths), max(scales) / scale)
        return merged, places

    def _blocked_convs(self) -> dict[fx.Node, fx.Node]:
        """Convs written on 2x2 blocks of their output (:func:`block_kernel`): conv node -> the node
        after which DEPTH_TO_SPACE restores the layout (in int8 the conv's output quantizer, per
        tensor, its only user; else the conv). Plain stride-1 k x k convs (k odd, at least 3, padded
        by k // 2) to at most MAX_BLOCKED_OUT_CHANNELS channels, not otherwise rewritten."""
        merged = {c for members in self.siblings.values() for c, _ in members}
        blocked = {}
        for node in self.gm.graph.nodes:
            if not self._is(node, nn.Conv2d) or node in merged or node.target in self.shuffle_fed \
                    or node.target in self.tiled:
                continue
            mod = self.modules[node.target]
            k = mod.kernel_size[0]
            if not (mod.groups == 1 and mod.stride == (1, 1) and mod.kernel_size == (k, k) and k >= 3 and k % 2
                    and mod.padding == (k // 2, k // 2) and mod.out_channels <= MAX_BLOCKED_OUT_CHANNELS):
                continue
            end = node
            if self.quantized:
                end = next(iter(node.users)) if len(node.users) == 1 else None
                if end is None or not (self._is(end, FakeQuantize) and self._per_tensor(end)):
                    continue
            blocked[node] = end
        return blocked

    def _per_tensor(self, node: fx.Node) -> bool:
        return self.modules[node.target].qscheme in (torch.per_tensor_affine, torch.per_tensor_symmetric)

    def _producer(self, node: fx.Node) -> fx.Node:
        """The node computing ``node``'s input, looking through single-use quantizers."""
        src = node.args[0]
        while self._is(src, FakeQuantize) and len(src.users) == 1:
            src = src.args[0]
        return src

    # ---- ops -------------------------------------------------------------------------------------
    def weights(self, node: fx.Node) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        """A conv's weights (OIHW), bias and per-channel weight scales (None in float) as written:
        output channels reordered for a pixel shuffle, tiled for copies or on 2x2 blocks; input
        channels placed in a merged sibling conv's output."""
        name, mod = node.target, self.modules[node.target]
        w = mod.weight.detach().numpy().astype(np.float32)
        b = (mod.bias.detach().numpy() if mod.bias is not None else np.zeros(w.shape[0])).astype(np.float32)
        fq = getattr(mod, "weight_fake_quant", None)
        scale = fq.scale.detach().numpy() if fq is not None else None
        if name in self.shuffle_fed:
            order = depth_to_space_order(w.shape[0] // self.shuffle_fed[name] ** 2, self.shuffle_fed[name])
            w, b = w[order], b[order]
            scale = scale[order] if scale is not None else None
        if name in self.tiled:
            k = self.tiled[name]
            w, b = np.tile(w, (k, 1, 1, 1)), np.tile(b, k)
            scale = np.tile(scale, k) if scale is not None else None
        if node in self.blocked:
            w, b = block_kernel(w), np.tile(b, 4)
            scale = np.tile(scale, 4) if scale is not None else None
        place = self.sibling_places.get(node.args[0])
        if place is not None:  # zero weights off its own channels; the grid's factor undone
            wide = np.zeros((w.shape[0], place.channels, *w.shape[2:]), np.float32)
            wide[:, place.offset : place.offset + w.shape[1]] = w / place.factor
            w, scale = wide, scale / place.factor if scale is not None else None
        return w, b, scale

    def conv(self, tf, x, name: str, mod: nn.Conv2d, w: np.ndarray, b: np.ndarray, scale: np.ndarray | None,
             blocked: bool = False):
        """``mod`` (its geometry, grouping, activation and weight grid) written with ``w``, ``b``, ``scale``;
        ``blocked``: on 2x2 blocks of its output (``w`` from :func:`block_kernel`)."""
        if mod.dilation != (1, 1) or mod.padding_mode != "zeros" or isinstance(mod.padding, str):
            raise FadError(f"{name}: only zero-padded, undilated convs export (got {mod})")
        fq = getattr(mod, "weight_fake_quant", None)
        groups = mod.groups
        depthwise = groups > 1 and groups == mod.in_channels == mod.out_channels
        written = written_groups(mod, self.group_width)
        if written != groups:
            w, groups = merge_groups(w, groups, written), written
        if fq is not None and self.clamps:  # a 16x8 file: the converter quantizes these values per channel
            w = on_grid(w, scale, fq.quant_min, fq.quant_max)
        kernel = tf.constant(w.transpose(2, 3, 1, 0))  # OIHW -> HWIO (depthwise: HW1C)
        if fq is not None and not self.clamps:  # per output channel: the last axis
            lo, hi = grid_range(scale, np.zeros_like(scale), fq.quant_min, fq.quant_max)
            kernel = tf.quantization.fake_quant_with_min_max_vars_per_channel(  # narrow: [-127, 127], 254 steps
                kernel, lo.astype(np.float32), hi.astype(np.float32), num_bits=NUM_BITS,
                narrow_range=fq.quant_min == -fq.quant_max)
        (ph, pw), (sh, sw) = mod.padding, mod.stride
        k = mod.kernel_size
        same = blocked or (sh, sw) == (1, 1) and (2 * ph, 2 * pw) == (k[0] - 1, k[1] - 1)
        if blocked:  # on even sizes SAME pads a (k+1) x (k+1) stride-2 conv by k // 2 before, as the conv was
            sh = sw = 2
        padding = "SAME" if same else [[0, 0], [ph, ph], [pw, pw], [0, 0]]
        strides = [1, sh, sw, 1]
        if depthwise:  # DEPTHWISE_CONV_2D (a CONV_2D with one channel per group is slower and less portable)
            kernel = tf.reshape(kernel, [*k, groups, 1])  # HW1C -> HWC1: TF's depthwise layout
            y = tf.nn.depthwise_conv2d(x, kernel, strides=strides, padding=padding)
        else:
            y = tf.nn.conv2d(x, kernel, strides=strides, padding=padding)
        y = tf.nn.bias_add(y, tf.constant(b))
        if isinstance(mod, QATConvReLU62d):
            return tf.nn.relu6(y)
        if isinstance(mod, nniqat.ConvReLU2d):
            return tf.nn.relu(y)
        return y

    def merged_conv(self, tf, x, members: list[tuple[fx.Node, fx.Node]]):
        """Sibling convs + ReLU as one conv (:meth:`_merged_siblings`), each scaled by its factor."""
        parts = []
        for c, end in members:
            w, b, scale = self.weights(c)
            k = self.sibling_places[end].factor
            parts.append((w * k, b * k, scale * k if scale is not None else None))
        w, b = np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])
        scale = np.concatenate([p[2] for p in parts]) if self.quantized else None
        (first, first_end), *_ = members
        y = self.conv(tf, x, first.target, self.modules[first.target], w, b, scale)
        if not self.quantized:
            return tf.nn.relu(y)
        lo, hi = per_tensor_range(self.modules[first_end.target], self.sibling_places[first_end].factor)
        if self.clamps:
            return tf.clip_by_value(y, lo, hi)
        return tf.quantization.fake_quant_with_min_max_vars(y, lo, hi, num_bits=NUM_BITS)

    def pool(self, tf, node: fx.Node, x, mod: nn.AvgPool2d):
        """Non-overlapping average pooling as a strided convolution with weights 1 / k^2: a
        depthwise one (the pool's own multiplies), or, where the pool reads a channel slice
        (the split int8 input's first channels), one plain conv that reads the whole tensor
        with zero weights off the slice, so the slice is never copied. The same numbers, and
        in int8 far faster: XNNPACK runs no int8 AVERAGE_POOL_2D, and the builtin kernel takes
        6x the time of the conv (benchmarks/results/pool_as_conv.md)."""
        if not (mod.kernel_size == mod.stride and mod.padding == 0 and not mod.ceil_mode):
            raise FadError(f"{node.target}: only non-overlapping average pooling exports (got {mod})")
        k, src = mod.kernel_size, node.args[0]
        channels = x.shape[-1]
        if src.op == "call_function" and src.target is operator.getitem:
            x, picked = self.env[src.args[0]], src.args[1][1]
            kernel = np.zeros((k, k, x.shape[-1], channels), np.float32)
            kernel[:, :, np.arange(x.shape[-1])[picked], np.arange(channels)] = 1 / k**2
        else:
            kernel = np.full((k, k, 1, channels), 1 / k**2, np.float32)  # HW1C, as self.conv's depthwise
        kernel = tf.constant(kernel)
        if self.quantized and not self.clamps:  # int8 weights: 1 / k^2 is the top level of its per-channel grid
            bound = np.full(channels, 1 / k**2, np.float32)
            kernel = tf.quantization.fake_quant_with_min_max_vars_per_channel(kernel, -bound, bound,
                                                                              num_bits=NUM_BITS, narrow_range=True)
        if kernel.shape[2] == 1:
            return tf.nn.depthwise_conv2d(x, tf.reshape(kernel, [k, k, channels, 1]), [1, k, k, 1], "VALID")
        return tf.nn.conv2d(x, kernel, k, "VALID")

    def call_module(self, tf, node: fx.Node, args):
        mod = self.modules[node.target]
        x = args[0]
        if isinstance(mod, FakeQuantize):
            if not self.clamps:
                return fake_quant(tf, x, mod)
            return x if mod is self.input_quantizer else tf.clip_by_value(x, *per_tensor_range(mod))
        if isinstance(mod, nn.Conv2d):
            return self.conv(tf, x, node.target, mod, *self.weights(node), blocked=node in self.blocked)
        if isinstance(mod, nn.ReLU6):
            return tf.nn.relu6(x)
        if isinstance(mod, nn.ReLU):
            return tf.nn.relu(x)
        if isinstance(mod, nn.Identity):
            return x
        if isinstance(mod, nn.AvgPool2d):
            return self.pool(tf, node, x, mod)
        if isinstance(mod, nn.PixelShuffle):
            r = mod.upscale_factor
            src = self._producer(node)
            if not (src.op == "call_module" and src.target in self.shuffle_fed):  # reorder channels here
                x = tf.gather(x, depth_to_space_order(x.shape[-1] // (r * r), r), axis=3)
            return self.shuffle(tf, x, r)
        raise FadError(f"{node.target}: {type(mod).__name__} is not in the exportable op list")

    def shuffle(self, tf, x, r: int):
        """DEPTH_TO_SPACE of ``x`` (TF's channel order), or the same moves where int16 needs them."""
        return tf.nn.depth_to_space(x, r) if self.depth_to_space else depth_to_space_moves(tf, x, r)

    def call_function(self, tf, node: fx.Node, args):
        fn = node.target
        if fn in (operator.add, torch.add):
            return tf.add(*args)
        if fn in (operator.mul, torch.mul):
            return tf.multiply(*args)
        if fn is torch.cat:
            if node in self.tiled_concats:  # the conv's output channels already hold the copies
                return args[0][0]
            dim = concat_dim(node)
            if dim not in (1, -3):
                raise FadError(f"{node.name}: only channel concatenation exports (dim={dim})")
            return tf.concat(list(args[0]), axis=3)
        if fn is operator.getitem:  # a channel slice x[:, a:b] (the split input's first channels)
            x, index = args
            if not (len(index) == 2 and index[0] == slice(None) and index[1].step in (None, 1)):
                raise FadError(f"{node.name}: only channel slices export (got {index})")
            return x[..., index[1].start:index[1].stop]
        if fn in (F.relu, torch.relu):
            return tf.nn.relu(args[0])
        if fn is F.relu6:
            return tf.nn.relu6(args[0])
        raise FadError(f"{node.name}: function {getattr(fn, '__name__', fn)} is not in the exportable op list")

    # ---- the whole graph ------------------------------------------------------------------------
    def __call__(self, tf, x):
        """The core on NHWC ``x`` (h, w multiples of the network's padding multiple)."""
        env = self.env = {}
        load = lambda a: fx.node.map_arg(a, lambda n: env[n])  # noqa: E731
        unblocked = set(self.blocked.values())
        for node in self.gm.graph.nodes:
            if node in env:  # a merged sibling conv's, written with the first
                continue
            if node in self.siblings:
                y = self.merged_conv(tf, env[node.args[0]], self.siblings[node])
                env.update({n: y for pair in self.siblings[node] for n in pair})
            elif node.op == "placeholder":
                env[node] = x
            elif node.op == "call_module":
                env[node] = self.call_module(tf, node, load(node.args))
            elif node.op == "call_function":
                env[node] = self.call_function(tf, node, load(node.args))
            elif node.op == "output":
                return load(node.args[0])
            else:
                raise FadError(f"{node.name}: {node.op} {node.target} is not in the exportable op list")
            if node in unblocked:  # a conv on 2x2 blocks: back to its own layout
                env[node] = self.shuffle(tf, env[node], 2)
        raise FadError("the traced network has no output")
