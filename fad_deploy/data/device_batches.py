"""Training batches made with torch on the training device (a GPU): the same crops, Bayer
flips and noise as :class:`.dataset.NoisyPatches`, for a whole batch at once, from the patch
cache held on the device. On a GPU the per-image NumPy synthesis of ``NoisyPatches`` is the
bottleneck (worker processes only hide part of it); here a batch of 256 costs a few kernels.

Batch ``step`` is a pure function of (seed, step, rank) through a seeded torch generator:
runs resume exactly, on the same kind of device. The random numbers differ from
``NoisyPatches``' (another generator), their distribution does not.
"""
from __future__ import annotations

import math

import torch

from .dataset import check_crop
from .noise import READ_INTERCEPT, READ_SCATTER, READ_SLOPE, SHOT_RANGE
from .patch_cache import META_KEYS

# The packed planes R, Gr, Gb, B: which ones a Bayer-preserving flip shifts by one packed
# pixel (see .bayer.augment: flipping an RGGB mosaic and dropping one column at each side
# moves Gr and B one packed column, flipping and dropping rows moves Gb and B one row).
SHIFTED_BY_H_FLIP = (False, True, False, True)
SHIFTED_BY_V_FLIP = (False, False, True, True)
TRANSPOSED_PLANES = [0, 2, 1, 3]  # transposing an RGGB mosaic swaps Gr and Gb


def _flip(x: torch.Tensor, dim: int, shifted: tuple[bool, ...]) -> torch.Tensor:
    """Bayer-preserving flip of packed planes along ``dim`` (-1: columns, -2: rows): one packed
    pixel shorter, as :func:`.bayer.augment`'s flip of the mosaic."""
    f = x.flip(dim)
    n = x.shape[dim]
    planes = [f[:, c : c + 1].narrow(dim, 1 if s else 0, n - 1) for c, s in enumerate(shifted)]
    return torch.cat(planes, dim=1)


def bayer_augment(x: torch.Tensor, transpose: torch.Tensor, flip_h: torch.Tensor,
                  flip_v: torch.Tensor) -> torch.Tensor:
    """Per-image Bayer-preserving transpose / flips of packed RGGB patches (N, 4, P, P) ->
    (N, 4, P - 1, P - 1); each flag a (N,) bool tensor. Unflipped axes lose their last pixel
    so every image keeps one size."""
    pick = lambda flag, a, b: torch.where(flag.view(-1, 1, 1, 1), a, b)  # noqa: E731
    x = pick(transpose, x.transpose(-1, -2)[:, TRANSPOSED_PLANES], x)
    x = pick(flip_h, _flip(x, -1, SHIFTED_BY_H_FLIP), x[..., :-1])
    return pick(flip_v, _flip(x, -2, SHIFTED_BY_V_FLIP), x[..., :-1, :])


def crops(x: torch.Tensor, size: int, ys: torch.Tensor, xs: torch.Tensor) -> torch.Tensor:
    """Image i's ``size`` x ``size`` window at (ys[i], xs[i])."""
    r = torch.arange(size, device=x.device)
    n = torch.arange(len(x), device=x.device).view(-1, 1, 1, 1)
    c = torch.arange(x.shape[1], device=x.device).view(1, -1, 1, 1)
    return x[n, c, (ys.view(-1, 1) + r).view(-1, 1, size, 1), (xs.view(-1, 1) + r).view(-1, 1, 1, size)]


class DeviceBatches:
    """Noisy/clean batches from a patch cache, made on ``device`` (see the module doc)."""

    def __init__(self, cache: dict, crop: int, shot_range=SHOT_RANGE, seed: int = 0, read_band: float = 0.0,
                 device: str | torch.device = "cpu"):
        check_crop(crop, min(cache["raw"].shape[-2:]))
        self.device = torch.device(device)
        self.raw = torch.as_tensor(cache["raw"], dtype=torch.float32).to(self.device)
        self.meta = {k: torch.as_tensor(cache[k], dtype=torch.float32).to(self.device) for k in META_KEYS}
        self.crop, self.seed, self.read_band = crop, seed, read_band
        self.log_shot = (math.log(shot_range[0]), math.log(shot_range[1]))

    def batch(self, step: int, batch: int, world: int = 1, rank: int = 0) -> dict[str, torch.Tensor]:
        """Rank ``rank``'s batch ``step`` of ``batch`` images (keys as
        :func:`fad_deploy.train.trainer.sample_batch`'s)."""
        g = torch.Generator(self.device)
        g.manual_seed((self.seed * 1_000_003 + step) * world + rank)
        dev = dict(device=self.device, generator=g)
        k = torch.randint(len(self.raw), (batch,), **dev)
        flags = torch.randint(0, 2, (3, batch), **dev).bool()
        clean = bayer_augment(self.raw[k], *flags)
        room = clean.shape[-1] - self.crop + 1
        clean = crops(clean, self.crop, torch.randint(room, (batch,), **dev), torch.randint(room, (batch,), **dev))
        lo, hi = self.log_shot
        log_a = lo + (hi - lo) * torch.rand(batch, **dev)
        if self.read_band > 0:
            scatter = self.read_band * (2 * torch.rand(batch, **dev) - 1)
        else:
            scatter = READ_SCATTER * torch.randn(batch, **dev)
        shot, read = log_a.exp(), (READ_SLOPE * log_a + READ_INTERCEPT + scatter).exp()
        std = (shot.view(-1, 1, 1, 1) * clean.clamp_min(0) + read.view(-1, 1, 1, 1)).sqrt()
        noisy = clean + std * torch.randn(clean.shape, **dev)
        return {"noisy": noisy, "clean": clean, "shot": shot, "read": read,
                **{key: v[k] for key, v in self.meta.items()}}
