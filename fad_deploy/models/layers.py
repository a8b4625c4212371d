"""Layers shared by several networks. The op set is deliberately small (conv, grouped
conv, ReLU/ReLU6, add, mul, concat, pad, average pool, pixel (un)shuffle) so that the
TensorFlow rebuild, the MAC counter and the memory planner can each handle a closed list.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F


def conv3x3(c_in: int, c_out: int, stride: int = 1, groups: int = 1) -> nn.Conv2d:
    return nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, groups=groups)


def conv1x1(c_in: int, c_out: int) -> nn.Conv2d:
    return nn.Conv2d(c_in, c_out, 1)


class PadToMultiple(nn.Module):
    """Replicate-pad (N, C, h, w) on the bottom/right so h and w divide by ``multiple``."""

    def __init__(self, multiple: int):
        super().__init__()
        self.multiple = multiple

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # No early return when nothing is padded: a branch on the size would be frozen
        # into traced exports (ONNX with dynamic h, w); padding by 0 is the identity.
        h, w = x.shape[-2:]
        return F.pad(x, (0, (-w) % self.multiple, 0, (-h) % self.multiple), mode="replicate")


class PaddedResidualNet(nn.Module):
    """What every exportable denoiser shares. A subclass sets ``pad`` (a :class:`PadToMultiple`)
    and defines ``residual_padded(x)`` (the predicted residual on a padded input); the input
    is added back, and the padding cropped, here."""

    pad: PadToMultiple

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        return self.forward_padded(self.pad(x))[..., :h, :w]

    def forward_padded(self, x: torch.Tensor) -> torch.Tensor:
        """The network on an input already padded to a multiple of ``self.pad.multiple``:
        free of shape-dependent code, so torch.fx traces it (QAT, TensorFlow rebuild)."""
        return x + self.residual_padded(x)


class Upsample2x(nn.Module):
    """Learned 2x upsampling: 1x1 conv to 4x channels, then pixel shuffle (DEPTH_TO_SPACE)."""

    def __init__(self, c_in: int, c_out: int):
        super().__init__()
        self.conv = conv1x1(c_in, 4 * c_out)
        self.shuffle = nn.PixelShuffle(2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.shuffle(self.conv(x))


class HaarDown(nn.Module):
    """Orthonormal Haar DWT: (N, C, 2h, 2w) -> (N, 4C, h, w) sub-bands LL, LH, HL, HH per channel."""

    def __init__(self, channels: int):
        super().__init__()
        self.unshuffle = nn.PixelUnshuffle(2)
        self.mix = nn.Conv2d(4 * channels, 4 * channels, 1, groups=channels, bias=False)
        self.mix.weight.data.copy_(_haar_matrix().repeat(channels, 1)[:, :, None, None])
        self.mix.weight.requires_grad_(False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.mix(self.unshuffle(x))


class HaarUp(nn.Module):
    """Inverse of :class:`HaarDown` (the Haar matrix is orthonormal: its inverse is its transpose)."""

    def __init__(self, channels: int):
        super().__init__()
        self.mix = nn.Conv2d(4 * channels, 4 * channels, 1, groups=channels, bias=False)
        self.mix.weight.data.copy_(_haar_matrix().t().contiguous().repeat(channels, 1)[:, :, None, None])
        self.mix.weight.requires_grad_(False)
        self.shuffle = nn.PixelShuffle(2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.shuffle(self.mix(x))


def _haar_matrix() -> torch.Tensor:
    """Rows: LL, LH, HL, HH filters over the 2x2 block (a, b, c, d) in pixel-unshuffle order."""
    return 0.5 * torch.tensor(
        [[1.0, 1.0, 1.0, 1.0], [1.0, 1.0, -1.0, -1.0], [1.0, -1.0, 1.0, -1.0], [1.0, -1.0, -1.0, 1.0]]
    )
