"""Numbers behind the data-pipeline tests (issue 2): ISP round trips, demosaic quality,
noise statistics, SSIM agreement with scikit-image and the DNG write/read round trip.

    python benchmarks/data_pipeline.py [--json OUT]

Runs in well under a minute on one CPU core; every value is deterministic (seeded).
"""
from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import numpy as np
import torch
from scipy.ndimage import gaussian_filter
from skimage.metrics import structural_similarity

from fad_deploy.data import noise as N
from fad_deploy.data import unprocess as U
from fad_deploy.data.photos import skimage_photo
from fad_deploy.data.raw_io import from_mosaic, read_raw, write_dng
from fad_deploy.isp import process as P
from fad_deploy.isp.metrics import psnr, ssim


def blurred(name: str, sigma: float, side: int = 256) -> np.ndarray:
    img = skimage_photo(name).astype(np.float64)
    return np.clip(gaussian_filter(img, (sigma, sigma, 0.0)), 0.0, 1.0)[:side, :side]


def round_trip_psnr(photo: np.ndarray, seed: int) -> float:
    params = U.random_params(np.random.default_rng(seed))
    return psnr(P.process_numpy(U.unprocess(photo, params), params.as_arrays(), tone_map=True), photo)


def no_mosaic_error(photo: np.ndarray, seed: int) -> float:
    """Max error of unprocess -> process without mosaic/demosaic, away from highlights."""
    p = U.random_params(np.random.default_rng(seed))
    lin = U.apply_ccm(U.gamma_expansion(U.inverse_smoothstep(photo)), p.rgb2cam)
    raw = np.clip(U.safe_invert_gains(lin, p.rgb_gain, p.red_gain, p.blue_gain), 0.0, 1.0)
    gains = np.array([p.red_gain, 1.0, p.blue_gain]) * p.rgb_gain
    t = torch.from_numpy(np.clip(raw * gains, 0.0, 1.0)).permute(2, 0, 1)[None]
    t = torch.clamp(P.apply_ccm(t, torch.from_numpy(p.cam2rgb)[None]), 0.0, 1.0)
    back = P.smoothstep(P.gamma_compression(t))[0].permute(1, 2, 0).numpy()
    away = lin.mean(axis=-1) < U.HIGHLIGHT_THRESHOLD
    return float(np.abs(back - photo)[away].max())


def demosaic_psnr(name: str) -> dict:
    linear = U.gamma_expansion(U.inverse_smoothstep(skimage_photo(name).astype(np.float64)))
    raw = U.mosaic(linear)
    bilinear = P.demosaic_bilinear(torch.from_numpy(raw)[None])[0].permute(1, 2, 0).numpy()
    malvar = np.clip(P.demosaic_malvar(raw), 0.0, 1.0)
    return {"bilinear_db": round(psnr(bilinear, linear), 2), "malvar_db": round(psnr(malvar, linear), 2)}


def preview_psnr() -> dict:
    photo = skimage_photo("coffee")[64:192, 64:192]
    params = U.random_params(np.random.default_rng(3))
    raw = U.unprocess(photo, params)
    return {"preview_malvar_db": round(psnr(P.preview_rgb(raw, params.as_arrays()) / 255.0, photo), 2),
            "bilinear_isp_db": round(psnr(P.process_numpy(raw, params.as_arrays(), tone_map=True), photo), 2)}


def noise_variance_errors() -> dict:
    """Relative error of the empirical variance vs a*x + b on a flat 512x512 image."""
    rng = np.random.default_rng(0)
    worst = {"gaussian": 0.0, "poisson": 0.0}
    for params in (N.NoiseParams(1e-3, 2e-5), N.NoiseParams(1e-2, 4e-4)):
        for level in (0.02, 0.2, 0.8):
            for mode in worst:
                clean = np.full((512, 512), level)
                var = (N.add_noise(clean, params, rng, poisson=mode == "poisson") - level).var()
                worst[mode] = max(worst[mode], abs(var / params.variance(level) - 1))
    return {f"{k}_max_rel_error": round(v, 4) for k, v in worst.items()}


