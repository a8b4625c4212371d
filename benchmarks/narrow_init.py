"""What narrowing a trained FAN buys (issue 18's "Then" on the CPU: benchmarks/narrow_to_config.sh):
RAW PSNR per noise level on photos never used in training of the wide network, the start of the
narrow fine-tune (fad-train model.narrow: each narrowed ARNet block keeps the groups that carry
most of its output and its projection is refitted by least squares), that start without the
refit (the kept channels' projection copied), and the fine-tuned networks (whose model cards it writes).

    python benchmarks/narrow_init.py [--key d8-12-24] [--wide fan-student] [--finetuned CHECKPOINT ...]
    # writes benchmarks/results/narrow_init-KEY.{md,json}
"""
from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from fad_deploy.cli.eval import run as fad_eval
from fad_deploy.data.photos import default_cache_dir
from fad_deploy.fileio import write_json, write_text
from fad_deploy.models.narrow import narrow
from fad_deploy.models.registry import Checkpoint, build, load_checkpoint, model_config, resolve_model
from fad_deploy.train.config import load_config
from fad_deploy.train.trainer import Trainer
from fan_config_search import CANDIDATES, fad_train_settings
from quality import add_params, write_model_cards

RESULTS = Path(__file__).resolve().parent / "results"
EVAL = ["--crops-per-image", "2", "--levels", "6"]  # quality.py's set
TEST_PHOTOS = default_cache_dir() / "photos" / "test"  # `fad-data fetch`'s held-out photos


def starts(wide: str, key: str, folder: Path) -> list[Path]:
    """The narrowed network with and without the refit, as fad-train model.narrow makes it."""
    settings = fad_train_settings(CANDIDATES[key][1])
    trainer = Trainer(load_config("charbonnier", [f"model.init={wide}", "model.narrow=true", *settings,
                                                  f"out={folder / 'run'}"]), command="narrow_init.py")
    source = load_checkpoint(resolve_model(wide))
    copied = build(source.arch, model_config(trainer.model))
    narrow(source.build(), copied, trainer.narrow_inputs(), refit=False)
    paths = []
    for name, model in ((f"{key} narrowed", trainer.model), (f"{key} narrowed, projection copied", copied)):
        paths.append(folder / f"{len(paths)}.pt")
        Checkpoint(name, source.arch, model_config(model), model.state_dict(), source.shot_range,
                   anchor_shot=trainer.anchor.shot).save(paths[-1])
    return paths


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--key", default="d8-12-24", choices=CANDIDATES, help="the configuration (fan_config_search.py)")
    p.add_argument("--wide", default="fan-student", help="the network to narrow (shipped name or checkpoint)")
    p.add_argument("--finetuned", nargs="+", help="the narrow network after its fine-tune(s) (default: "
                                                  "models/ablations/fan-student-KEY.pt when there)")
    p.add_argument("--images", default=str(TEST_PHOTOS))
    args = p.parse_args(argv)
    default = Path(f"models/ablations/fan-student-{args.key}.pt")
    finetuned = args.finetuned or ([str(default)] if default.is_file() else [])
    with tempfile.TemporaryDirectory() as tmp:
        models = [args.wide, *map(str, starts(args.wide, args.key, Path(tmp)))]
        models += finetuned
        result = fad_eval(["--images", args.images, *models, "--threads", "2", *EVAL])
    own_photos = Path(args.images) != TEST_PHOTOS
    given = {"key": args.key, "wide": args.wide, "finetuned": args.finetuned and " ".join(args.finetuned),
             "images": own_photos and args.images}
    command = "python benchmarks/narrow_init.py" + "".join(f" --{k} {v}" for k, v in given.items() if v)
    # the networks' rows (not the noisy input's)
    rows = [r for r in result["results"] if f"{r['model']} [{r['backend']}]" in result["per_level"]]
    first = rows[0]["raw_psnr"]
    levels = [row["shot"] for row in next(iter(result["per_level"].values()))]
    photos = args.images if own_photos else "$FAD_CACHE/photos/test"
    lines = [f"# Narrowing `{args.wide}` to `{args.key}`", "", f"Made by `{command}`. RAW PSNR (dB) on the held-out "
             f"photos ({photos}), {EVAL[1]} crops each at {EVAL[3]} shot levels; GMACs per RAW megapixel.", "",
             "| network | GMACs/MP | RAW PSNR | vs wide | " + " | ".join(f"a = {a:.3g}" for a in levels) + " |",
             "| --- | ---: | ---: | ---: |" + " ---: |" * len(levels)]
    for r in rows:
        per_level = result["per_level"][f"{r['model']} [{r['backend']}]"]
        lines.append(f"| {r['model']} | {r['gmacs_per_megapixel']:.3f} | {r['raw_psnr']:.3f} | "
                     f"{r['raw_psnr'] - first:+.3f} | " + " | ".join(f"{x['raw_psnr']:.2f}" for x in per_level) + " |")
    if finetuned:  # their cards: how each was made, what it measures here
        names = [r["model"] for r in rows[-len(finetuned):]]
        add_params(rows, names)
        write_model_cards(rows, result["set"], only=names, measured_by=command)
    out = RESULTS / f"narrow_init-{args.key}"
    write_text(out.with_suffix(".md"), "\n".join(lines) + "\n")
    write_json(out.with_suffix(".json"), {"command": command, **result})
    print("\n".join(lines))


if __name__ == "__main__":
    main()
