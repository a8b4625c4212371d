"""Where the int8 PSNR drop of a quantized checkpoint comes from: the drop with every
fake quantizer on, then with only one group on (the weights; the activations; the network
input; its output), and the gain from turning off each activation quantizer alone (what the
op producing that tensor costs), on the same seeded validation patches fad-export validates
with, or (--held-out) on int8_recipe.py's crops of the test photos, never used in training.

    python benchmarks/int8_sensitivity.py models/nsma/fan-nsma-3.int8.pt [--top 15] [--float models/nsma/fan-nsma-3.pt] [--held-out]

With --float (the checkpoint QAT started from) it also says how far QAT moved the float
weights themselves: the drop splits into that drift plus what 8 bits cost the new weights.
Every figure is also given per noise level.

An activation left in float keeps what the network was trained on: its int8 range's
clipping (values beyond it stay at its ends, as in int8) and, for the input, its input map
(the square root of a sqrt-input checkpoint); only the rounding goes (what a finer grid over
the same range, 16-bit activations, would give back), and the residual is added to the
input itself. The fp32 figure turns every quantizer off in that sense: the QAT's float
weights with their activations clipped to the learned ranges.

Writes benchmarks/results/int8_sensitivity_<model>[_held-out].md and .json.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import torch
import torch.fx as fx
from torch.ao.quantization import FakeQuantize
from tqdm import tqdm

from fad_deploy.data.photos import default_cache_dir
from fad_deploy.data.synth import folder_images, validation_set
from fad_deploy.export.validate import denoised, psnr_by_shot
from fad_deploy.fileio import write_json, write_text
from fad_deploy.models.registry import load_checkpoint
from fad_deploy.profile.table import markdown_table
from fad_deploy.quant.qat import FakeQuantRunner, grid, io_quantizers
from fad_deploy.runners.base import int8_input
from fad_deploy.runners.torch_runner import TorchRunner

RESULTS = Path(__file__).resolve().parents[1] / "benchmarks" / "results"
PSNR_ROWS = {"start_fp32_db": "RAW PSNR, the float model QAT started from",
             "fp32_db": "RAW PSNR, the QAT's float weights (clipped)", "int8_db": "RAW PSNR, fake-quant int8"}


def producers(model: torch.nn.Module) -> dict[str, str]:
    """Activation quantizer name -> the op whose output it quantizes."""
    out = {}
    for prefix, gm in model.named_modules():
        if not isinstance(gm, fx.GraphModule):
            continue
        for node in gm.graph.nodes:
            if node.op == "call_module" and "activation_post_process" in str(node.target):
                src = node.args[0]
                what = getattr(src.target, "__name__", str(src.target))
                out[f"{prefix}.{node.target}" if prefix else str(node.target)] = f"{src.op} {what}"
    return out


def clip_only(q: FakeQuantize) -> None:
    """An activation quantizer's rounding off, its range kept: values beyond it still clip, as in int8."""
    g = grid(q)
    q.forward = lambda x: x.clamp(g["min"], g["max"])


def quantize(q: FakeQuantize) -> None:
    """A quantizer back to fake quantization (undoes :func:`clip_only`)."""
    q.__dict__.pop("forward", None)
    q.enable_fake_quant()


