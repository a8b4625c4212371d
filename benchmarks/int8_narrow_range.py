"""Would narrower noise sub-ranges help the int8 array (issue 17)? Each sub-range model loses
most at the top of its range, where the k-sigma map has scaled the image down against
activation ranges the lower levels set. One more warm-restart QAT cycle of a shipped model's
recipe, from the same checkpoint (the recipe's third cycle, kept by int8_recipe.py), once over
the model's whole sub-range (int8_recipe.py's fourth-cycle row) and once over the top half of it
only (shot levels from the range's geometric middle up; the same float model and anchor): the
int8 network a model of half the range would get, at equal training. Both split as the recipe
splits them, both measured on the top half's levels against the float model: held-out crops
(int8_recipe.py's set) and fad-export's validation patches.

    python benchmarks/int8_narrow_range.py [--model fan-nsma-2] [--threads 2]

Writes benchmarks/results/int8_narrow_range.{md,json}. The half-range QAT is kept under
$FAD_CACHE/int8_narrow_range/ (a rerun measures it again without training).
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import math
import time
from pathlib import Path

import torch

from fad_deploy.data.photos import default_cache_dir
from fad_deploy.data.synth import folder_images, validation_set
from fad_deploy.export.validate import denoised, psnr_by_shot
from fad_deploy.fileio import write_json, write_text
from fad_deploy.models.registry import load_checkpoint, models_dir
from fad_deploy.profile.side_by_side import cpu_record
from fad_deploy.profile.table import markdown_table
from fad_deploy.quant.qat import QATState, quantization_aware_training, split_input
from fad_deploy.runners.torch_runner import TorchRunner
from int8_recipe import FOURTH_CYCLE, THIRD_CYCLE, evaluation_set, made_or_split, shipped_int8
from int8_split_input import drops  # (each set's mean and per-level drop of an int8 checkpoint)

RESULTS = Path(__file__).parent / "results"
KEPT = default_cache_dir() / "int8_narrow_range"
RECIPE = FOURTH_CYCLE  # a fourth cycle, from the third (int8_recipe.py's rows; one int8 input)
SPLIT = dataclasses.replace(RECIPE, input_split=8)  # ... split after it, as the recipe splits


def top_half(ckpt):
    """``ckpt`` (a float sub-range model) over the top half of its shot range (in log a), its
    anchor kept."""
    lo, hi = ckpt.shot_range
    return dataclasses.replace(ckpt, shot_range=(math.sqrt(lo * hi), hi), anchor_shot=ckpt.anchor.shot)


def half_range_qat(half, start) -> tuple:
    """The fourth cycle over ``half``'s range from ``start`` (kept, with its QAT seconds, and
    resumed under KEPT), split as the recipe splits; and its QAT seconds."""
    path = KEPT / f"{half.name}.int8.pt"
    if not path.is_file():
        KEPT.mkdir(parents=True, exist_ok=True)
        state, began = QATState(path.with_suffix(".qat-state.pt")), time.time()
        quantization_aware_training(half, RECIPE, state=state, start=start).save(path)
        write_json(path.with_suffix(".json"), {"qat_s": round(state.earlier_s + time.time() - began, 1)})
    return split_input(load_checkpoint(path), SPLIT), json.loads(path.with_suffix(".json").read_text())["qat_s"]


def markdown(result: dict, args) -> str:
    rows = []
    for label, row in result["rows"].items():
        for name in ("held-out", "gate"):
            d = row[name]
            rows.append([label, name, f"{d['drop_db']:+.3f}", *(f"{v:+.3f}" for v in d["drop_by_shot"].values())])
    shots = list(next(iter(result["rows"].values()))["held-out"]["drop_by_shot"])
    return "\n".join([
        "# int8 at half the noise sub-range", "",
        f"`python benchmarks/int8_narrow_range.py --model {args.model}` on {result['cpu']['model']} "
        f"({args.threads} threads). {result['model']} spans a in [{', '.join(result['range'])}]; its top half "
        f"is [{', '.join(result['half_range'])}]. Both rows: one more warm-restart QAT cycle of "
        f"{RECIPE.continue_steps} steps "
        f"(lr {RECIPE.continue_lr:g}, ranges learned again) from the recipe's third cycle, over the whole sub-range "
        "(int8_recipe.py's fourth-cycle row) or over its top half only, then the input split as the recipe "
        "splits it (k = 8, the grid widened to the cycle's own inputs). Drop: RAW PSNR of the float model minus "
        f"the int8 network's, at the top half's levels: {result['held_out']} (held-out), and fad-export's "
        f"validation patches (gate). Half-range QAT: {result['half_qat_s']:.0f} s.", "",
        markdown_table(["QAT cycle over", "set", "mean drop dB", *(f"a={s}" for s in shots)], rows), ""])


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="fan-nsma-2", help="shipped sub-range model")
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    ckpt = load_checkpoint(models_dir() / "nsma" / f"{args.model}.pt")
    half = top_half(ckpt)
    start = shipped_int8(ckpt, THIRD_CYCLE)[0]
    whole = made_or_split(ckpt, SPLIT)[0]
    if start is None or whole is None:
        raise SystemExit(f"int8_narrow_range: run int8_recipe.py's third- and fourth-cycle rows for {ckpt.name} first")
    q_half, qat_s = half_range_qat(half, start)
    images = list(folder_images(default_cache_dir() / "photos" / "test", 1, None))
    float_runner = TorchRunner(ckpt)
    sets = {}
    for name, pairs in (("held-out", evaluation_set(images, half.shot_range)),
                        ("gate", validation_set(half.shot_range)[0])):
        sets[name] = (pairs, psnr_by_shot(denoised(float_runner, pairs), pairs))
    lo, hi = half.shot_range
    result = {"cpu": cpu_record(), "model": ckpt.name, "range": [f"{v:.3g}" for v in ckpt.shot_range],
              "half_range": [f"{lo:.3g}", f"{hi:.3g}"], "half_qat_s": qat_s,
              "held_out": f"{len(images)} test photos, 3 crops of 128x128 packed each, seed 7",
              "rows": {"the whole sub-range": drops(whole, sets), "its top half only": drops(q_half, sets)}}
    write_json(RESULTS / "int8_narrow_range.json", result)
    write_text(RESULTS / "int8_narrow_range.md", markdown(result, args))
    print(markdown(result, args))


if __name__ == "__main__":
    main()
