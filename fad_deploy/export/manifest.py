"""The export folder's manifest.json: every file (size, sha256, input/output layout and
quantization), the preprocessing a phone must repeat (CFA packing, black/white level,
k-sigma map to the anchor noise level and back), how to tile frames of any size exactly
(``tiling``), the valid noise range, and validation.

A bundle may hold several networks (a noise sub-range array): ``models`` is a list, and
:func:`locate` finds one network's file for a backend.
"""
from __future__ import annotations

import hashlib
from pathlib import Path

from ..data.noise import MEAN_FLOOR, READ_BAND, READ_BAND_LOW, READ_INTERCEPT, READ_SCATTER, READ_SLOPE, NoiseParams
from ..errors import FadError, fold
from ..models.registry import Checkpoint, models_dir
from ..runners.base import RESIDUAL_OUTPUT

RESIDUAL_BASE_KEY = "residual_base"  # what a quantized file's residual is added to: rule and input grid
from ..runners.tiling import BORDER, TileSpec, arch_tile_spec

MANIFEST = "manifest.json"
FORMAT = "fad-deploy-export/1"
FILE_SUFFIX = {  # backend -> file name suffix after the model name
    "tflite-int8": ".int8.tflite",
    "tflite-int16": ".int16.tflite",  # 16x8: int8 weights, int16 activations
    "tflite-fp32": ".fp32.tflite",
    "onnx-int8": ".int8.onnx",
    "onnx-fp32": ".fp32.onnx",
    "torch-int8": ".int8.pt",  # the quantized checkpoint (PyTorch fake-quant reference)
}
TILING_KEY = "tiling"  # per model entry: {"tile": [h, w], "margin", "align", "rule"}; absent in older bundles
TILING_RULE = (
    f"Mirror {BORDER} pixels of the packed frame onto each of its sides (reflection about the edge pixels, as "
    "numpy.pad's 'reflect'; cropped off the output), so that the network's zero padding falls outside the "
    "image; not where the mirrored frame would need tiles with no core (below), as a file exported at a small"
    " fixed input runs a frame that fits it. Then replicate-pad the frame on the bottom/right to a multiple "
    "of align. Along each axis, tiles are tile long, or the padded length where that is shorter (a TFLite "
    "file runs any multiple of align once its input is resized; a model that cannot be resized gets the frame"
    " padded up to the tile instead). Core k is [k * c, (k + 1) * c) with c = tile - 2 * margin, clipped to "
    "the frame; its tile starts margin before it (the first at 0, the last shifted to end at the border). "
    "Keep each tile's core and crop the padding: the output equals one run on the whole padded frame."
)


def default_export_dir(name: str) -> Path:
    """export/<model>/ next to the shipped models/ folder."""
    return models_dir().parent / "export" / name


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def file_record(folder: Path, name: str, info: dict) -> dict:
    path = folder / name
    return {"file": name, "bytes": path.stat().st_size, "sha256": sha256(path), **info}


def preprocessing(ckpt: Checkpoint) -> dict:
    """What turns a camera RAW frame into the network input and the output back (k-sigma,
    PMRID): the same steps as :mod:`fad_deploy.runners.base`."""
    a = ckpt.anchor
    return {
        "cfa": "RGGB",
        "packing": "(N, 4, h, w) planes R = raw[0::2, 0::2], Gr = raw[0::2, 1::2], Gb = raw[1::2, 0::2], "
                   "B = raw[1::2, 1::2]; other CFA patterns are first cropped by one row/column to RGGB",
        "normalisation": "x = (raw - black_level) / (white_level - black_level): black level (per CFA plane) "
                         "subtracted, white level = sensor saturation, so x is ~[0, 1] (noise may go below 0); "
                         "no clipping before the network",
        "noise_model": "var(x) = a * x + b (a: shot, b: read), in the normalised units above",
        "anchor": {"shot": a.shot, "read": a.read},
        "k_sigma_forward": "u = a_A * (x / a + b / a^2) - b_A / a_A   (a_A, b_A: anchor shot, read)",
        "k_sigma_inverse": "x_hat = a * (y / a_A + b_A / a_A^2) - b / a, then clip to [0, 1]",
        "valid_noise": {"shot_min": ckpt.shot_range[0], "shot_max": ckpt.shot_range[1],
                        "read": f"trained with log b = {READ_SLOPE} log a + {READ_INTERCEPT} "
                                f"+ N(0, {READ_SCATTER}); other b work through the k-sigma map, but where b is "
                                f"outside k L(a) for k from {READ_BAND_LOW:g} to {READ_BAND:g}, L(a) = "
                                f"exp({READ_INTERCEPT}) a^{READ_SLOPE}, run the map at the a' solving a' m + k L(a') "
                                f"= a m + b, b' = k L(a'), k the nearer edge (m: the frame's mean x, at least "
                                f"{MEAN_FLOOR:g}; one a' does, found by bisection): with more read noise the map's "
                                "1/a scale leaves the trained inputs far behind, with less a dark frame sits under "
                                "them"},
        "input_value_range": {"min": anchor_value(0.0, ckpt, low_noise=False),
                              "max": anchor_value(1.0, ckpt, low_noise=True),
                              "note": "u grows with a_A / a: at the lowest noise of the range the "
                                      "network sees up to this value for white"},
    }


