"""Where in the image the int8 error of a quantized checkpoint lies, and which tensors clip:
per noise level of int8_recipe.py's held-out crops, the int8 network's error against the
float model's by the clean signal's brightness (each band's share of the added error), and
the fraction of each activation quantizer's input that falls outside its int8 range.

    python benchmarks/int8_clipping.py models/nsma/fan-nsma-0.int8.pt [--top 6]

Writes benchmarks/results/int8_clipping_<model>.md and .json.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch

from fad_deploy.data.photos import default_cache_dir
from fad_deploy.data.synth import folder_images
from fad_deploy.export.validate import denoised
from fad_deploy.fileio import write_json, write_text
from fad_deploy.models.registry import load_checkpoint, resolve_model
from fad_deploy.quant.qat import FakeQuantRunner, quantizers
from fad_deploy.runners.torch_runner import TorchRunner
from int8_recipe import evaluation_set
from int8_sensitivity import producers

RESULTS = Path(__file__).resolve().parent / "results"
BANDS = (0.0, 0.05, 0.1, 0.2, 0.4, 0.7, 1.0 + 1e-6)  # of the clean RAW signal


def brightness_bands(clean: np.ndarray, float_out: np.ndarray, int8_out: np.ndarray) -> list[dict]:
    """Per band of the clean signal: its share of the pixels, the int8 drop inside it (its
    pooled squared errors) and its share of the error the int8 network adds."""
    e_float, e_int8 = (float_out - clean) ** 2, (int8_out - clean) ** 2
    added = (e_int8 - e_float).sum()
    rows = []
    for lo, hi in zip(BANDS[:-1], BANDS[1:]):
        m = (clean >= lo) & (clean < hi)
        if m.any():
            rows.append({"band": [lo, min(hi, 1.0)], "pixels": float(m.mean()),
                         "drop_db": float(10 * np.log10(e_int8[m].mean() / e_float[m].mean())),
                         "share_of_added_error": float((e_int8 - e_float)[m].sum() / added)})
    return rows


def run_counting_clips(runner: FakeQuantRunner, pairs: dict) -> tuple[np.ndarray, dict[str, float]]:
    """``pairs`` denoised by the int8 network, and per activation quantizer the fraction of its
    input outside its int8 range."""
    counts: dict[str, list[float]] = {}

    def hook(name):
        def h(mod, args, _):
            s, z = float(mod.scale), int(mod.zero_point)
            x = args[0]
            outside = (x < (mod.quant_min - z) * s) | (x > (mod.quant_max - z) * s)
            counts.setdefault(name, [0.0, 0.0])
            counts[name][0] += float(outside.sum())
            counts[name][1] += x.numel()
        return h

    acts = {n: m for n, m in quantizers(runner.model.core).items() if not n.endswith("weight_fake_quant")}
    handles = [m.register_forward_hook(hook(n)) for n, m in acts.items()]
    try:
        out = denoised(runner, pairs)
    finally:
        for h in handles:
            h.remove()
    return out, {n: c[0] / c[1] for n, c in counts.items()}


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("checkpoint", help="quantized checkpoint (<model>.int8.pt)")
    p.add_argument("--top", type=int, default=6, help="clipping quantizers to list per level")
    args = p.parse_args()
    torch.set_num_threads(2)
    q = load_checkpoint(args.checkpoint)
    source = load_checkpoint(resolve_model(q.card["quantization"]["source"]))  # its float model, by name
    images = list(folder_images(default_cache_dir() / "photos" / "test", 1, None))
    pairs = evaluation_set(images, source.shot_range)
    runner = FakeQuantRunner(q)
    float_out = denoised(TorchRunner(source), pairs)
    ops = {n.split(".")[-1]: op for n, op in producers(runner.model).items()}
    result = {"checkpoint": str(args.checkpoint), "levels": {}}
    lines = [f"# Where the int8 error of {q.name} lies", "",
             f"Made by `python benchmarks/int8_clipping.py {args.checkpoint}` on int8_recipe.py's held-out crops "
             "(the same seed and levels). Per noise level: the int8 network's squared error against the float "
             "model's, by band of the clean RAW signal (drop = the band's pooled error ratio in dB; share = its part "
             "of all the error int8 adds), and the activation quantizers whose input most often lies outside their "
             "int8 range (clipped).", ""]
    for shot in np.unique(pairs["shot"]):
        sel = pairs["shot"] == shot
        level = {k: v[sel] for k, v in pairs.items()}
        int8_out, clipped = run_counting_clips(runner, level)
        bands = brightness_bands(level["clean"], float_out[sel], int8_out)
        top = sorted(clipped.items(), key=lambda kv: -kv[1])[:args.top]
        result["levels"][f"{shot:.3g}"] = {"bands": bands, "clipped": clipped}
        lines += [f"## a = {shot:.3g}", "", "| clean signal | pixels | int8 drop dB | share of the added error |",
                  "| --- | ---: | ---: | ---: |"]
        lines += [f"| [{b['band'][0]:g}, {b['band'][1]:g}) | {b['pixels']:.3f} | {b['drop_db']:+.2f} | "
                  f"{b['share_of_added_error']:.2f} |" for b in bands]
        lines += ["", "Clipped most often: " + ", ".join(
            f"{name} ({ops.get(name, '?')}) {frac:.2%}" for name, frac in top), ""]
    stem = f"int8_clipping_{q.name}"
    write_json(RESULTS / f"{stem}.json", result)
    write_text(RESULTS / f"{stem}.md", "\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
