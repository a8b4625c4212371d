"""Does QAT run faster in channels-last (NHWC) memory? Every convolution of a shipped FAN at
a QAT step's shapes (the recipe's batch of 64x64 packed crops), forward + backward, timed in
PyTorch's default NCHW layout and in channels-last, one thread: oneDNN picks other kernels
for the two layouts. Then whole QAT runs of the recipe in each layout
(`fad_deploy.quant.qat.MEMORY_FORMAT`), rounds interleaved, one thread: the fake quantizers
and the other ops of a step count there too.

    python benchmarks/conv_layout.py [--model fan-nsma-3] [--repeats 20] [--qat-steps 150] [--rounds 2]

Writes benchmarks/results/conv_layout.{md,json}. Run it alone on the machine.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import torch
from torch import nn

import fad_deploy.quant.qat as qat
from fad_deploy.fileio import write_json, write_text
from fad_deploy.models.registry import load_checkpoint, models_dir
from fad_deploy.profile.side_by_side import cpu_record, simd_flags
from fad_deploy.quant.recipe import QATConfig

sys.path.insert(0, str(Path(__file__).parent))
from qat_jobs import one_qat  # noqa: E402

RESULTS = Path(__file__).parent / "results"
LAYOUTS = {"NCHW": torch.contiguous_format, "channels-last": torch.channels_last}


def conv_inputs(net: nn.Module, batch: int, crop: int) -> list[tuple[nn.Conv2d, tuple[int, ...]]]:
    """Each conv of ``net`` with the input shape it sees on a (batch, 4, crop, crop) input."""
    seen = []
    hooks = [m.register_forward_hook(lambda m, i, o: seen.append((m, tuple(i[0].shape))))
             for m in net.modules() if isinstance(m, nn.Conv2d)]
    with torch.no_grad():
        net(torch.zeros(batch, 4, crop, crop))
    for h in hooks:
        h.remove()
    return seen


def time_ms(conv: nn.Conv2d, shape: tuple[int, ...], layout, repeats: int) -> float:
    """Best of 3 means of ``repeats`` forward + backward passes (input and weight gradients)."""
    conv = conv.to(memory_format=layout).requires_grad_(True)
    x = torch.randn(shape).contiguous(memory_format=layout).requires_grad_(True)
    best = float("inf")
    for _ in range(3):
        start = time.perf_counter()
        for _ in range(repeats):
            x.grad = None
            conv.zero_grad(set_to_none=True)
            conv(x).sum().backward()
        best = min(best, (time.perf_counter() - start) / repeats * 1e3)
    return best


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="fan-nsma-3", help="a shipped sub-range model (default fan-nsma-3)")
    p.add_argument("--repeats", type=int, default=20, help="passes per timing (default 20)")
    p.add_argument("--qat-steps", type=int, default=150, help="steps of each whole QAT run (default 150)")
    p.add_argument("--rounds", type=int, default=2, help="QAT runs per layout, interleaved (default 2)")
    args = p.parse_args(argv)
    if min(args.repeats, args.qat_steps, args.rounds) < 1:
        p.error("--repeats, --qat-steps and --rounds must be at least 1")
    torch.set_num_threads(1)
    torch.manual_seed(0)
    recipe = QATConfig()
    net = load_checkpoint(models_dir() / "nsma" / f"{args.model}.pt").build().train()
    rows = []
    for conv, shape in conv_inputs(net, recipe.batch, recipe.crop):
        kind = f"{conv.kernel_size[0]}x{conv.kernel_size[1]}" + (f" g{conv.groups}" if conv.groups > 1 else "")
        rows.append({"conv": kind, "in": list(shape), "out_channels": conv.out_channels,
                     "ms": {name: time_ms(conv, shape, layout, args.repeats) for name, layout in LAYOUTS.items()}})
    steps_s = {name: [] for name in LAYOUTS}
    for _ in range(args.rounds):
        for name, layout in LAYOUTS.items():
            qat.MEMORY_FORMAT = layout
            steps_s[name].append(one_qat(args.model, args.qat_steps, 1))
    cpu, load = cpu_record(), os.getloadavg()[0]
    totals = {name: sum(r["ms"][name] for r in rows) for name in LAYOUTS}
    mean = {name: sum(v) / len(v) for name, v in steps_s.items()}
    result = {"cpu": cpu, "torch": torch.__version__, "model": args.model, "repeats": args.repeats,
              "qat_steps": args.qat_steps, "load_average_1min": load, "convs": rows, "total_ms": totals,
              "qat_steps_per_s": steps_s}
    lines = ["# QAT in NCHW or channels-last memory (1 thread)", "",
             f"`python benchmarks/conv_layout.py --model {args.model} --repeats {args.repeats} --qat-steps "
             f"{args.qat_steps} --rounds {args.rounds}` on {cpu['model']}, "
             f"flags: {simd_flags(cpu)}; 1-minute load average {load:.2f} (other jobs slow both columns alike; "
             f"compare within a row). Every conv of {args.model} at batch {recipe.batch} of {recipe.crop}x"
             f"{recipe.crop} crops; best of 3 means.", "",
             f"All {len(rows)} convs: NCHW {totals['NCHW']:.1f} ms, channels-last {totals['channels-last']:.1f} ms "
             f"({totals['NCHW'] / totals['channels-last']:.2f}x).", "",
             f"Whole QAT runs of the recipe ({args.qat_steps} steps, rounds interleaved), steps/s: " +
             "; ".join(f"{name} " + ", ".join(f"{v:.2f}" for v in steps_s[name]) for name in LAYOUTS) +
             f" (channels-last {mean['channels-last'] / mean['NCHW']:.2f}x).", "",
             "| conv | input | out channels | NCHW ms | channels-last ms | speed-up |",
             "| --- | --- | ---: | ---: | ---: | ---: |"]
    for r in sorted(rows, key=lambda r: -r["ms"]["NCHW"]):
        a, b = r["ms"]["NCHW"], r["ms"]["channels-last"]
        lines.append(f"| {r['conv']} | {'x'.join(map(str, r['in']))} | {r['out_channels']} | {a:.2f} | {b:.2f} | "
                     f"{a / b:.2f}x |")
    RESULTS.mkdir(exist_ok=True)
    write_json(RESULTS / "conv_layout.json", result)
    write_text(RESULTS / "conv_layout.md", "\n".join(lines) + "\n")
    print("\n".join(lines[:6]))


if __name__ == "__main__":
    main()
