"""Make the shipped int8 noise-subrange array: run the QAT recipe on every float sub-range
model (`fad-export --int8 --target tflite --qat`, bounds lifted so the files are kept
whatever they lose), copy each int8 checkpoint beside its float one in models/nsma/ and
write its card (the command, the QAT time on this CPU, the recipe, the validated per-level
drop of the int8 TFLite and its parity with PyTorch).

    python benchmarks/ship_int8.py
    python benchmarks/ship_int8.py --from-export DIR --log FILE   # ship a run already made

After this, `fad-export --int8 --target tflite` converts the shipped checkpoints (no QAT).
"""
from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from fad_deploy.export.manifest import FILE_SUFFIX, MANIFEST
from fad_deploy.fileio import write_json, write_text
from fad_deploy.models.registry import models_dir
from fad_deploy.profile.cpu import cpu_peak
from fad_deploy.quant.recipe import QATConfig

MADE = re.compile(r"^\s+(\S+): .*\(int8 made in (\d+) s\)$")


def qat_command(out: Path) -> list[str]:
    return ["fad-export", "--int8", "--target", "tflite", "--qat", "--max-drop", "100", "--max-level-drop", "100",
            "--out", str(out)]


def level_drops(rows: list[dict]) -> dict[str, float]:
    by = {r["backend"]: r for r in rows}
    base, int8 = by["torch"]["psnr_by_shot"], by["tflite-int8"]["psnr_by_shot"]
    return {s: round(base[s] - int8[s], 3) for s in base}


def card(entry: dict, command: str, qat_s: float | None, cpu: str) -> tuple[dict, str]:
    rows = {r["backend"]: r for r in entry["validation"]}
    drops = level_drops(entry["validation"])
    doc = {"name": entry["name"], "int8_checkpoint": f"{entry['name']}{FILE_SUFFIX['torch-int8']}",
           "source": entry["source"], "command": command, "qat_s": qat_s, "cpu": cpu,
           "validation_set": entry["validation_set"]["set"],
           "drop_db": round(rows["tflite-int8"]["drop_db"], 3), "drop_by_shot_db": drops,
           "parity_int8_db": round(rows["tflite-int8"]["parity_db"], 2)}
    md = [f"# {entry['name']} int8", "",
          f"The int8 quantization of `{entry['source']['checkpoint']}` (sha256 {entry['source']['sha256'][:12]}): "
          f"per-channel symmetric int8 weights on the grid [{QATConfig().weight_qmin}, 127], learned per-tensor "
          "8-bit activation ranges (QAT recipe: "
          "`fad_deploy.quant.recipe.QATConfig` defaults). `fad-export --int8 --target tflite` converts it as it is.",
          "", "## How it was made", "", f"    {command}", "",
          f"- QAT time: {qat_s:.0f} s on {cpu}" if qat_s is not None else
          "- QAT time: not recorded (the QAT was interrupted and resumed over several runs; the recipe's "
          "steps per second on this CPU: `benchmarks/results/qat_jobs.md`)",
          "", "## Validated by fad-export", "",
          f"Set: {doc['validation_set']}. int8 TFLite vs PyTorch fp32 RAW PSNR drop {doc['drop_db']:+.3f} dB; "
          f"per level: " + ", ".join(f"a={s}: {v:+.3f}" for s, v in drops.items()) +
          f"; parity with the PyTorch int8 network {doc['parity_int8_db']} dB.", "",
          "Per technique and on held-out photos: `benchmarks/results/int8_recipe.md`.", ""]
    return doc, "\n".join(md)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--from-export", type=Path, help="an export folder of the command above, already made")
    p.add_argument("--log", type=Path, help="its printed output (for the QAT times), with --from-export")
    args = p.parse_args(argv)
    peak = cpu_peak()
    cpu = f"{peak.label}, {os.cpu_count()} cores"
    work = Path(tempfile.mkdtemp(prefix="ship-int8-"))
    export = args.from_export or work / "fan-nsma"
    command = qat_command(Path("OUT"))
    if args.from_export is None:
        start = time.time()
        proc = subprocess.run(qat_command(export), capture_output=True, text=True)
        if proc.returncode:
            sys.exit(f"ship_int8: fad-export failed: {proc.stderr.strip().splitlines()[-1:]}")
        log = proc.stdout
        print(f"QAT and export took {time.time() - start:.0f} s")
    else:
        log = args.log.read_text()
    made = {m.group(1): float(m.group(2)) for m in map(MADE.match, log.splitlines()) if m}
    manifest = json.loads((export / MANIFEST).read_text())
    dest = models_dir() / "nsma"
    for entry in manifest["models"]:
        int8 = f"{entry['name']}{FILE_SUFFIX['torch-int8']}"
        shutil.copyfile(export / int8, dest / int8)
        doc, md = card(entry, " ".join(command).replace(" --out OUT", ""), made.get(entry["name"]), cpu)
        write_json(dest / f"{entry['name']}.int8.json", doc)
        write_text(dest / f"{entry['name']}.int8.md", md)
        print(f"{int8}: drop {doc['drop_db']:+.3f} dB, worst level {max(doc['drop_by_shot_db'].values()):+.3f} dB")
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
