"""Noise Subrange Model Array benchmark, the paper's Table 2 analogue: the array of
sub-range students against the single full-range student on the same seeded set of
held-out photos (`fad-data fetch`'s test photos, else scikit-image's), overall, per
sub-range and per shot level; plus a plot of PSNR against the shot level.

    python benchmarks/nsma_table.py [--write-manifest]   # writes benchmarks/results/nsma.{md,json,png}

With --write-manifest it (re)writes the array's manifest.json, metrics included.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from fad_deploy.fileio import atomic_path, write_json, write_text
from fad_deploy.models.registry import load_checkpoint, models_dir, resolve_model
from fad_deploy.nsma.array import ARRAY_FOLDER, SINGLE_MODEL, load_array
from fad_deploy.nsma.evaluate import SetConfig, compare, evaluation_set
from fad_deploy.nsma.manifest import write_manifest
from fad_deploy.runners import load_runner
from fad_deploy.runners.tiling import framed

RESULTS = Path(__file__).parent / "results"
METRICS = (("raw_psnr", "RAW PSNR", 3), ("raw_ssim", "RAW SSIM", 4), ("rgb_psnr", "RGB PSNR", 3),
           ("rgb_ssim", "RGB SSIM", 4))


def overall_table(overall: dict) -> list[str]:
    out = ["| Method | " + " | ".join(t for _, t, _ in METRICS) + " |", "|---|" + "---|" * len(METRICS)]
    for name, m in overall.items():
        out.append(f"| {name} | " + " | ".join(f"{m[k]:.{d}f}" for k, _, d in METRICS) + " |")
    return out


def subrange_table(rows: list[dict], single: str) -> list[str]:
    out = ["| Sub-range | a range | images | " + " | ".join(f"{t} single / array (gain)" for _, t, _ in METRICS) + " |",
           "|---|---|---|" + "---|" * len(METRICS)]
    for r in rows:
        cells = [f"{r[single][k]:.{d}f} / {r['array'][k]:.{d}f} ({r['array'][k] - r[single][k]:+.{d}f})"
                 for k, _, d in METRICS]
        out.append(f"| {r['index']} ({r['name']}) | [{r['shot_min']:.3g}, {r['shot_max']:.3g}] | {r['images']} | "
                   + " | ".join(cells) + " |")
    return out


def verdict(result: dict, single: str) -> str:
    """The issue's target: the array at least as good in every sub-range, better overall."""
    every = all(r["array"][k] >= r[single][k] for r in result["per_subrange"] for k, _, _ in METRICS)
    better = all(result["overall"]["array"][k] > result["overall"][single][k] for k, _, _ in METRICS)
    return (f"Target (array >= single in every sub-range and metric: **{'met' if every else 'not met'}**; "
            f"array > single overall in every metric: **{'met' if better else 'not met'}**).")


def plot(result: dict, single: str, out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import NullFormatter

    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for ax, (key, title) in zip(axes, (("raw_psnr", "RAW PSNR (dB)"), ("rgb_psnr", "RGB PSNR (dB)"))):
        for name, style in ((single, "o-"), ("array", "s-"), ("array (estimated a)", "x:")):
            levels = result["per_level"][name]
            ax.plot([lv["shot"] for lv in levels], [lv[key] for lv in levels], style, label=name)
        for r in result["per_subrange"][1:]:
            ax.axvline(r["shot_min"], color="grey", lw=0.8, ls="--")
        ax.set_xscale("log")
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.set_xlabel("shot-noise level a (dashed: sub-range boundaries)")
        ax.set_ylabel(title)
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle("Noise Subrange Model Array vs single full-range student")
    fig.tight_layout()
    with atomic_path(out) as tmp:
        fig.savefig(tmp, dpi=100, format="png")
    plt.close(fig)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--array", type=Path, default=models_dir() / ARRAY_FOLDER, help="folder of fan-nsma-<i>.pt")
    p.add_argument("--single", default=SINGLE_MODEL, help="the full-range model to compare with")
    p.add_argument("--results", type=Path, default=RESULTS, help="where nsma.{md,json,png} go")
    p.add_argument("--write-manifest", action="store_true", help="(re)write ARRAY/manifest.json with the metrics")
    p.add_argument("--cards", action="store_true",
                   help="write each array model's card (NAME.md, .json beside it) with its sub-range's metrics")
    p.add_argument("--photos", help="folder of photos for the set (default: fetched test photos)")
    p.add_argument("--crop", type=int, default=SetConfig.crop)
    p.add_argument("--crops-per-image", type=int, default=SetConfig.crops_per_image)
    p.add_argument("--levels-per-subrange", type=int, default=SetConfig.levels_per_subrange)
    p.add_argument("--seed", type=int, default=SetConfig.seed)
    args = p.parse_args(argv)
    if args.write_manifest:
        write_manifest(args.array)  # the table first, so the array can be loaded
    array = load_array(args.array, "torch")
    single_path = resolve_model(args.single)
    single_name = load_checkpoint(single_path).name
    cfg = SetConfig(args.photos, args.crop, args.crops_per_image, args.levels_per_subrange, args.seed)
    pairs, info = evaluation_set(array.table, cfg)
    result = {"set": info, "array": str(args.array), "single": str(single_path),
              **compare(array, framed(load_runner("torch", single_path)), pairs, single_name)}
    if args.write_manifest:
        print(f"wrote {write_manifest(args.array, result)}")
    results = args.results
    command = f"python benchmarks/nsma_table.py {' '.join(argv if argv is not None else sys.argv[1:])}"
    write_json(results / "nsma.json", result)
    plot(result, single_name, results / "nsma.png")
    md = ["# Noise Subrange Model Array (Table 2 analogue)", "",
          f"Command: `{command}`.", "",
          f"Array: {len(array.table)} FAN students in `{args.array}`, each fine-tuned on one log-uniform sub-range "
          f"of the shot noise a (equations 5, 6); single: `{single_path}` (full range). Set: {info}.", "",
          "The array picks each image's model from its annotated a; 'array (estimated a)' uses the blind estimate "
          f"of (a, b) from each noisy {args.crop}x{args.crop} crop for the choice and the k-sigma transform, as "
          "`fad-denoise` does for files without noise metadata (same sub-range as the annotation for "
          f"{100 * result['selection_accuracy_estimated']:.1f}% of the images). RAW metrics on the 4 packed "
          "Bayer planes (data range 1); RGB after the minimal ISP.", "",
          "## Overall", "", *overall_table(result["overall"]), "",
          "## Per sub-range", "", *subrange_table(result["per_subrange"], single_name), "",
          verdict(result, single_name), "", "![PSNR vs shot level](nsma.png)", ""]
    write_text(results / "nsma.md", "\n".join(md))
    if args.cards:
        from quality import card_row, write_model_cards

        rows = [card_row(args.array / e.file, sub["array"]) for e, sub in zip(array.table, result["per_subrange"])]
        write_model_cards(rows, {**info, "levels": "its own sub-range"}, only=[r["model"] for r in rows],
                          measured_by=command, folder=args.array)
    print(f"wrote {results / 'nsma.md'}")


if __name__ == "__main__":
    sys.exit(main())
