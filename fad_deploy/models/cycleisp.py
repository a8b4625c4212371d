"""CycleISP-Lite: the RAW denoising branch of CycleISP (Zamir et al. 2020) scaled down to
the FAN student's compute, for the paper's Table 5 "same compute" comparison.

CycleISP denoises at full resolution (no down-sampling): a 3x3 conv, recursive residual
groups (RRG) of dual attention blocks (DAB: two 3x3 convs, then channel and spatial
attention side by side, fused by a 1x1 conv), a 3x3 conv back to the RAW planes and a
global residual. The original has 64 channels and 4 RRGs of 2 DABs; the Lite one keeps
the structure at 11 channels and 2 RRGs of 1 DAB, just under the student's MACs per pixel.
One change keeps it inside the profilers' op list (conv, pool, sigmoid, mul, add, concat):
the spatial attention pools over channels with a learned 1x1 conv instead of the fixed
channel max and mean. Input and output as in :mod:`fad_deploy.models.fan`.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn

from .layers import conv1x1, conv3x3


@dataclass(frozen=True)
class CycleISPConfig:
    width: int = 11
    groups: int = 2  # recursive residual groups
    blocks_per_group: int = 1  # dual attention blocks per group
    reduction: int = 4  # channel attention squeeze factor
    spatial_kernel: int = 5


class ChannelAttention(nn.Module):
    """Squeeze-and-excitation: global average, bottleneck 1x1 convs, a sigmoid gate per channel."""

    def __init__(self, channels: int, reduction: int):
        super().__init__()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.squeeze = conv1x1(channels, max(1, channels // reduction))
        self.excite = conv1x1(max(1, channels // reduction), channels)
        self.act, self.gate = nn.ReLU(), nn.Sigmoid()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gate(self.excite(self.act(self.squeeze(self.pool(x)))))


class SpatialAttention(nn.Module):
    """A sigmoid gate per pixel from two channel-pooled maps (learned pooling, see the module doc)."""

    def __init__(self, channels: int, kernel: int):
        super().__init__()
        self.pool = conv1x1(channels, 2)
        self.conv = nn.Conv2d(2, 1, kernel, padding=kernel // 2)
        self.gate = nn.Sigmoid()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gate(self.conv(self.pool(x)))


class DualAttentionBlock(nn.Module):
    def __init__(self, channels: int, reduction: int, spatial_kernel: int):
        super().__init__()
        self.body = nn.Sequential(conv3x3(channels, channels), nn.ReLU(), conv3x3(channels, channels))
        self.channel = ChannelAttention(channels, reduction)
        self.spatial = SpatialAttention(channels, spatial_kernel)
        self.fuse = conv1x1(2 * channels, channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f = self.body(x)
        return x + self.fuse(torch.cat([self.spatial(f), self.channel(f)], dim=1))


class RecursiveResidualGroup(nn.Module):
    def __init__(self, c: CycleISPConfig):
        super().__init__()
        self.body = nn.Sequential(*[DualAttentionBlock(c.width, c.reduction, c.spatial_kernel)
                                    for _ in range(c.blocks_per_group)], conv3x3(c.width, c.width))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class CycleISPLite(nn.Module):
    def __init__(self, config: CycleISPConfig = CycleISPConfig()):
        super().__init__()
        self.config = c = config
        self.head = conv3x3(4, c.width)
        self.groups = nn.Sequential(*[RecursiveResidualGroup(c) for _ in range(c.groups)])
        self.body_tail = conv3x3(c.width, c.width)
        self.tail = conv3x3(c.width, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.residual(x)

    def residual(self, x: torch.Tensor) -> torch.Tensor:
        """The predicted residual (full resolution throughout: any h, w, no padding)."""
        f = self.head(x)
        return self.tail(f + self.body_tail(self.groups(f)))
