"""What an 8-bit network input costs by itself, linear or square-root: each float sub-range
model run on its input rounded to 256 levels (nothing else quantized, no QAT), its residual
added to that rounded input as the int8 recipe does, on int8_recipe.py's held-out crops.

In anchor space the shot noise of a pixel grows as sqrt(u), so a linear grid fine enough for
the shadows must clip the highlights (the learned grids do) and one wide enough for white at
the sub-range's lowest noise is coarse against the shadows' noise. On sqrt(u) the noise has
the same size at every intensity (a variance-stabilising map), so one step is as fine
everywhere. Grids here are set from the model's sub-range alone (white at its lowest noise,
the manifest's ``input_value_range``), or are the learned input grids of the shipped int8
checkpoints; nothing is fitted to the held-out crops.

    python benchmarks/int8_input_map.py
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch

from fad_deploy.data.photos import default_cache_dir
from fad_deploy.data.synth import folder_images, noise_list
from fad_deploy.export.manifest import anchor_value
from fad_deploy.export.validate import psnr_by_shot
from fad_deploy.fileio import write_json, write_text
from fad_deploy.models.registry import load_checkpoint, models_dir
from fad_deploy.quant.qat import quantized_base_grid
from fad_deploy.runners.base import (from_network_input, input_map_of, network_input, noise_arrays, postprocess,
                                     preprocess, quantized_base)
from int8_recipe import evaluation_set

RESULTS = Path(__file__).parent / "results"
BATCH = 8


def grid_over(lo: float, hi: float, input_map: str) -> dict:
    """The int8 grid (TFLite's zero point) over [lo, hi] of the network input under ``input_map``."""
    scale = (hi - lo) / 255
    zp = int(round(-128 - lo / scale))
    return {"scale": scale, "zero_point": zp, "min": (-128 - zp) * scale, "max": (127 - zp) * scale,
            "input_map": input_map}


@torch.no_grad()
def denoised_anchor(net: torch.nn.Module, u: np.ndarray, grid: dict | None) -> np.ndarray:
    """The float network on its input rounded to ``grid`` (clamped into it, mapped back to anchor
    space: it takes u), the residual added to the rounded input as the int8 recipe does."""
    rounded = u
    if grid is not None:
        input_map = input_map_of(grid)
        level = np.clip(np.round(network_input(u, input_map) / grid["scale"]) + grid["zero_point"], -128, 127)
        rounded = from_network_input((level - grid["zero_point"]) * grid["scale"], input_map).astype(np.float32)
    out = np.concatenate([net(torch.from_numpy(rounded[i:i + BATCH])).numpy() for i in range(0, len(u), BATCH)])
    return out if grid is None else out - rounded + quantized_base(u, grid)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--models", nargs="+", default=[f"fan-nsma-{i}" for i in range(4)])
    args = p.parse_args()
    torch.set_num_threads(2)
    images = list(folder_images(default_cache_dir() / "photos" / "test", 1, None))
    result = {"models": {}}
    lines = ["# The int8 input alone: linear or square-root", "",
             "Made by `python benchmarks/int8_input_map.py` on int8_recipe.py's held-out crops. Each float sub-range "
             "model runs on its input rounded to one of these 256-level grids (nothing else quantized, no QAT; the "
             "residual added to the rounded input, the input itself where it lies beyond the grid). Drop = RAW PSNR "
             "lost against the unrounded input (dB). 'white' = the input of a white pixel at the sub-range's lowest "
             "noise (the manifest's input_value_range max).", ""]
    for name in args.models:
        path = models_dir() / "nsma" / f"{name}.pt"
        ckpt = load_checkpoint(path)
        net = ckpt.build().eval()
        pairs = evaluation_set(images, ckpt.shot_range)
        noise = noise_arrays(noise_list(pairs), len(pairs["noisy"]))
        u = preprocess(pairs["noisy"], noise, ckpt.anchor)
        white = anchor_value(1.0, ckpt, low_noise=True)
        grids = {"linear over [0, white]": grid_over(0.0, white, "linear"),
                 "square root over [0, sqrt(white)]": grid_over(0.0, white ** 0.5, "sqrt")}
        shipped = path.with_suffix(".int8.pt")
        if shipped.is_file():
            q = load_checkpoint(shipped)
            learned = quantized_base_grid(q)
            if learned is not None:
                grids[f"the shipped int8 checkpoint's learned grid ({learned.get('input_map', 'linear')})"] = learned
        base, base_levels = psnr_by_shot(postprocess(denoised_anchor(net, u, None), noise, ckpt.anchor), pairs)
        rows = {}
        for label, g in grids.items():
            mean, levels = psnr_by_shot(postprocess(denoised_anchor(net, u, g), noise, ckpt.anchor), pairs)
            rows[label] = {"grid": g, "drop_db": base - mean,
                           "drop_by_shot": {s: base_levels[s] - v for s, v in levels.items()}}
            print(f"{name} {label}: drop {base - mean:+.3f} dB", flush=True)
        result["models"][name] = {"float_db": base, "float_by_shot": base_levels, "white": white, "grids": rows}
        shots = list(base_levels)
        lines += [f"## {name}: a in [{ckpt.shot_range[0]:.3g}, {ckpt.shot_range[1]:.3g}], white = {white:.3g}", "",
                  f"Float RAW PSNR {base:.3f} dB.", "",
                  "| int8 input grid | step | drop dB | " + " | ".join(f"a={s}" for s in shots) + " |",
                  "| --- | ---: | ---: | " + " | ".join("---:" for _ in shots) + " |"]
        lines += [f"| {label} | {r['grid']['scale']:.4g} | {r['drop_db']:+.3f} | "
                  + " | ".join(f"{r['drop_by_shot'][s]:+.3f}" for s in shots) + " |" for label, r in rows.items()]
        lines.append("")
    write_json(RESULTS / "int8_input_map.json", result)
    write_text(RESULTS / "int8_input_map.md", "\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
