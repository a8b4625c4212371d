"""The README's main command, measured: runs `fad-export --int8 --target tflite [ARGS]` (no
MODEL: the noise sub-range array when models/nsma/ holds it, else fan-student), times it,
and records its exit status, files and sizes and the validation verdict per model.

    python benchmarks/export_default.py [--tag TAG] [-- extra fad-export args, e.g. --threads 1]

Writes benchmarks/results/export_default[-TAG].{md,json} (the export folder's own report.md
is copied in full below the summary).
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from fad_deploy.export.manifest import MANIFEST
from fad_deploy.fileio import write_json, write_text

sys.path.insert(0, str(Path(__file__).parent))
from ship_int8 import MADE  # noqa: E402  (fad-export's "(int8 made in N s)" summary line)

RESULTS = Path(__file__).parent / "results"
COMMAND = ["fad-export", "--int8", "--target", "tflite"]
OUT_LINE = "exported to "


QUANTIZED = ("tflite-int8", "tflite-int16")  # the quantized TFLite of a bundle (--activations)


def max_level_drop(rows: dict, backend: str) -> float | None:
    """The quantized TFLite's largest drop at one noise level against PyTorch fp32."""
    if backend not in rows:
        return None
    base, quantized = rows["torch"]["psnr_by_shot"], rows[backend]["psnr_by_shot"]
    return max(base[s] - quantized[s] for s in base)


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     usage="%(prog)s [--tag TAG] [-- FAD_EXPORT_ARGS...]")
    parser.add_argument("--tag", help="results go to export_default-TAG.{md,json}")
    parser.add_argument("extra", nargs="*", metavar="FAD_EXPORT_ARGS",
                        help="after --: more fad-export arguments (e.g. -- --threads 1)")
    return parser.parse_args(argv)


def main(argv=None) -> dict:
    args = parse_args(argv)
    name = "export_default" + (f"-{args.tag}" if args.tag else "")
    command = COMMAND + args.extra
    start = time.time()
    proc = subprocess.run(command, capture_output=True, text=True)
    wall = time.time() - start
    out = next((line[len(OUT_LINE):].rstrip(":") for line in proc.stdout.splitlines() if line.startswith(OUT_LINE)),
               None)
    made = {m.group(1): float(m.group(2)) for m in map(MADE.match, proc.stdout.splitlines()) if m}
    doc = {"command": " ".join(command), "exit_status": proc.returncode, "wall_s": round(wall, 1),
           "qat_s": made, "stderr_tail": proc.stderr.strip().splitlines()[-3:], "out": out}
    lines = ["# `" + doc["command"] + "`", "",
             f"Exit status {proc.returncode}, wall time {wall / 60:.1f} min on {os.cpu_count()} CPU core(s); "
             f"1-minute load average {os.getloadavg()[0]:.1f} at the end (other jobs on the cores slow it down)." +
             ("" if not made else " QAT, over every run of an interrupted and resumed one: " +
              ", ".join(f"{name} {s / 60:.0f} min" for name, s in made.items()) + ".")]
    if out and (Path(out) / MANIFEST).is_file():
        manifest = json.loads((Path(out) / MANIFEST).read_text())
        models = []
        backend = next(b for b in QUANTIZED if any(b in m["files"] for m in manifest["models"]))
        for m in manifest["models"]:
            quantized = m["files"].get(backend)
            rows = {r["backend"]: r for r in m.get("validation", [])}
            models.append({"name": m["name"], "shot_range": m["shot_range"],
                           "files": {b: r["bytes"] for b, r in m["files"].items()},
                           "tflite_quantized_kb": round(quantized["bytes"] / 1024, 1) if quantized else None,
                           "parity_db": rows.get(backend, {}).get("parity_db"),
                           "parity_vs": rows.get(backend, {}).get("reference"),
                           "drop_db": rows.get(backend, {}).get("drop_db"),
                           "max_level_drop_db": max_level_drop(rows, backend),
                           "ok": all(r["ok"] for r in rows.values())})
        doc.update(validation=manifest["validation"], models=models, backend=backend,
                   tflite_quantized_total_kb=round(sum(m["files"].get(backend, 0) for m in models) / 1024, 1))
        lines += ["", f"Output: {out} ({len(models)} model(s); {backend} total {doc['tflite_quantized_total_kb']} KB); "
                  f"validation {'passed' if manifest['validation']['passed'] else 'FAILED'}.", "",
                  f"| model | shot range | {backend} KB | parity dB (vs) | drop vs fp32 dB | worst level dB | ok |",
                  "| --- | --- | ---: | ---: | ---: | ---: | --- |"]
        for m in models:
            lines.append(f"| {m['name']} | [{m['shot_range'][0]:.3g}, {m['shot_range'][1]:.3g}] | "
                         f"{m['tflite_quantized_kb']} | {m['parity_db']} ({m['parity_vs']}) | {m['drop_db']:+.3f} | "
                         f"{m['max_level_drop_db']:+.3f} | "
                         f"{'yes' if m['ok'] else 'no'} |")
        lines += ["", "## The export's report.md", "", (Path(out) / "report.md").read_text()]
    else:
        lines += ["", "No export folder was written:", "", "```", *doc["stderr_tail"], "```"]
    RESULTS.mkdir(parents=True, exist_ok=True)
    write_json(RESULTS / f"{name}.json", doc)
    write_text(RESULTS / f"{name}.md", "\n".join(lines) + "\n")
    print("\n".join(lines[:12]))
    return doc


if __name__ == "__main__":
    main()
