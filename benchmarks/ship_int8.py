"""Make the shipped int8 noise-subrange array: run the QAT recipe on every float sub-range
model (`fad-export --int8 --target tflite --qat`, bounds lifted so the files are kept
whatever they lose), copy each int8 checkpoint beside its float one in models/nsma/ and
write its card (the command, the QAT time on this CPU, the recipe, the validated per-level
drop of the int8 TFLite and its parity with PyTorch).

    python benchmarks/ship_int8.py
    python benchmarks/ship_int8.py --from-export DIR --log FILE   # ship a run already made
    python benchmarks/ship_int8.py --int8 FILE ... --made-by CMD ...   # int8 made by other recipes
    python benchmarks/ship_int8.py --split 8   # the shipped int8 checkpoints with their input split
    python benchmarks/ship_int8.py --array DIR --previous DIR2 --int8 FILE ... --made-by CMD ...   # another array

With ``--int8``, each file (an int8 checkpoint of one of the shipped float models, e.g. one
`int8_recipe.py` made and kept under $FAD_CACHE/int8_recipe/) replaces that model's shipped
int8 checkpoint, its recipe recorded in it; ``--made-by`` gives, per file, the command that
made it. The array is then exported as the README's main command does (converting the
shipped checkpoints, no QAT) and every card is written from that export's validation; the
other models keep the command and QAT time of their cards. With ``--array DIR``, the float models of
DIR (an array with its manifest, e.g. models/ablations/nsma-from-student/) become the shipped ones
first, under their manifest names; the array shipped before moves to ``--previous``, and the
``--int8`` files, one per model, were made from DIR's models. With ``--split K``, every shipped int8
checkpoint gets the split int8 input with k = K (fad_deploy.quant.split, made from its QAT's own
checkpoint, a split one's split taken off; nothing retrained; its grid widened to the QAT's
inputs: fad_deploy.quant.qat.split_input) and is exported and carded the same way, its card's
command followed by this one.

After this, `fad-export --int8 --target tflite` converts the shipped checkpoints (no QAT).
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from fad_deploy.export.bundle import made_by
from fad_deploy.export.manifest import FILE_SUFFIX, MANIFEST, sha256
from fad_deploy.fileio import write_json, write_text
from fad_deploy.models.registry import Checkpoint, load_checkpoint, models_dir
from fad_deploy.profile.cpu import cpu_peak
from fad_deploy.quant.qat import qat_settings, split_input
from fad_deploy.quant.recipe import QATConfig
from fad_deploy.quant.split import SPLIT_KEY, WIDEN_KEY, single_checkpoint

SPLIT_COMMAND = "; python benchmarks/ship_int8.py --split "  # how a card's command says the input was split after
MADE = re.compile(r"^\s+(\S+): .*\(int8 made in (\d+) s\)$")


def export_command(out: Path, qat: bool = True) -> list[str]:
    return ["fad-export", "--int8", "--target", "tflite", *(["--qat"] if qat else []), "--max-drop", "100",
            "--max-level-drop", "100", "--out", str(out)]


def recipe_text(settings: QATConfig) -> str:
    """The QAT settings of an int8 checkpoint as the ones that differ from the recipe's defaults."""
    changed = {f.name: getattr(settings, f.name) for f in dataclasses.fields(settings)
               if getattr(settings, f.name) != getattr(QATConfig(), f.name)}
    if not changed:
        return "`fad_deploy.quant.recipe.QATConfig` defaults"
    return "`fad_deploy.quant.recipe.QATConfig` with " + ", ".join(f"{k}={v!r}" for k, v in changed.items())


def stamp(q: Checkpoint, path: Path) -> Checkpoint:
    """The int8 checkpoint ``q`` (from ``path``) with the recipe fad-export records (its float
    source shipped in models/nsma/, QAT with the settings it was made with)."""
    source = models_dir() / "nsma" / f"{q.card['quantization']['source']}.pt"
    if not source.is_file():
        sys.exit(f"ship_int8: {path}: its float source {source} is not shipped")
    recipe = made_by(sha256(source), "qat", qat_settings(q))
    return dataclasses.replace(q, extra={**q.extra, "quantization": {**q.extra["quantization"], "recipe": recipe}})


def kept_qat_s(path: Path, q: Checkpoint, source: Checkpoint, before: Path) -> float | None:
    """The QAT seconds int8_recipe.py recorded beside a kept int8 checkpoint of float checkpoint
    ``source``, with those of the shorter recipes' checkpoints its later cycles went on from: the
    int8 checkpoint shipped ``before`` where it is one of them (its card's seconds count all its own
    cycles), else kept ones (None: not recorded)."""
    from int8_recipe import kept_path  # (this folder's benchmark; heavy imports, wanted only here)

    card_path = before.with_name(before.name.replace(".pt", ".json"))
    shipped = ((unsplit(qat_settings(single_checkpoint(load_checkpoint(before)))),
                json.loads(card_path.read_text())["qat_s"]) if card_path.is_file() else (None, None))
    seconds, config, earlier = [path.with_suffix(".json")], qat_settings(q), 0.0
    while config.continue_steps:
        config = config.previous()
        kept = kept_path(source, config).with_suffix(".json")
        if unsplit(config) == shipped[0] and shipped[1] is not None:
            earlier = shipped[1]
            break
        seconds.append(kept)
    if not all(p.is_file() for p in seconds):
        return None
    return earlier + sum(json.loads(p.read_text())["qat_s"] for p in seconds)


