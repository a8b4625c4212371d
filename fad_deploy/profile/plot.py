"""Quality vs. compute vs. latency: one plot (PNG, PDF or SVG) from a bench document and
fad-eval's quality JSON."""
from __future__ import annotations

import json
from pathlib import Path

from ..errors import FadError
from ..fileio import atomic_path

QUALITY_KEY = "raw_psnr"


def load_quality(path: str | Path) -> dict[str, float]:
    """fad-eval JSON -> {model: RAW PSNR} from its torch rows (the float reference)."""
    path = Path(path)
    try:
        rows = json.loads(path.read_text())["results"]
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise FadError(f"{path}: not a fad-eval results file ({type(e).__name__})")
    return {r["model"]: float(r[QUALITY_KEY]) for r in rows
            if r.get("backend", "torch") == "torch" and r.get(QUALITY_KEY) is not None}


def quality_plot(doc: dict, quality: dict[str, float], out: str | Path) -> list[str]:
    """Two panels sharing the PSNR axis: PSNR vs GMACs/MP, and PSNR vs the fastest measured
    ms/MP of each model (backend named). Returns the models plotted."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    points = []
    for m in doc["models"]:
        if m["name"] not in quality or not m["results"]:
            continue
        best = min(m["results"], key=lambda r: r["ms_per_megapixel"])
        points.append((m["name"], m["macs_per_megapixel"] / 1e9, best, quality[m["name"]]))
    if not points:
        return []
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4), sharey=True)
    for name, gmacs, best, psnr in points:
        left.scatter(gmacs, psnr)
        left.annotate(name, (gmacs, psnr), textcoords="offset points", xytext=(4, 4), fontsize=8)
        right.scatter(best["ms_per_megapixel"], psnr)
        right.annotate(f"{name} ({best['backend']} x{best['threads']})", (best["ms_per_megapixel"], psnr),
                       textcoords="offset points", xytext=(4, 4), fontsize=8)
    left.set(xscale="log", xlabel="GMACs per RAW megapixel (4x512x512 packed)", ylabel="RAW PSNR (dB)")
    right.set(xscale="log", xlabel=f"fastest latency, ms per RAW megapixel ({doc['device'].get('kind', '?')})")
    for ax in (left, right):
        ax.grid(True, which="both", alpha=0.3)
    fig.suptitle("Quality vs compute vs latency")
    fig.tight_layout()
    with atomic_path(out) as tmp:
        fig.savefig(tmp, dpi=120, format=Path(out).suffix[1:].lower())  # png, pdf or svg (fad-bench --plot)
    plt.close(fig)
    return [p[0] for p in points]
