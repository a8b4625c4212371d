"""One network's full profile: MACs per layer, activation memory, accelerator fit, roofline
and exact tiling, as markdown plus a JSON dict (for `fad-bench --report` and benchmarks/)."""
from __future__ import annotations

import math
from dataclasses import asdict

import torch.nn as nn

from ..errors import FadError
from ..runners.tiling import tile_spec
from .accelerator import PRESETS, AcceleratorTarget, accelerator_report
from .graph import DEFAULT_INPUT_SIZE, trace
from .macs import count_macs
from .memory import BYTES, profile_memory
from .table import markdown_table
from .tiling import largest_tile

FRAME_12MP = (1500, 2000)  # packed h, w of a 3000x4000 (12 MP) Bayer frame


def profile_model(name: str, model: nn.Module, input_size: tuple[int, int] = DEFAULT_INPUT_SIZE,
                  targets: list[AcceleratorTarget] | None = None, cpu_model=None,
                  written_width: int = 0) -> tuple[str, dict]:
    """``cpu_model`` (a :class:`fad_deploy.profile.cpu_model.CpuCostModel`) adds the calibrated
    per-layer CPU latency: which layers cost the most time, not the most MACs, with the grouped
    convs as an export with ``--group-width written_width`` writes them."""
    targets = list(PRESETS.values()) if targets is None else targets
    graph = trace(model, input_size)
    macs = count_macs(graph)
    memory = {k: profile_memory(graph, bytes_per_element=b) for k, b in BYTES.items()}
    try:
        spec, untileable = tile_spec(model), None
    except FadError as e:  # global pooling: profiled all the same, without the tiling
        spec, untileable = None, str(e)
    rows, fits = [], []
    for target in targets:
        report = accelerator_report(graph, target)
        fit = {"error": untileable} if spec is None else _tiling(model, target, spec)
        fits.append({"target": target.name, "report": report.to_dict(), "tiling_12mp": fit})
        tile_text = (f"{fit['tile']} px tiles ({fit['tiles']} for 12 MP), {fit['frame_ms']:.1f} ms" if "tile" in fit
                     else fit["error"])
        rows.append([target.name, f"{report.weight_bytes:,}", "yes" if report.weights_fit else "no",
                     f"{report.arena_bytes:,}", "yes" if report.activations_fit else "no",
                     f"{report.seconds * 1e3:.2f}", tile_text])
    shape = "x".join(map(str, graph.input_shape))
    if cpu_model is not None:
        from .cpu_model import layer_report

        cpu_text, cpu_doc = layer_report(cpu_model, graph, written_width=written_width)
    md = "\n\n".join([
        f"# Profile of {name} at input {shape}",
        f"MACs: {macs.summary()}",
        "MACs by op kind (G): " + ", ".join(f"{k} {v / 1e9:.4f}" for k, v in macs.macs_by_kind().items()),
        f"Activation memory fp32: {memory['fp32'].summary()}",
        f"Activation memory int8: {memory['int8'].summary()}",
        f"Exact tiling: receptive-field margin {spec.margin} px, tiles aligned to {spec.align} px" if spec
        else f"Exact tiling: none ({untileable})",
        "## Accelerator targets (int8)\n\n" + markdown_table(
            ["target", "weights B", "fit", f"arena B at {shape}", "fit", f"roofline ms at {shape}",
             "largest SRAM tile, 12 MP frame roofline"], rows),
        "\n".join(f"- {t.name}: {t.basis}" for t in targets),
        *([] if cpu_model is None else [
            f"## CPU latency per layer (TFLite XNNPACK, calibrated on {cpu_model.cpu} by "
            "benchmarks/cpu_calibration.py: per op kind, fixed cost + time per MAC + time per byte; grouped convs "
            + (f"written in groups of at least {written_width} channels, as fad-export --group-width {written_width} "
               "does" if written_width else "as the network has them")
            + "; sibling convs merged and narrow convs on 2x2 blocks, as fad-export writes them)\n\n"
            + cpu_text]),
        "## Per-layer MACs\n\n" + macs.table(),
        "## Live int8 activation bytes per op (execution order)\n\n" + memory["int8"].timeline_table(),
    ]) + "\n"
    doc = {"name": name, "macs": macs.to_dict(), "memory": {k: m.to_dict() for k, m in memory.items()},
           "tiling": asdict(spec) if spec else {"error": untileable}, "accelerators": fits}
    if cpu_model is not None:
        doc["cpu_latency"] = {"calibrated_on": cpu_model.cpu, **cpu_doc}
    return md, doc


def _tiling(model: nn.Module, target: AcceleratorTarget, spec) -> dict:
    """Largest SRAM tile and the roofline time of a 12 MP frame tiled with it."""
    try:
        fit = largest_tile(model, target, spec)
    except FadError as e:
        return {"error": str(e)}
    tiles = math.ceil(FRAME_12MP[0] / fit.core) * math.ceil(FRAME_12MP[1] / fit.core)
    per_tile = accelerator_report(model, target, (fit.tile, fit.tile)).seconds
    return {"tile": fit.tile, "core": fit.core, "arena_bytes": fit.arena_bytes, "tiles": tiles,
            "overhead": round(fit.overhead, 3), "frame_ms": per_tile * tiles * 1e3}