def unsplit(config):
    """A QAT recipe less its input split (made after the QAT, from its checkpoint)."""
    return dataclasses.replace(config, input_split=0)


def renamed(ckpt: Checkpoint, name: str, note: str) -> Checkpoint:
    """``ckpt`` (a float checkpoint or an int8 one made from it) under the shipped ``name``."""
    card = {**ckpt.card, "notes": [*ckpt.card.get("notes", []), note]}  # (a model card lists its notes)
    if "quantization" in card:
        card["quantization"] = {**card["quantization"], "source": name}
    return dataclasses.replace(ckpt, name=name, card=card)


def ship_array(array: Path, previous: Path, int8: list[Path]) -> dict[str, tuple[Checkpoint, Path, Checkpoint]]:
    """Make the float sub-range models of ``array`` the shipped ones: models/nsma/ moves to
    ``previous`` (its int8 checkpoints with it, since they were made from its floats) and each of
    ``array``'s models is copied in under its manifest name, with the manifest. Returns, per shipped
    name, the ``int8`` file made from that model (read and renamed so), its path and its float
    source as it was in ``array``."""
    table = json.loads((array / MANIFEST).read_text())["subranges"]
    floats = {e["name"]: (load_checkpoint(array / e["file"]), e["file"]) for e in table}
    by_source = {load_checkpoint(path).card["quantization"]["source"]: path for path in int8}
    missing = [name for name, (ckpt, _) in floats.items() if ckpt.name not in by_source]
    if missing or len(int8) != len(floats):
        sys.exit(f"ship_int8: --array needs one --int8 file per model of {array}, made from it (none for: "
                 f"{', '.join(missing) or '-'})")
    dest = models_dir() / "nsma"
    if previous.exists():
        sys.exit(f"ship_int8: --previous {previous} exists already")
    shutil.move(dest, previous)
    dest.mkdir()
    note = f"trained into {array}; made the shipped array by benchmarks/ship_int8.py --array"
    for name, (ckpt, file) in floats.items():
        renamed(ckpt, name, note).save(dest / file)
    shutil.copyfile(array / MANIFEST, dest / MANIFEST)
    return {name: (renamed(load_checkpoint(by_source[ckpt.name]), name, note), by_source[ckpt.name], ckpt)
            for name, (ckpt, _) in floats.items()}


def level_drops(rows: list[dict]) -> dict[str, float]:
    by = {r["backend"]: r for r in rows}
    base, int8 = by["torch"]["psnr_by_shot"], by["tflite-int8"]["psnr_by_shot"]
    return {s: round(base[s] - int8[s], 3) for s in base}


def recipe_table(command: str) -> str:
    """The technique table of the int8_recipe.py run ``command`` (its --results folder's), else the shipped one."""
    results = re.search(r"int8_recipe\.py .*?--results (\S+)", command)
    return f"{results.group(1) if results else 'benchmarks/results'}/int8_recipe.md"


