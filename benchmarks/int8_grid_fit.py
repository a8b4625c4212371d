"""What fitting a frame to its int8 model's input grid buys: the shipped int8 array (export/fan-nsma,
TFLite) against its float models (models/nsma, torch) on photos as they are and brightened, at
the low end and the centre of each sub-range, with each frame run at its own noise level (the
int8 networks as they ran before) and at the level Runner.levels raises it to, for several fills.

Above its input grid an int8 network sees its largest input and returns the noisy pixel as it is,
and its activations' ranges were learnt on QAT's (mostly dark) patches; at the low-noise end of a
model's range the k-sigma map takes a bright frame far up them. Runner.levels runs such a frame
at the smallest larger shot level at which 99.9 % of its unclipped pixels fill at most a part
(the fill) of the grid's top; told of more noise than there is, the network smooths a little
more. The shipped fill (fad_deploy.runners.base.GRID_FILL) was chosen on the validation photos
(--photos validation: scikit-image's); the held-out test photos report it.

    python benchmarks/int8_grid_fit.py [--photos test|validation] [--crop 96] [--crops-per-image 1]

Writes benchmarks/results/int8_grid_fit-<photos>.{md,json}.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

from fad_deploy.checks import positive_int
from fad_deploy.data.photos import SKIMAGE_PHOTOS, skimage_photo
from fad_deploy.data.synth import noise_list, synth_pairs
from fad_deploy.evaluate.quality import score
from fad_deploy.fileio import write_json, write_text
from fad_deploy.nsma.array import load_array
from fad_deploy.nsma.evaluate import SetConfig, set_images
from fad_deploy.profile.table import markdown_table
from fad_deploy.runners.base import GRID_FILL

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
GAINS = (1.0, 2.0)  # sRGB photo times this, clipped to 1, before unprocessing (int8_brightness.py's frames)
FILLS = (None, 1.0, 0.7, 0.5)  # None: each frame at its own level (no fit)
LOW_END = 1.05  # the low-end level: this times the sub-range's floor
SEED = 0


def photos(which: str, crop: int) -> tuple[list[tuple[str, np.ndarray]], str]:
    if which == "validation":
        return [(name, skimage_photo(name)) for name in SKIMAGE_PHOTOS], "scikit-image's, fad-export's validation"
    return set_images(SetConfig(crop=crop))


def fill_label(fill: float | None) -> str:
    return "own level" if fill is None else f"fill {fill:g}" + (" (shipped)" if fill == GRID_FILL else "")


def measure(args) -> dict:
    images, source = photos(args.photos, args.crop)
    arrays = {b: load_array(None, b) for b in ("torch", "tflite-int8")}
    rows, start = [], time.time()
    for gain in GAINS:
        frames = [(name, np.clip(image * gain, 0, 1)) for name, image in images]
        for index, entry in enumerate(arrays["torch"].table):
            levels = (("low end", LOW_END * entry.shot_min), ("centre", (entry.shot_min * entry.shot_max) ** 0.5))
            for where, shot in levels:
                pairs = synth_pairs(frames, args.crop, args.crops_per_image, [shot], SEED)
                noise = noise_list(pairs)
                row = {"gain": gain, "model": entry.name, "where": where, "shot": shot,
                       "mean_level": float(pairs["clean"].mean()),
                       "float": float(score(arrays["torch"].denoise(pairs["noisy"], noise, index), pairs)
                                      .mean()["raw_psnr"])}
                runner = arrays["tflite-int8"].runner(index)
                for fill in FILLS:
                    runner.grid_fill = fill
                    raised = [run.shot / n.shot for run, n in zip(runner.levels(pairs["noisy"], noise), noise)]
                    psnr = score(arrays["tflite-int8"].denoise(pairs["noisy"], noise, index), pairs).mean()["raw_psnr"]
                    row[fill_label(fill)] = {"raw_psnr": float(psnr), "mean_raise": float(np.mean(raised))}
                runner.grid_fill = GRID_FILL
                rows.append(row)
                print(f"gain {gain:g} {entry.name} {where}: float {row['float']:.2f}, "
                      + ", ".join(f"{fill_label(f)} {row[fill_label(f)]['raw_psnr']:.2f}" for f in FILLS), flush=True)
    return {"photos": source, "images": len(images), "crop": args.crop, "crops_per_image": args.crops_per_image,
            "seed": SEED, "gains": list(GAINS), "fills": [fill_label(f) for f in FILLS], "shipped_fill": GRID_FILL,
            "seconds": round(time.time() - start, 1), "rows": rows}


def markdown(result: dict, argv: list[str]) -> str:
    fills = result["fills"]
    header = ["gain", "model", "level", "a", "mean x", "float dB", *(f"{f}: drop dB (a x)" for f in fills)]
    body = [[f"{r['gain']:g}", r["model"], r["where"], f"{r['shot']:.3g}", f"{r['mean_level']:.3f}",
             f"{r['float']:.2f}", *(f"{r['float'] - r[f]['raw_psnr']:+.2f} (x{r[f]['mean_raise']:.2f})" for f in fills)]
            for r in result["rows"]]

    def drops(gain, fill) -> list[float]:
        return [r["float"] - r[fill]["raw_psnr"] for r in result["rows"] if r["gain"] == gain]

    summary = [[f"{gain:g}", *(f"{np.mean(drops(gain, f)):+.3f} / {max(drops(gain, f)):+.2f}" for f in fills)]
               for gain in result["gains"]]
    return "\n".join([
        "# int8 frames fitted to their model's input grid", "",
        f"Made by `python benchmarks/int8_grid_fit.py {' '.join(argv)}` ({result['seconds']:.0f} s). "
        f"{result['images']} photos ({result['photos']}), {result['crops_per_image']} packed crop(s) of "
        f"{result['crop']}x{result['crop']} each (seed {result['seed']}), each sRGB photo times the gain (clipped) "
        "before unprocessing; noise at 1.05 times each sub-range's floor (low end) and at its centre, read noise on "
        "UPI's line. Drop = RAW PSNR of the float model (models/nsma, torch) minus that of the shipped int8 TFLite "
        "(export/fan-nsma); 'own level': each frame run at its noise level; 'fill f': run at the smallest shot level "
        "at which 99.9 % of its unclipped pixels map to at most f times the int8 input grid's top "
        "(fad_deploy.runners.base.grid_level), x the mean factor the shot level was raised by.", "",
        "Mean / worst drop by gain:", "",
        markdown_table(["gain", *fills], summary), "",
        markdown_table(header, body), ""])


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--photos", choices=("test", "validation"), default="test")
    p.add_argument("--crop", type=positive_int, default=96, help="packed crop size")
    p.add_argument("--crops-per-image", type=positive_int, default=1)
    p.add_argument("--results", type=Path, default=RESULTS)
    args = p.parse_args(argv)
    result = measure(args)
    out = args.results / f"int8_grid_fit-{args.photos}"
    write_json(out.with_suffix(".json"), result)
    write_text(out.with_suffix(".md"), markdown(result, argv if argv is not None else sys.argv[1:]))
    print(f"wrote {out.with_suffix('.md')}")
    return result


if __name__ == "__main__":
    main()
