"""Feature-Align Network (Young et al., "Feature-Align Network with Knowledge
Distillation for Efficient Denoising"), and its Table 1 ablations as configurations:

- ``fan``: ARNet blocks, shrunk skip connections, Feature-Align after every block;
- ``unet-plain``: the same U-Net without Feature-Align;
- ``unet-wavelet``: Haar DWT / inverse DWT for down/up-sampling, no Feature-Align;
- ``fan-noskip``: Feature-Align without the shrunk skip connections.

Input and output: packed 4-plane RAW after the k-sigma transform to the model's
anchor noise level, (N, 4, h, w) with any h, w; the network predicts a residual.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn

from .layers import HaarDown, HaarUp, PaddedResidualNet, PadToMultiple, Upsample2x, conv1x1


@dataclass(frozen=True)
class FANConfig:
    widths: tuple[int, ...] = (16, 24, 48, 96, 160)  # channels per resolution level
    expansions: tuple[int, ...] = (1, 1, 2, 2, 2)  # ARNet inverted-residual expansion per level
    group_width: int | tuple[int, ...] = 4  # channels per group of the ARNet group conv (1: depthwise), or per level
    group_kernel: int | tuple[int, ...] = 3  # kernel size of the ARNet group conv (odd), or per level
    # ARNet hidden channels (before expansion) at least this, at most the block's output width: with group
    # width 1 the first block, reading the 4-plane RAW, would otherwise get 4 (min(max(c_in, 4 x group width), c_out))
    min_hidden: int = 0
    # ARNet hidden channels (after expansion) at a level, or per level, in place of the rule above (0: the rule);
    # with group_width >= hidden the group conv is a dense one (a narrow dense 3x3 runs at several times the MAC
    # rate of 4-channel groups in XNNPACK: per_op_fan-avx2.md)
    hidden: int | tuple[int, ...] = 0
    # stride-1 residual ARNet blocks after each level's encoder block: depth where it is cheap (the coarse levels)
    extra_blocks: tuple[int, ...] = (0, 0, 0, 0, 0)
    skip_shrink: int = 4  # encoder features shrink by this factor on the skip path
    align_hidden: int | tuple[int, ...] = 8  # hidden channels of each Feature-Align conditioning net, or per level
    # kernel of the conditioning conv on the noisy input (odd), or per level: a 1x1 at full resolution cost a further
    # 0.40 dB RAW PSNR with the separable head (fan_config_quality-steps9600-avx2-r10.md)
    align_kernel: int | tuple[int, ...] = 3
    feature_align: bool = True
    align_min_level: int = 0  # Feature-Align at this level and coarser ones (0: every level, as in the paper)
    # the decoder's Feature-Align reuses the encoder's conditioning at its level (one for all levels, or per level)
    shared_align: bool | tuple[bool, ...] = False
    skips: bool = True
    sampling: str = "conv"  # "conv": strided ARNet + pixel shuffle; "haar": wavelet
    # kernel of the head, the full-resolution conv to the 4-plane residual (odd): a 3x3 to 4 channels runs at
    # about half XNNPACK's int8 MAC rate (per_op_fan-avx2.md), but a 1x1 head cost 0.46 dB RAW PSNR at equal
    # training (fan_config_quality-steps9600-avx2-tiled.md)
    head_kernel: int = 3
    # the head as a depthwise head_kernel conv followed by a 1x1 to 4 channels (a separable head): 2-5% less int8 time
    # for the whole network (fan_config_search-avx2-r10.md), but 0.38 dB RAW PSNR less at equal training
    # (fan_config_quality-steps9600-avx2-r10.md), nearly the 1x1 head's loss
    head_depthwise: bool = False

    def at(self, level: int, setting: str) -> int:
        """A setting given for all levels or per level, at ``level``."""
        value = getattr(self, setting)
        return value if isinstance(value, int) else value[level]


class ARNetBlock(nn.Module):
    """MobileNetV2 inverted residual with the depthwise conv replaced by a group conv."""

    def __init__(self, c_in: int, c_out: int, hidden: int, group_width: int, stride: int = 1, kernel: int = 3):
        super().__init__()
        self.expand = conv1x1(c_in, hidden)
        self.group = nn.Conv2d(hidden, hidden, kernel, stride=stride, padding=kernel // 2,
                               groups=max(1, hidden // group_width))
        self.project = conv1x1(hidden, c_out)
        self.act = nn.ReLU6()
        self.residual = stride == 1 and c_in == c_out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.project(self.act(self.group(self.act(self.expand(x)))))
        return x + y if self.residual else y


class FeatureAlign(nn.Module):
    """G = gamma * F + beta, with per-pixel gamma and beta computed from the noisy input
    resized to the feature's resolution (a SPADE-style conditioning net)."""

    def __init__(self, channels: int, hidden: int, in_channels: int = 4, condition: bool = True, kernel: int = 3):
        super().__init__()
        # condition=False: the conditioning features come from another Feature-Align (FANConfig.shared_align)
        self.shared = nn.Conv2d(in_channels, hidden, kernel, padding=kernel // 2) if condition else None
        self.act = nn.ReLU()
        # 1x1 heads (SPADE uses 3x3): the shared conv (3x3 unless FANConfig.align_kernel) gives spatial context,
        # and at full resolution 3x3 heads alone would cost more than the whole MAC budget.
        self.gamma = conv1x1(hidden, channels)
        self.beta = conv1x1(hidden, channels)
        # Start as the identity modulation so training begins from a plain U-Net.
        nn.init.zeros_(self.gamma.weight)
        nn.init.ones_(self.gamma.bias)
        nn.init.zeros_(self.beta.weight)
        nn.init.zeros_(self.beta.bias)

    def condition(self, noisy: torch.Tensor) -> torch.Tensor:
        return self.act(self.shared(noisy))

    def modulate(self, features: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        """``features`` modulated by the conditioning features ``h`` (see :meth:`condition`)."""
        return self.gamma(h) * features + self.beta(h)

    def forward(self, features: torch.Tensor, noisy: torch.Tensor) -> torch.Tensor:
        return self.modulate(features, self.condition(noisy))


class SkipShrink(nn.Module):
    """1x1 conv that shrinks encoder features; the decoder replicates them back to its width."""

    def __init__(self, channels: int, factor: int):
        super().__init__()
        self.factor = factor
        self.conv = conv1x1(channels, channels // factor)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)

    def expand(self, shrunk: torch.Tensor) -> torch.Tensor:
        return torch.cat([shrunk] * self.factor, dim=1)


class FAN(PaddedResidualNet):
    def __init__(self, config: FANConfig = FANConfig()):
        super().__init__()
        self.config = c = config
        w, n = c.widths, len(config.widths)
        self.pad = PadToMultiple(2 ** (n - 1))
        self.pool = nn.AvgPool2d(2)

        def block(level: int, c_in: int, c_out: int, stride: int = 1) -> ARNetBlock:
            # Expand relative to the narrower side: cheap for the RAW input and strided blocks.
            gw = c.at(level, "group_width")
            hidden = c.at(level, "hidden") or min(max(c_in, 4 * gw, c.min_hidden), c_out) * c.expansions[level]
            return ARNetBlock(c_in, c_out, hidden, gw, stride, c.at(level, "group_kernel"))

        self.enc = nn.ModuleList([block(0, 4, w[0])])  # the first contracting layer reads the RAW
        self.down = nn.ModuleList()
        for i in range(1, n):
            if c.sampling == "haar":
                self.down.append(HaarDown(w[i - 1]))
                self.enc.append(block(i, 4 * w[i - 1], w[i]))
            else:
                self.down.append(nn.Identity())
                self.enc.append(block(i, w[i - 1], w[i], 2))
        # only when asked for, so that the checkpoints of networks without them keep their keys
        self.extra = nn.ModuleList([nn.Sequential(*(block(i, w[i], w[i]) for _ in range(c.extra_blocks[i])))
                                    for i in range(n)]) if any(c.extra_blocks) else None
        self.up = nn.ModuleList()
        self.dec = nn.ModuleList()
        for i in reversed(range(n - 1)):
            if c.sampling == "haar":
                # Reduce to a quarter of the width first so the inverse DWT lands on w[i] channels.
                self.up.append(nn.Sequential(conv1x1(w[i + 1], 4 * w[i]), HaarUp(w[i])))
            else:
                self.up.append(Upsample2x(w[i + 1], w[i]))
            self.dec.append(block(i, w[i], w[i]))
        self.skips = nn.ModuleList([SkipShrink(w[i], c.skip_shrink) for i in range(n - 1)]) if c.skips else None
        if c.feature_align:  # an identity placeholder keeps the module indices (checkpoint keys) per level
            def align(level: int, condition: bool = True) -> nn.Module:
                if level < c.align_min_level:
                    return nn.Identity()
                return FeatureAlign(w[level], c.at(level, "align_hidden"), condition=condition,
                                    kernel=c.at(level, "align_kernel"))

            self.enc_align = nn.ModuleList([align(i) for i in range(n)])
            self.dec_align = nn.ModuleList([align(i, not c.at(i, "shared_align")) for i in reversed(range(n - 1))])
        k = c.head_kernel
        self.head = (nn.Sequential(nn.Conv2d(w[0], w[0], k, padding=k // 2, groups=w[0]), conv1x1(w[0], 4))
                     if c.head_depthwise else nn.Conv2d(w[0], 4, k, padding=k // 2))

    def residual_padded(self, x: torch.Tensor) -> torch.Tensor:
        """The predicted residual (``forward_padded`` without the final input add): what the
        exports output, as it has a noise-sized range that int8 represents well."""
        n = len(self.config.widths)
        pyramid = [x]  # the noisy input at each level's resolution, for Feature-Align
        for _ in range(1, n):
            pyramid.append(self.pool(pyramid[-1]))
        aligned = self.config.feature_align
        f = x
        skips, conditions = [], {}
        for i in range(n):
            if i > 0:
                f = self.down[i - 1](f)
            f = self.enc[i](f)
            if self.extra is not None:
                f = self.extra[i](f)
            if aligned and i >= self.config.align_min_level:
                conditions[i] = self.enc_align[i].condition(pyramid[i])
                f = self.enc_align[i].modulate(f, conditions[i])
            if i < n - 1 and self.skips is not None:
                skips.append(self.skips[i](f))
        for j, i in enumerate(reversed(range(n - 1))):
            f = self.up[j](f)
            if self.skips is not None:
                f = f + self.skips[i].expand(skips[i])
            f = self.dec[j](f)
            if aligned and i >= self.config.align_min_level:
                fa = self.dec_align[j]
                f = fa.modulate(f, conditions[i] if self.config.at(i, "shared_align") else fa.condition(pyramid[i]))
        return self.head(f)
