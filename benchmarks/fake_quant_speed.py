"""What one learned activation quantizer costs in a QAT step on this CPU: forward + backward
of a per-tensor int8 fake quantizer with a trainable scale, at the shapes a FAN QAT step
feeds it (batch 4 of 64x64 packed crops), one thread. Compared, on the same tensors:

- the LSQ expression left to autograd (a straight-through round; what QAT ran before
  `fad_deploy.quant.learned.GridRound`);
- PyTorch's own learnable fake-quant kernel (`torch._fake_quantize_learnable_per_tensor_affine`);
- `GridRound`, learning the scale, and with the scale frozen (the last quarter of QAT);
- PyTorch's fixed-scale fake quant (what the frozen quarter ran before).

    python benchmarks/fake_quant_speed.py [--repeats 30]

Writes benchmarks/results/fake_quant_speed.{md,json}.
"""
from __future__ import annotations

import argparse
import os
import platform
import time
from pathlib import Path

import torch

from fad_deploy.fileio import write_json, write_text
from fad_deploy.profile.side_by_side import cpu_record, simd_flags
from fad_deploy.quant.learned import GridRound

RESULTS = Path(__file__).parent / "results"
SHAPES = [(4, 16, 64, 64), (4, 32, 64, 64), (4, 64, 32, 32), (4, 128, 16, 16)]
QMIN, QMAX, ZERO_POINT, SCALE = -128, 127, 3, 0.02


def autograd_lsq(x, log_s):
    s = log_s.exp()
    r = x / s
    r = r + (torch.round(r) - r).detach()
    return (torch.clamp(r + ZERO_POINT, QMIN, QMAX) - ZERO_POINT) * s


def torch_learnable(x, log_s):
    zero_point = torch.tensor([float(ZERO_POINT)])
    return torch._fake_quantize_learnable_per_tensor_affine(x, log_s.exp().reshape(1), zero_point, QMIN, QMAX, 1.0)


def grid_round(x, log_s):
    return GridRound.apply(x, log_s.exp(), QMIN - ZERO_POINT, QMAX - ZERO_POINT)


def grid_round_frozen(x, log_s):
    return GridRound.apply(x, log_s.detach().exp(), QMIN - ZERO_POINT, QMAX - ZERO_POINT)


def torch_fixed(x, log_s):
    return torch.fake_quantize_per_tensor_affine(x, float(log_s.detach().exp()), ZERO_POINT, QMIN, QMAX)


METHODS = {"LSQ through autograd (before)": autograd_lsq, "PyTorch's learnable kernel": torch_learnable,
           "GridRound, learning the scale": grid_round, "GridRound, scale frozen": grid_round_frozen,
           "PyTorch's fixed-scale kernel (frozen quarter before)": torch_fixed}


def time_ms(fn, x0: torch.Tensor, repeats: int) -> float:
    """Best of 3 means of ``repeats`` forward + backward passes (the output's gradient: x0)."""
    x = x0.clone().requires_grad_(True)
    log_s = torch.tensor(SCALE).log().requires_grad_(True)
    best = float("inf")
    for _ in range(3):
        start = time.perf_counter()
        for _ in range(repeats):
            x.grad = log_s.grad = None
            fn(x, log_s).backward(x0)
        best = min(best, (time.perf_counter() - start) / repeats * 1e3)
    return best


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeats", type=int, default=30, help="passes per timing (default 30)")
    args = p.parse_args(argv)
    if args.repeats < 1:
        p.error("--repeats must be at least 1")
    torch.set_num_threads(1)
    torch.manual_seed(0)
    cpu = cpu_record()
    rows = {}
    for shape in SHAPES:
        x0 = torch.randn(shape) * 0.5
        rows["x".join(map(str, shape))] = {name: time_ms(fn, x0, args.repeats) for name, fn in METHODS.items()}
    load = os.getloadavg()[0]
    result = {"cpu": cpu, "python": platform.python_version(), "torch": torch.__version__, "repeats": args.repeats,
              "load_average_1min": load, "ms": rows}
    before = "LSQ through autograd (before)"
    lines = ["# One learned activation quantizer: forward + backward, ms (1 thread)", "",
             f"`python benchmarks/fake_quant_speed.py --repeats {args.repeats}` on {cpu['model']}, flags: "
             f"{simd_flags(cpu)}; 1-minute load average {load:.2f} (other jobs on the cores slow every "
             "column alike; compare within a row). Best of 3 means; speed-up against the autograd expression in "
             "brackets.", "",
             "| tensor | " + " | ".join(METHODS) + " |", "| --- |" + " ---: |" * len(METHODS)]
    for shape, ms in rows.items():
        lines.append(f"| {shape} | " + " | ".join(f"{v:.2f} ({ms[before] / v:.1f}x)" for v in ms.values()) + " |")
    RESULTS.mkdir(exist_ok=True)
    write_json(RESULTS / "fake_quant_speed.json", result)
    write_text(RESULTS / "fake_quant_speed.md", "\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
