"""UPI-style U-Net (Brooks et al. 2019): plain 3x3 convs, concatenated skips.

Used as the teacher (wide, two convs per level) and, scaled down, as the UPI-Raw-Lite
baseline of the paper's Table 5 (one conv per level, widths x 0.3). Input/output as in
:mod:`fad_deploy.models.fan`. :meth:`UNet.features` exposes the multi-scale encoder
activations that the Feature Matching loss compares.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn

from .layers import PaddedResidualNet, PadToMultiple, Upsample2x, conv3x3


@dataclass(frozen=True)
class UNetConfig:
    widths: tuple[int, ...] = (32, 64, 128, 256)
    convs_per_level: int = 2


class ConvStack(nn.Sequential):
    def __init__(self, c_in: int, c_out: int, depth: int):
        layers = []
        for k in range(depth):
            layers += [conv3x3(c_in if k == 0 else c_out, c_out), nn.ReLU()]
        super().__init__(*layers)


class UNet(PaddedResidualNet):
    def __init__(self, config: UNetConfig = UNetConfig()):
        super().__init__()
        self.config = c = config
        w, n, d = c.widths, len(c.widths), c.convs_per_level
        self.pad = PadToMultiple(2 ** (n - 1))
        self.pool = nn.AvgPool2d(2)
        self.enc = nn.ModuleList([ConvStack(4 if i == 0 else w[i - 1], w[i], d) for i in range(n)])
        self.up = nn.ModuleList([Upsample2x(w[i + 1], w[i]) for i in reversed(range(n - 1))])
        self.dec = nn.ModuleList([ConvStack(2 * w[i], w[i], d) for i in reversed(range(n - 1))])
        self.head = conv3x3(w[0], 4)

    def _encode(self, x: torch.Tensor) -> list[torch.Tensor]:
        feats = []
        f = x
        for i, stage in enumerate(self.enc):
            f = stage(self.pool(f) if i > 0 else f)
            feats.append(f)
        return feats

    def features(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Encoder activations at every resolution (for the Feature Matching loss)."""
        return self._encode(self.pad(x))

    def residual_padded(self, x: torch.Tensor) -> torch.Tensor:
        """The predicted residual (``forward_padded`` without the final input add), for exports."""
        feats = self._encode(x)
        f = feats[-1]
        for j, i in enumerate(reversed(range(len(feats) - 1))):
            f = self.dec[j](torch.cat([self.up[j](f), feats[i]], dim=1))
        return self.head(f)
