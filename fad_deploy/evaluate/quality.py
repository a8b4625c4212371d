"""Metrics of a denoiser on a noisy/clean set: RAW PSNR/SSIM on the 4 planes and RGB
PSNR/SSIM after UPI's minimal ISP, averaged over images, also per shot level."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from tqdm import tqdm

from ..data.synth import noise_list
from ..isp.metrics import psnr, ssim_torch
from ..isp.process import process

METRICS = ("raw_psnr", "raw_ssim", "rgb_psnr", "rgb_ssim")


@dataclass
class Scores:
    """Per-image metric arrays (N,) for one denoiser on one set."""

    raw_psnr: np.ndarray
    raw_ssim: np.ndarray
    rgb_psnr: np.ndarray
    rgb_ssim: np.ndarray

    def mean(self) -> dict[str, float]:
        return {k: round(float(np.mean(getattr(self, k))), 4) for k in METRICS}

    def per_level(self, shots: np.ndarray) -> list[dict]:
        rows = []
        for a in np.unique(shots):
            sel = shots == a
            rows.append({"shot": float(a), **{k: round(float(np.mean(getattr(self, k)[sel])), 4) for k in METRICS}})
        return rows


def _rgb(raw: np.ndarray, pairs: dict, sl: slice) -> torch.Tensor:
    t = lambda k: torch.from_numpy(np.asarray(pairs[k][sl], dtype=np.float32))  # noqa: E731
    return process(torch.from_numpy(raw), t("red_gain"), t("blue_gain"), t("cam2rgb"))


def score(denoised: np.ndarray, pairs: dict, batch: int = 32) -> Scores:
    """Metrics of ``denoised`` (N, 4, h, w) against ``pairs['clean']``."""
    out = {k: [] for k in METRICS}
    clean = pairs["clean"]
    for i in range(0, len(clean), batch):
        sl = slice(i, i + batch)
        d = np.clip(denoised[sl], 0.0, 1.0).astype(np.float32)
        c = clean[sl].astype(np.float32)
        out["raw_psnr"] += [psnr(x, y) for x, y in zip(d, c)]
        out["raw_ssim"] += ssim_torch(torch.from_numpy(d).double(), torch.from_numpy(c).double()).tolist()
        rd, rc = _rgb(d, pairs, sl), _rgb(c, pairs, sl)
        out["rgb_psnr"] += [psnr(x, y) for x, y in zip(rd.numpy(), rc.numpy())]
        out["rgb_ssim"] += ssim_torch(rd.double(), rc.double()).tolist()
    return Scores(**{k: np.array(v) for k, v in out.items()})


def denoise_set(runner, pairs: dict, batch: int = 16, desc: str = "") -> np.ndarray:
    """Run a Runner over the whole set in batches, with a progress bar."""
    noise, outs = noise_list(pairs), []
    for i in tqdm(range(0, len(pairs["noisy"]), batch), desc=desc, unit="batch", leave=False):
        outs.append(runner.denoise(pairs["noisy"][i : i + batch], noise[i : i + batch]))
    return np.concatenate(outs)


def denoise_set_classical(fn, pairs: dict, desc: str = "") -> np.ndarray:
    noise = noise_list(pairs)
    return np.stack([fn(x, p) for x, p in tqdm(list(zip(pairs["noisy"], noise)), desc=desc, unit="img", leave=False)])
