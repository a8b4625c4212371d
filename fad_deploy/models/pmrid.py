"""PMRID-architecture baseline: the efficient U-Net of Wang et al., "Practical Deep Raw
Image Denoising on Mobile Devices" (ECCV 2020), written here from its published
architecture facts (no code or weights from its repository), so FAN's speed per RAW
megapixel can be measured against it side by side on any machine.

- stem: 3x3 conv 4 -> 16 + ReLU;
- encoder: four stages at 1/2 .. 1/16 resolution (64 / 128 / 256 / 512 channels, 2 / 2 / 4 / 4
  blocks, the first block of a stage strided); a block is two separable 5x5 convs (to out/4
  with ReLU, then to out), plus a shortcut (identity, or a separable 3x3 with the block's
  stride when the shape changes), added, then ReLU;
- bridge: separable 3x3 512 -> 64 + ReLU;
- decoder: four stages (to 64, 32, 32, 16 channels): a residual block of two separable 3x3
  convs on the coarse input, 2x up-sampling, plus the encoder skip through a separable
  3x3 + ReLU;
- output: a residual block at 16 channels and a 3x3 conv 16 -> 4; the network predicts a
  residual (global skip).

A separable conv is a depthwise kxk conv (no bias) followed by a pointwise 1x1 conv (with
bias). PMRID up-samples with a 2x2 stride-2 transposed conv; its four output positions per
input pixel do not overlap, so it is the same linear map as a 1x1 conv to 4x the channels
followed by a pixel shuffle, built that way here (:class:`Upsample2x`: the same MACs, a
bias per position) so the TensorFlow rebuild, QAT and the profilers need no new op.
PMRID scales its k-sigma input by 256; here the input is in the k-sigma anchor space the
other networks use. Input and output as in :mod:`fad_deploy.models.fan`.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn

from ..errors import FadError
from .layers import PaddedResidualNet, PadToMultiple, Upsample2x, conv3x3


@dataclass(frozen=True)
class PMRIDConfig:
    stem: int = 16  # full-resolution channels
    widths: tuple[int, ...] = (64, 128, 256, 512)  # encoder stage outputs, 1/2 .. 1/16 resolution
    blocks: tuple[int, ...] = (2, 2, 4, 4)  # encoder blocks per stage
    bridge: int = 64  # channels entering the decoder at the coarsest level
    decoder_widths: tuple[int, ...] = (64, 32, 32, 16)  # decoder stage outputs, 1/8 .. full resolution
    encoder_kernel: int = 5
    decoder_kernel: int = 3
    bottleneck: int = 4  # an encoder block's first conv narrows to out / bottleneck


class SeparableConv(nn.Module):
    """Depthwise kxk conv (no bias), then pointwise 1x1 conv (bias), optional ReLU."""

    def __init__(self, c_in: int, c_out: int, kernel: int, stride: int = 1, relu: bool = False):
        super().__init__()
        self.depthwise = nn.Conv2d(c_in, c_in, kernel, stride=stride, padding=kernel // 2, groups=c_in, bias=False)
        self.pointwise = nn.Conv2d(c_in, c_out, 1)
        self.act = nn.ReLU() if relu else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.pointwise(self.depthwise(x)))


class EncoderBlock(nn.Module):
    def __init__(self, c_in: int, c_out: int, kernel: int, bottleneck: int, stride: int = 1):
        super().__init__()
        mid = c_out // bottleneck
        self.conv1 = SeparableConv(c_in, mid, kernel, stride, relu=True)
        self.conv2 = SeparableConv(mid, c_out, kernel)
        same = stride == 1 and c_in == c_out
        self.shortcut = nn.Identity() if same else SeparableConv(c_in, c_out, 3, stride)
        self.act = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.conv2(self.conv1(x)) + self.shortcut(x))


class ResidualBlock(nn.Module):
    """x + sep(ReLU(sep(x))) at a fixed width."""

    def __init__(self, channels: int, kernel: int):
        super().__init__()
        self.conv1 = SeparableConv(channels, channels, kernel, relu=True)
        self.conv2 = SeparableConv(channels, channels, kernel)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv2(self.conv1(x))


class DecoderStage(nn.Module):
    """Residual block on the coarse input, 2x up-sampling, plus the encoder skip (separable 3x3 + ReLU)."""

    def __init__(self, c_in: int, c_skip: int, c_out: int, kernel: int):
        super().__init__()
        self.refine = ResidualBlock(c_in, kernel)
        self.up = Upsample2x(c_in, c_out)
        self.skip = SeparableConv(c_skip, c_out, kernel, relu=True)

    def forward(self, coarse: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        return self.up(self.refine(coarse)) + self.skip(skip)


class PMRID(PaddedResidualNet):
    def __init__(self, config: PMRIDConfig = PMRIDConfig()):
        super().__init__()
        self.config = c = config
        if len(c.decoder_widths) != len(c.widths) or len(c.blocks) != len(c.widths):
            raise FadError("PMRID: widths, blocks and decoder_widths need one entry per stage")
        self.pad = PadToMultiple(2 ** len(c.widths))
        self.stem = nn.Sequential(conv3x3(4, c.stem), nn.ReLU())
        self.enc = nn.ModuleList()
        c_in = c.stem
        for width, blocks in zip(c.widths, c.blocks):
            self.enc.append(nn.Sequential(*[
                EncoderBlock(c_in if b == 0 else width, width, c.encoder_kernel, c.bottleneck, 2 if b == 0 else 1)
                for b in range(blocks)]))
            c_in = width
        self.bridge = SeparableConv(c.widths[-1], c.bridge, c.decoder_kernel, relu=True)
        skips = (c.stem, *c.widths[:-1])[::-1]  # encoder outputs from 1/8 up to full resolution
        self.dec = nn.ModuleList()
        c_in = c.bridge
        for c_skip, width in zip(skips, c.decoder_widths):
            self.dec.append(DecoderStage(c_in, c_skip, width, c.decoder_kernel))
            c_in = width
        self.out = ResidualBlock(c_in, c.decoder_kernel)
        self.head = conv3x3(c_in, 4)

    def residual_padded(self, x: torch.Tensor) -> torch.Tensor:
        """The predicted residual (``forward_padded`` without the final input add), for exports."""
        f = self.stem(x)
        feats = [f]
        for stage in self.enc:
            f = stage(f)
            feats.append(f)
        f = self.bridge(f)
        for stage, skip in zip(self.dec, reversed(feats[:-1])):
            f = stage(f, skip)
        return self.head(self.out(f))