def card(entry: dict, command: str, qat_s: float | None, cpu: str, recipe: str, quantization: dict) -> tuple[dict, str]:
    split, widen = quantization.get(SPLIT_KEY), quantization.get(WIDEN_KEY, 1)
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
          f"8-bit activation ranges (QAT recipe: {recipe})"
          + (f"; its int8 input split in two, the input rounded down and {split} times the remainder (8 channels, "
             f"`fad_deploy.quant.split`), on the learned input grid widened x{widen} to cover 99.9 % of the QAT's "
             "inputs" if split else "") + ". `fad-export --int8 --target tflite` converts it as it is.",
          "", "## How it was made", "", f"    {command}", "",
          f"- QAT time: {qat_s:.0f} s on {cpu}" if qat_s is not None else
          "- QAT time: not recorded (the QAT was interrupted and resumed over several runs; the recipe's "
          "steps per second on this CPU: `benchmarks/results/qat_jobs.md`)",
          "", "## Validated by fad-export", "",
          f"Set: {doc['validation_set']}. int8 TFLite vs PyTorch fp32 RAW PSNR drop {doc['drop_db']:+.3f} dB; "
          f"per level: " + ", ".join(f"a={s}: {v:+.3f}" for s, v in drops.items()) +
          f"; parity with the PyTorch int8 network {doc['parity_int8_db']} dB.", "",
          f"Per technique and on held-out photos: `{recipe_table(command)}`.", ""]
    return doc, "\n".join(md)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--from-export", type=Path, help="an export folder of the command above, already made")
    p.add_argument("--log", type=Path, help="its printed output (for the QAT times), with --from-export")
    p.add_argument("--int8", type=Path, nargs="+", default=[],
                   help="int8 checkpoints of shipped sub-range models, made by other recipes, to ship instead")
    p.add_argument("--made-by", nargs="+", default=[], help="with --int8: the command that made each file")
    p.add_argument("--split", type=int, metavar="K", help="split the shipped int8 checkpoints' inputs (k = K)")
    p.add_argument("--array", type=Path,
                   help="with --int8 (one file per model, made from this array's float models): ship another array, "
                        "its float models copied into models/nsma/ under their manifest names")
    p.add_argument("--previous", type=Path, help="with --array: where the array shipped before moves to")
    args = p.parse_args(argv)
    if bool(args.array) != bool(args.previous) or (args.array and not args.int8):
        sys.exit("ship_int8: --array takes --previous and --int8")
    if len(args.made_by) != len(args.int8) or (args.int8 and args.from_export):
        sys.exit("ship_int8: --made-by gives one command per --int8 file, and --int8 goes without --from-export")
    if args.split and (args.int8 or args.from_export):
        sys.exit("ship_int8: --split works on the shipped checkpoints, without --int8 or --from-export")
    peak = cpu_peak()
    cpu = f"{peak.label}, {os.cpu_count()} cores"
    work = Path(tempfile.mkdtemp(prefix="ship-int8-"))
    export = args.from_export or work / "fan-nsma"
    dest = models_dir() / "nsma"
    makers = {}  # model -> the command that made its int8 checkpoint, its QAT seconds and CPU
    commands = dict(zip(args.int8, args.made_by))
    if args.array:
        new_int8 = ship_array(args.array, args.previous, args.int8)
    else:
        new_int8 = {}
        for path in args.int8:
            q = load_checkpoint(path)
            name = q.card["quantization"]["source"]
            new_int8[name] = q, path, load_checkpoint(dest / f"{name}.pt")
    for name, (q, path, source) in new_int8.items():
        qat_s = kept_qat_s(path, q, source, dest / f"{name}{FILE_SUFFIX['torch-int8']}")
        stamp(q, path).save(dest / f"{name}{FILE_SUFFIX['torch-int8']}")
        makers[name] = commands[path], qat_s, cpu
    for path in sorted(dest.glob(f"*{FILE_SUFFIX['torch-int8']}")) if args.split else []:
        shipped = load_checkpoint(path)
        single = single_checkpoint(shipped)  # (a split one's split taken off: the QAT's own checkpoint)
        q = stamp(split_input(single, dataclasses.replace(qat_settings(single), input_split=args.split)), path)
        if q.extra == shipped.extra:
            continue
        q.save(path)
        before = json.loads(path.with_name(path.name.replace(".pt", ".json")).read_text())
        command = before["command"].split(SPLIT_COMMAND)[0]
        name = q.card["quantization"]["source"]
        makers[name] = f"{command}{SPLIT_COMMAND}{args.split}", before["qat_s"], before["cpu"]
    if args.from_export is None:
        start = time.time()
        proc = subprocess.run(export_command(export, qat=not (args.int8 or args.split)), capture_output=True,
                              text=True)
        if proc.returncode:
            sys.exit(f"ship_int8: fad-export failed: {proc.stderr.strip().splitlines()[-1:]}")
        log = proc.stdout
        print(f"{'Conversion' if args.int8 or args.split else 'QAT'} and export took {time.time() - start:.0f} s")
    else:
        log = args.log.read_text()
    made = {m.group(1): float(m.group(2)) for m in map(MADE.match, log.splitlines()) if m}
    manifest = json.loads((export / MANIFEST).read_text())
    for entry in manifest["models"]:
        name = entry["name"]
        int8 = f"{name}{FILE_SUFFIX['torch-int8']}"
        if not (args.int8 or args.split):
            shutil.copyfile(export / int8, dest / int8)
            made_on = " ".join(export_command(Path("OUT"))).replace(" --out OUT", ""), made.get(name), cpu
        elif name in makers:
            made_on = makers[name]
        else:  # shipped before, as its card says
            before = json.loads((dest / f"{name}.int8.json").read_text())
            made_on = before["command"], before["qat_s"], before["cpu"]
        q = load_checkpoint(dest / int8)
        doc, md = card(entry, *made_on, recipe_text(qat_settings(q)), q.extra["quantization"])
        write_json(dest / f"{name}.int8.json", doc)
        write_text(dest / f"{name}.int8.md", md)
        print(f"{int8}: drop {doc['drop_db']:+.3f} dB, worst level {max(doc['drop_by_shot_db'].values()):+.3f} dB")
    shutil.rmtree(work, ignore_errors=True)
    if args.array:
        print(f"the float models' cards and the manifest's metrics: python benchmarks/nsma_table.py --write-manifest "
              f"--cards (the array shipped before: {args.previous})")


if __name__ == "__main__":
    main()
