"""models/nsma/manifest.json: the array's sub-range table (the selection data a phone
repeats), its checkpoints and their metrics; and what `fad-export` needs to bundle it."""
from __future__ import annotations

import re
from pathlib import Path

from ..errors import FadError
from ..fileio import write_json
from ..models.registry import load_checkpoint
from .array import MANIFEST
from .select import SELECTION_RULE, TABLE_KEY, parse_table, table_from_manifest

FORMAT = "fad-deploy-nsma/1"
MODEL_PREFIX = "fan-nsma"
CHECKPOINT_PATTERN = re.compile(rf"{MODEL_PREFIX}-(\d+)\.pt")


def array_checkpoints(folder: Path) -> list[Path]:
    """fan-nsma-0.pt, fan-nsma-1.pt, ... in index order; the indices must be 0..n-1."""
    found = {int(m.group(1)): p for p in Path(folder).glob(f"{MODEL_PREFIX}-*.pt")
             if (m := CHECKPOINT_PATTERN.fullmatch(p.name))}
    if not found:
        raise FadError(f"{folder}: no {MODEL_PREFIX}-<i>.pt checkpoints (train them with benchmarks/train_nsma.sh)")
    if sorted(found) != list(range(len(found))):
        raise FadError(f"{folder}: array checkpoints numbered {sorted(found)}; expected 0..{len(found) - 1}")
    return [found[i] for i in range(len(found))]


def build_manifest(folder: str | Path, evaluation: dict | None = None) -> dict:
    """The manifest of the checkpoints in ``folder``: each one's sub-range is the shot range
    it was trained on (recorded in the checkpoint). ``evaluation`` (from
    :func:`fad_deploy.nsma.evaluate.compare`) adds metrics per sub-range."""
    folder = Path(folder)
    entries = []
    for path in array_checkpoints(folder):
        ckpt = load_checkpoint(path)
        entries.append({
            "name": path.stem, "file": path.name,
            "shot_min": float(ckpt.shot_range[0]), "shot_max": float(ckpt.shot_range[1]),
            "anchor": {"shot": ckpt.anchor.shot, "read": ckpt.anchor.read},
            "training": {k: ckpt.card.get(k) for k in ("steps", "training_time_s", "validation_raw_psnr", "command")},
        })
    table = parse_table(entries, str(folder))
    for prev, nxt in zip(table, table[1:]):
        if prev.shot_max != nxt.shot_min:
            raise FadError(f"{folder}: {prev.name} ends at {prev.shot_max:g} but {nxt.name} starts at "
                           f"{nxt.shot_min:g}: the sub-ranges must tile one range")
    manifest = {
        "format": FORMAT,
        "n": len(entries),
        "shot_range": [table[0].shot_min, table[-1].shot_max],
        "selection_rule": SELECTION_RULE,
        TABLE_KEY: entries,
    }
    if evaluation is not None:
        for entry, row in zip(entries, evaluation["per_subrange"]):
            entry["metrics"] = {k: v for k, v in row.items() if isinstance(v, dict)}
        manifest["evaluation"] = {k: evaluation[k] for k in ("set", "overall", "selection_accuracy_estimated")
                                  if k in evaluation}
    return manifest


def write_manifest(folder: str | Path, evaluation: dict | None = None) -> Path:
    path = Path(folder) / MANIFEST
    write_json(path, build_manifest(folder, evaluation))
    return path


def nsma_bundle_table(manifest_path: str | Path) -> dict:
    """What `fad-export` needs to export the whole array: the checkpoints to export (in
    order, with their names) and the selection data to copy into the bundle's manifest.

    Returns {"selection_rule", "shot_range", "models": [{"name", "checkpoint", "shot_min",
    "shot_max"}]}. The bundle's manifest.json must then hold
    "subranges": [{"name", "file" (the exported model, relative to the bundle), "shot_min",
    "shot_max"}] and "selection_rule", which :func:`fad_deploy.nsma.select.table_from_manifest` reads.
    """
    manifest_path = Path(manifest_path)
    table = table_from_manifest(manifest_path)
    models = []
    for e in table:
        checkpoint = (manifest_path.parent / e.file).resolve()
        if not checkpoint.is_file():
            raise FadError(f"{manifest_path}: checkpoint {e.file} of {e.name} not found")
        models.append({"name": e.name, "checkpoint": str(checkpoint), "shot_min": e.shot_min, "shot_max": e.shot_max})
    return {"selection_rule": SELECTION_RULE, "shot_range": [table[0].shot_min, table[-1].shot_max], "models": models}

