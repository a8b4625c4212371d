"""Averaged QAT cycles: each sub-range model's int8 checkpoints from consecutive warm-restart
cycles of one QAT run (int8_recipe.py's variants, e.g. its third and fourth cycles), their
weights and quantization ranges averaged into one int8 checkpoint, nothing retrained, and
measured as int8_recipe.py measures a row (held-out crops, fad-export's validation patches),
each input split as the recipe splits it.

Warm restarts end each cycle at a low learning rate in a nearby minimum; averaging such
snapshots (as stochastic weight averaging does for float networks) can land nearer the
centre of the basin. Whether it survives 8-bit rounding is what this measures.

    python benchmarks/int8_average.py --models fan-nsma-0 --variants NAME NAME [...]

Writes benchmarks/results/int8_average.{md,json} (models run later are added to it).
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import shlex
import sys
from pathlib import Path

import torch

from fad_deploy.data.photos import default_cache_dir
from fad_deploy.data.synth import folder_images, validation_set
from fad_deploy.export.validate import denoised, psnr_by_shot
from fad_deploy.fileio import write_json, write_text
from fad_deploy.models.registry import Checkpoint, load_checkpoint
from fad_deploy.profile.cpu import cpu_peak
from fad_deploy.profile.table import markdown_table
from fad_deploy.quant.qat import split_input
from fad_deploy.runners.torch_runner import TorchRunner
from int8_recipe import ARRAY, RESULTS, VARIANTS, drops, evaluation_set, shipped_int8, with_split  # (this folder's)


def averaged(qs: list[Checkpoint]) -> Checkpoint:
    """One int8 checkpoint from several of the same network and QAT: the float weights' mean,
    each quantizer's scales their geometric mean and its zero points their rounded mean."""
    first = qs[0].extra["quantization"]
    state = {k: (torch.stack([q.state_dict[k] for q in qs]).mean(0) if v.is_floating_point() else v)
             for k, v in qs[0].state_dict.items()}
    fake_quant = {}
    for name, s in first["fake_quant"].items():
        stored = [q.extra["quantization"]["fake_quant"][name] for q in qs]
        scales = torch.tensor([t["scale"] for t in stored], dtype=torch.float64)
        zeros = torch.tensor([t["zero_point"] for t in stored], dtype=torch.float64)
        fake_quant[name] = {**s, "scale": scales.log().mean(0).exp().tolist(),
                            "zero_point": zeros.mean(0).round().long().tolist()}
    card = {**qs[0].card, "quantization": {**qs[0].card["quantization"], "averaged": len(qs)}}
    return dataclasses.replace(qs[0], state_dict=state, card=card,
                               extra={**qs[0].extra, "quantization": {**first, "fake_quant": fake_quant}})


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--models", nargs="+", required=True)
    p.add_argument("--variants", nargs="+", required=True, choices=[v for v, c in VARIANTS.items()
                                                                    if c.continue_steps and not c.input_split],
                   metavar="NAME", help="int8_recipe.py's later-cycle variants (one int8 input) to average, "
                                        "consecutive cycles of one run, the last one's split")
    p.add_argument("--array", type=Path, default=ARRAY)
    p.add_argument("--results", type=Path, default=RESULTS)
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args(argv)
    if len(args.variants) < 2:
        p.error("--variants: give at least two to average")
    torch.set_num_threads(args.threads)
    images = list(folder_images(default_cache_dir() / "photos" / "test", 1, None))
    path = args.results / "int8_average.json"
    result = json.loads(path.read_text()) if path.is_file() else {"models": {}}
    result.update(cpu=cpu_peak().label, threads=args.threads)
    split = with_split(VARIANTS[args.variants[-1]])
    for name in args.models:
        ckpt = load_checkpoint(args.array / f"{name}.pt")
        qs = [shipped_int8(ckpt, VARIANTS[v], (args.array,))[0] for v in args.variants]
        if any(q is None for q in qs):
            sys.exit(f"int8_average: {name}: no int8 checkpoint of "
                     + ", ".join(v for v, q in zip(args.variants, qs) if q is None))
        sets = {}
        for label, pairs in (("held-out", evaluation_set(images, ckpt.shot_range)),
                             ("gate", validation_set(ckpt.shot_range)[0])):
            sets[label] = (pairs, psnr_by_shot(denoised(TorchRunner(ckpt), pairs), pairs))
        rows = []
        for label, q in [*zip(args.variants, qs), ("the average of these", averaged(qs))]:
            q = split_input(q, split)
            (drop, by_shot), (gate, gate_by_shot) = (drops(q, split, *sets[s]) for s in ("held-out", "gate"))
            rows.append({"checkpoint": label, "drop_db": drop, "drop_by_shot": by_shot, "gate_drop_db": gate,
                         "gate_drop_by_shot": gate_by_shot})
            print(f"{name} {label}: held-out {drop:+.3f} dB, gate {gate:+.3f} dB", flush=True)
        result["models"][name] = {"variants": args.variants, "rows": rows,
                                  "command": shlex.join(["python", "benchmarks/int8_average.py", "--models", name,
                                                         "--variants", *args.variants])}
        write_json(path, result)
        write_text(path.with_suffix(".md"), markdown(result))
    print(f"wrote {path.with_suffix('.md')}")
    return result


def markdown(result: dict) -> str:
    intro = " ".join(__doc__.split("\n\n")[0].split())
    lines = ["# Averaged QAT cycles", "",
             f"{intro} Drop = RAW PSNR of the float model minus that of the fake-quant int8 network (dB; the int8 "
             "TFLite matches it: parity >= 45 dB in fad-export's validation), on int8_recipe.py's held-out crops and "
             f"on fad-export's validation patches (mean / worst level). CPU: {result['cpu']}, {result['threads']} "
             "threads.", ""]
    for name, model in result["models"].items():
        shots = list(model["rows"][0]["drop_by_shot"])
        *parts, average = model["rows"]
        best = min(parts, key=lambda r: r["drop_db"])
        lines += [f"## {name}", "", f"`{model['command']}`", "",
                  markdown_table(["checkpoint", "held-out drop dB", *(f"a={s}" for s in shots),
                                  "fad-export's patches: mean / worst level dB"],
                                 [[r["checkpoint"], f"{r['drop_db']:+.3f}",
                                   *(f"{r['drop_by_shot'][s]:+.3f}" for s in shots),
                                   f"{r['gate_drop_db']:+.3f} / {max(r['gate_drop_by_shot'].values()):+.3f}"]
                                  for r in model["rows"]]), "",
                  f"The average against the better of its parts on the held-out crops: "
                  f"{average['drop_db'] - best['drop_db']:+.3f} dB.", ""]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