def upi_regression() -> dict:
    rng = np.random.default_rng(0)
    samples = [N.sample_noise_params(rng) for _ in range(4000)]
    log_a, log_b = np.log([p.shot for p in samples]), np.log([p.read for p in samples])
    slope, intercept = np.polyfit(log_a, log_b, 1)
    return {"slope": round(float(slope), 3), "intercept": round(float(intercept), 3),
            "scatter": round(float(np.std(log_b - (N.READ_SLOPE * log_a + N.READ_INTERCEPT))), 3)}


def anchor_variance_error() -> float:
    anchor = N.anchor_for_range(N.SHOT_RANGE)
    rng = np.random.default_rng(0)
    worst = 0.0
    for params in (N.NoiseParams(1e-3, 2e-5), N.NoiseParams(1e-2, 4e-4)):
        for level in (0.05, 0.5):
            y = N.to_anchor(N.add_noise(np.full((512, 512), level), params, rng).astype(np.float64), params, anchor)
            expected = anchor.shot * N.to_anchor(level, params, anchor) + anchor.read
            worst = max(worst, abs(y.var() / expected - 1))
    return round(worst, 4)


def ssim_agreement() -> dict:
    rng = np.random.default_rng(0)
    clean = U.unprocess(skimage_photo("chelsea")[:96, :128], U.random_params(rng))
    noisy = N.add_noise(clean, N.NoiseParams(4e-3, 1e-4), rng)
    photo = skimage_photo("coffee")[:80, :120].astype(np.float64)
    noisy_rgb = np.clip(photo + np.random.default_rng(1).normal(0, 0.05, photo.shape), 0, 1)
    kw = dict(gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=1.0)
    raw_diff = abs(ssim(noisy, clean, 0) - structural_similarity(noisy, clean, channel_axis=0, **kw))
    rgb_diff = abs(ssim(noisy_rgb, photo, -1) - structural_similarity(noisy_rgb, photo, channel_axis=-1, **kw))
    return {"raw_abs_diff": float(f"{raw_diff:.2e}"), "rgb_abs_diff": float(f"{rgb_diff:.2e}")}


def dng_round_trip() -> dict:
    """Normalised planes -> write_dng -> read_raw: worst difference, in 16-bit steps."""
    rng = np.random.default_rng(0)
    worst = 0.0
    with tempfile.TemporaryDirectory() as tmp:
        for cfa in ("RGGB", "GRBG", "GBRG", "BGGR"):
            src = from_mosaic(rng.uniform(0, 1, (64, 96)), cfa, np.zeros(4), 1.0, "synthetic", wb=(2.0, 1.5))
            back = read_raw(write_dng(Path(tmp) / f"{cfa}.dng", src, src.planes))
            assert back.cfa == cfa
            worst = max(worst, float(np.abs(back.planes - src.planes).max()) * 65535)
    return {"max_error_in_16bit_steps": round(worst, 3)}


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--json", type=Path, help="also write the results here")
    args = p.parse_args()
    results = {
        "round_trip_psnr_db": {
            f"astronaut_256_blur{s:g}_seed{seed}": round(round_trip_psnr(blurred("astronaut", s), seed), 2)
            for s in (1.0, 2.0) for seed in (1, 2)
        },
        "no_mosaic_max_error": float(f"{no_mosaic_error(blurred('astronaut', 2.0), 1):.2e}"),
        "demosaic_linear_chelsea": demosaic_psnr("chelsea"),
        "preview_vs_bilinear_coffee_crop": preview_psnr(),
        "noise_variance": noise_variance_errors(),
        "anchor_variance_max_rel_error": anchor_variance_error(),
        "upi_read_vs_shot": upi_regression(),
        "ssim_vs_skimage": ssim_agreement(),
        "dng_round_trip": dng_round_trip(),
    }
    text = json.dumps(results, indent=2)
    print(text)
    if args.json:
        from fad_deploy.fileio import write_text

        write_text(args.json, text + "\n")


if __name__ == "__main__":
    main()