class RoundedInput(FakeQuantRunner):
    """The fake-quant network whose residual goes onto u itself when ``rounded`` is off (the
    input quantizer then only clips: :func:`clip_only`), as onto the rounded input when on."""

    rounded = True

    def run(self, u):
        if self.rounded:
            return super().run(u)
        y = self.run_network(int8_input(u, self.base_grid))
        return y + u if self.residual else y


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("checkpoint", help="quantized checkpoint (<model>.int8.pt from fad-export)")
    p.add_argument("--top", type=int, default=15, help="activation quantizers to list")
    p.add_argument("--float", dest="source", help="the float checkpoint QAT started from")
    p.add_argument("--held-out", action="store_true", help="measure on int8_recipe.py's crops of the test photos")
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    ckpt = load_checkpoint(args.checkpoint)
    if args.held_out:
        from int8_recipe import EVAL_CROP, EVAL_CROPS, EVAL_SEED, evaluation_set

        test = default_cache_dir() / "photos" / "test"
        images = list(folder_images(test, 1, None))
        pairs = evaluation_set(images, ckpt.shot_range)
        description = (f"{len(images)} fetched test photos (never used in training), {EVAL_CROPS} crops of "
                       f"{EVAL_CROP}x{EVAL_CROP} packed each, seed {EVAL_SEED}, 4 shot levels inside {ckpt.shot_range}")
    else:
        pairs, description = validation_set(ckpt.shot_range)
    runner = RoundedInput(ckpt)
    quantizers = {n: m for n, m in runner.model.named_modules() if isinstance(m, FakeQuantize)}
    weights = {n for n in quantizers if n.endswith("weight_fake_quant")}
    activations = set(quantizers) - weights
    fq_in, fq_out = io_quantizers(runner.model.core)
    by_module = {id(q): n for n, q in quantizers.items()}
    groups = {"weights": weights, "activations": activations, "input": {by_module[id(fq_in)]},
              "output": {by_module[id(fq_out)]},
              "inner activations (all but the input)": activations - {by_module[id(fq_in)]}}
    key = {group: f"drop_{group.split(' (')[0].replace(' ', '_')}_only_db" for group in groups}

    def psnr_without(off: set[str]) -> tuple[float, dict[str, float]]:
        for name, q in quantizers.items():
            quantize(q)
            if name in off:
                q.disable_fake_quant() if name in weights else clip_only(q)
        runner.rounded = by_module[id(fq_in)] not in off
        return psnr_by_shot(denoised(runner, pairs), pairs)

    fp32, fp32_levels = psnr_without(set(quantizers))
    start, start_levels = (psnr_by_shot(denoised(TorchRunner(load_checkpoint(args.source)), pairs), pairs)
                           if args.source else (None, {}))
    int8, int8_levels = psnr_without(set())
    only = {group: psnr_without(set(quantizers) - names) for group, names in groups.items()}
    summary = {"fp32_db": fp32, "int8_db": int8, "drop_db": fp32 - int8, "start_fp32_db": start,
               **{key[group]: fp32 - only[group][0] for group in groups}}
    per_level = {"fp32_db": fp32_levels, "int8_db": int8_levels, "start_fp32_db": start_levels,
                 **{key[group]: {lv: fp32_levels[lv] - db for lv, db in only[group][1].items()} for group in groups}}
    level_rows = {**PSNR_ROWS, **{key[group]: f"drop, only the {group.split(' (')[0]} quantized" for group in groups}}
    source = producers(runner.model)
    gains = [{"quantizer": n, "output of": source.get(n, "?"), "gain_db": psnr_without({n})[0] - int8}
             for n in tqdm(sorted(activations), desc="activation quantizers")]
    gains.sort(key=lambda r: -r["gain_db"])
    name = ckpt.name + ("_held-out" if args.held_out else "")
    write_json(RESULTS / f"int8_sensitivity_{name}.json",
               {"checkpoint": args.checkpoint, "validation": description, **summary, "per_level": per_level,
                "activations": gains})
    rows = [[r["quantizer"], r["output of"], f"{r['gain_db']:+.3f}"] for r in gains[:args.top]]
    write_text(RESULTS / f"int8_sensitivity_{name}.md", "\n".join([
        f"# Where the int8 drop of {name} comes from", "",
        f"Checkpoint {args.checkpoint}; validation: {description}. Made by `python "
        f"benchmarks/int8_sensitivity.py {args.checkpoint}" + (f" --float {args.source}" if args.source else "")
        + (" --held-out" if args.held_out else "") + "`.", "",
        f"- RAW PSNR fp32 {fp32:.3f} dB (the QAT's float weights, activations clipped to their ranges but not "
        f"rounded), fake-quant int8 {int8:.3f} dB: drop "
        f"{summary['drop_db']:.3f} dB",
        *([f"- the float model QAT started from ({args.source}): {start:.3f} dB, so QAT moved the float "
           f"weights by {fp32 - start:+.3f} dB and the int8 network is {int8 - start:+.3f} dB from it"]
          if start is not None else []),
        *(f"- drop with only the {group} quantized: {summary[key[group]]:.3f} dB" for group in groups),
        f"- {len(activations)} activation quantizers; the sum of their single gains is "
        f"{sum(r['gain_db'] for r in gains):.3f} dB", "",
        "Per noise level (dB):", "",
        markdown_table(["", *(f"a={lv}" for lv in fp32_levels)],
                       [[label, *(f"{v:.3f}" for v in per_level[k].values())] for k, label in level_rows.items()
                        if per_level[k]]), "",
        f"Gain from leaving one activation unrounded (its range kept; top {args.top}):", "",
        markdown_table(["quantizer", "output of", "gain dB"], rows), ""]))
    print(f"wrote {RESULTS / f'int8_sensitivity_{name}.md'}")


if __name__ == "__main__":
    main()