def tiling_record(ckpt: Checkpoint, tile: tuple[int, int]) -> dict:
    """The model's ``tiling`` entry: the tile size its readers use (a fixed-size file's input)
    and the measured margin and alignment that make tiled output equal to a whole-frame run."""
    spec = arch_tile_spec(ckpt.arch, ckpt.config)
    if min(tile) <= 2 * spec.margin:
        raise FadError(f"input size {tile[0]}x{tile[1]}: tiles of {ckpt.name} need more than twice its receptive-field "
                       f"margin of {spec.margin} packed pixels per side (at least {spec.smallest_tile})")
    return {"tile": list(tile), "margin": spec.margin, "align": spec.align, "rule": TILING_RULE}


DESCRIBED_DIGITS = 6  # significant digits of figures that describe, not compute (the same bytes on every CPU)


def anchor_value(x: float, ckpt: Checkpoint, low_noise: bool) -> float:
    """The network input for RAW value ``x`` at the top (or bottom) of the model's noise range,
    to :data:`DESCRIBED_DIGITS` (numpy's exp and log differ in the last bit between SIMD paths)."""
    from ..data.noise import read_from_shot, to_anchor

    shot = ckpt.shot_range[0] if low_noise else ckpt.shot_range[1]
    value = float(to_anchor(x, NoiseParams(shot, float(read_from_shot(shot))), ckpt.anchor))
    return float(f"{value:.{DESCRIBED_DIGITS}g}")


# ---- reading -------------------------------------------------------------------------------------

def read_bundle(folder: Path) -> dict:
    from ..nsma.select import read_manifest

    path = folder / MANIFEST
    if not path.is_file():
        raise FadError(f"{folder}: no {MANIFEST}: not a fad-export folder")
    manifest = read_manifest(path)
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT or not manifest.get("models"):
        raise FadError(f"{path}: not a fad-export manifest ({FORMAT})")
    return manifest


def pick_model(manifest: dict, model: str | None, where: Path) -> dict:
    entries = manifest["models"]
    if model is None:
        if len(entries) > 1:
            raise FadError(f"{where}: holds {len(entries)} models ({fold(e['name'] for e in entries)}); name one")
        return entries[0]
    for e in entries:
        if e["name"] == model:
            return e
    raise FadError(f"{where}: no model {model!r} (has {fold((e['name'] for e in entries), model)})")


def entry_outputs_residual(entry: dict) -> bool:
    """Whether a model entry's files output the residual (absent in bundles from before)."""
    return entry.get("output") == RESIDUAL_OUTPUT


def entry_base_grid(entry: dict, backend: str) -> dict | None:
    """A quantized file's input grid (the entry's ``residual_base``): an int8 file's, onto whose
    quantized input the residual is added, or a 16x8 file's, which names its input map; None
    for float files and for entries without one (the residual goes onto the input)."""
    base = entry.get(RESIDUAL_BASE_KEY)
    return base["input_grid"] if base and backend.rpartition("-")[2] in base else None


def entry_tiling(entry: dict, where) -> TileSpec:
    """A model entry's exact tiling; bundles from before the ``tiling`` entry get it measured
    on the entry's architecture."""
    tiling = entry.get(TILING_KEY)
    if tiling is None:
        return arch_tile_spec(entry["arch"], entry["config"])
    try:
        spec = TileSpec(int(tiling["margin"]), int(tiling["align"]))
    except (KeyError, TypeError, ValueError) as e:
        raise FadError(f"{where}: {entry['name']}: {TILING_KEY!r} needs integer 'margin' and 'align' ({e!r})")
    if spec.align < 1 or spec.margin < 0 or spec.margin % spec.align:
        raise FadError(f"{where}: {entry['name']}: {TILING_KEY!r} needs align >= 1 and a margin that is a "
                       f"non-negative multiple of it, got margin {spec.margin}, align {spec.align}")
    return spec


def entry_source(entry: dict) -> str:
    """The name of the checkpoint a model entry was exported from (a shipped model's name)."""
    return Path(entry.get("source", {}).get("checkpoint") or entry["name"]).stem


def entry_anchor(entry: dict) -> NoiseParams:
    a = entry["preprocessing"]["anchor"]
    return NoiseParams(float(a["shot"]), float(a["read"]))


# which file of a model runs it (the sub-range table's "file"), first exported first
FILE_PREFERENCE = ("tflite-int8", "tflite-int16", "tflite-fp32", "onnx-int8", "onnx-fp32")
INT16_FILE = "tflite-int16"  # a 16x8 file's backend
INT16_FOLDER_SUFFIX = "-int16"  # fad-export writes 16x8 files beside the int8 bundle: export/<model>-int16/


def default_folder_for(name: str, backend: str) -> Path:
    """The export folder fad-export writes ``backend``'s file of model ``name`` to by default."""
    return default_export_dir(name + (INT16_FOLDER_SUFFIX if backend == INT16_FILE else ""))


def export_hint(name: str | None, backend: str) -> str:
    """The fad-export command that makes ``backend``'s file of model ``name`` (None: of the array)."""
    how = "--activations int16 --target tflite" if backend == INT16_FILE else "--target all"
    return " ".join(["fad-export", *([str(name)] if name else []), "--int8", how])


def locate_file(model_or_export_dir: str | Path, backend: str, model: str | None = None) -> tuple[Path, dict, dict]:
    """(file, model entry, file record) of ``backend`` in an export folder, or for a file
    inside one. A checkpoint path or shipped name looks in its default export folder."""
    p = Path(model_or_export_dir)
    if p.is_file() and p.suffix != ".pt":
        folder, wanted = p.parent, p.name
    else:
        folder, wanted = p, None
        if not p.is_dir():
            name = p.stem if p.suffix == ".pt" else p.name
            folder = default_folder_for(name, backend)
            if not folder.is_dir():
                raise FadError(f"{p}: no export folder {folder} for backend {backend} "
                               f"(run: {export_hint(p if p.suffix == '.pt' else name, backend)})")
    manifest = read_bundle(folder)
    if wanted is not None:
        for entry in manifest["models"]:
            for b, rec in entry["files"].items():
                if rec["file"] == wanted:
                    if b != backend:
                        raise FadError(f"{p}: is the {b} model, not {backend}")
                    return checked(p, rec), entry, rec
        raise FadError(f"{p}: not listed in {folder / MANIFEST}")
    entry = pick_model(manifest, model, folder)
    if backend not in entry["files"]:
        raise FadError(f"{folder}: no {backend} file for {entry['name']} (has {', '.join(entry['files'])})")
    rec = entry["files"][backend]
    path = folder / rec["file"]
    if not path.is_file():
        raise FadError(f"{path}: listed in {MANIFEST} but missing")
    return checked(path, rec), entry, rec


def checked(path: Path, record: dict) -> Path:
    """``path``, once its bytes are the file its manifest ``record`` lists (bundles from before
    the sha256 record are taken as they are)."""
    if "sha256" in record and sha256(path) != record["sha256"]:
        raise FadError(f"{path}: not the file {MANIFEST} lists (its sha256 differs): changed after the export; "
                       "export it again")
    return path


def locate(model_or_export_dir: str | Path, backend: str, model: str | None = None) -> tuple[Path, NoiseParams]:
    """The file of ``backend`` and the anchor noise level it expects."""
    path, entry, _ = locate_file(model_or_export_dir, backend, model)
    return path, entry_anchor(entry)
