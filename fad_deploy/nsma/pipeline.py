"""Denoise RAW files with the model array (`fad-denoise`): read each input, find its
noise level, pick the sub-range model, denoise, and write the denoised RAW (DNG, or .npz
for `fad-data synth` sets) with an RGB preview PNG.

Every input is read and checked, and its noise level and model chosen, before anything
is written: a bad file stops the run with no outputs. Writes are atomic. A denoised set
is the input set plus "denoised", "model" (the chosen model per image) and the noise
level used ("denoised_shot", "denoised_read": the image's, or where read noise dominates
the level :func:`fad_deploy.data.noise.network_noise` runs the networks at).
"""
from __future__ import annotations

import io
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from ..checks import FolderPath, require_output
from ..data.noise import MEAN_FLOOR, READ_BAND, READ_BAND_LOW, NoiseParams, floor_level, network_noise, read_band_edge
from ..data.photos import DENOISED_SUFFIX, left_out
from ..data.raw_io import PLAIN_TIFF_SUFFIXES, dng_bytes, is_raw_tiff, read_raw
from ..data.synth import load_pairs, noise_list
from ..errors import FadError, count
from ..fileio import atomic_paths, save_npz
from ..isp.process import preview_rgb
from .array import ModelArray
from .noise_level import given_noise, noise_for
from .select import Selection, keep_share

SET_SUFFIX = ".npz"  # `fad-data synth` sets
RAW_SUFFIXES = {".dng", ".mat", ".cr2", ".cr3", ".nef", ".nrw", ".arw", ".srf", ".sr2", ".orf", ".rw2", ".pef",
                ".srw", ".raf", ".3fr", ".iiq", ".erf", ".kdc", ".dcr", ".mos", ".raw"}
# Companion files of datasets, not images: SIDD's metadata .MAT and DND's info.mat.
COMPANION_MARKERS = ("_METADATA_", "info.mat")
FOLDER_OUT = "denoised"  # default output folder inside an input folder
MONTAGE_GAP = 4  # pixels between the previews of a set
CLIPPED_WARNING = 0.5  # a RAW frame with more of its pixels at or above white is said to be (they stay as they are)
PNG_LEVEL = 1  # zlib level of the previews: a 12 MP one in 2.7 s, 11% larger than at PIL's default 6 (12 s)


@dataclass(frozen=True)
class NoiseSettings:
    """The user's noise flags (all optional; see :func:`fad_deploy.nsma.noise_level.noise_for`)."""

    shot: float | None = None
    read: float | None = None
    iso: float | None = None
    camera: str | None = None
    profiles: dict | None = None  # camera name -> CameraProfile (None: the shipped camera_profiles.json)


@dataclass
class Plan:
    """One input: where its outputs go and, per frame, its noise level and chosen model."""

    path: Path
    is_set: bool
    out: Path
    preview: Path
    noise: list[NoiseParams]
    noise_source: list[str]
    selections: list[Selection]
    runs: list[tuple[NoiseParams, float]]  # per frame, the level its model runs at and the share kept (floor_level)

    def summary(self) -> str:
        if not self.is_set:
            s = self.selections[0]  # a clamped choice's reason was a warning already
            return f"{self.path} -> {self.out}: " + (f"a={s.shot:.3g}, clamped -> {s.entry.name} (see the warning)"
                                                      if s.clamped else s.reason)
        counts: dict[str, int] = {}
        for s in self.selections:
            counts[s.entry.name] = counts.get(s.entry.name, 0) + 1
        models = ", ".join(f"{n} x{c}" for n, c in counts.items())
        n = len(self.selections)
        return (f"{self.path} -> {self.out}: {count(n, 'image')} by their noise level "
                f"({self.noise_source[0]}): {models}")


def is_input(path: Path) -> bool:
    """Whether fad-denoise takes a folder's file: a RAW file or a set (a .tif when it holds a RAW
    mosaic, not when it is an image), not a dataset's companion file."""
    suffix = path.suffix.lower()
    if any(m.lower() in path.name.lower() for m in COMPANION_MARKERS):
        return False
    return suffix in RAW_SUFFIXES | {SET_SUFFIX} or suffix in PLAIN_TIFF_SUFFIXES and is_raw_tiff(path)


def list_inputs(path: Path) -> list[Path]:
    """The input file, or the RAW files and sets directly inside a folder (:func:`is_input`),
    but not hidden files (such as a killed writer's temporary file) nor what an earlier run wrote
    beside them (<name>-denoised.*), which a warning counts."""
    if path.is_file():
        return [path]
    if not path.is_dir():
        raise FadError(f"{path}: no such file or folder")
    found = sorted(p for p in path.iterdir() if p.is_file() and is_input(p))
    files = [p for p in found if not left_out(p.relative_to(path))]
    if len(files) < len(found):
        warnings.warn(f"{path}: skipped {count(len(found) - len(files), 'file')} hidden or written by an earlier run "
                      f"(<name>{DENOISED_SUFFIX}.*); name one as the input to denoise it")
    if not files:
        raise FadError(f"{path}: no RAW files or {SET_SUFFIX} sets in this folder "
                       f"(looked for {', '.join(sorted(RAW_SUFFIXES | {SET_SUFFIX}))}, and RAW TIFFs)")
    return files


def output_paths(inputs: list[Path], source: Path, out: Path | None) -> list[tuple[Path, Path]]:
    """(denoised file, preview PNG) per input, each checked to be writable and apart from the
    others'. ``out`` is a folder, or (when it has a suffix, is no folder and was not given with a
    trailing separator) for one input a file name with the input's output suffix (.dng for RAW,
    .npz for sets)."""
    kinds = [SET_SUFFIX if p.suffix.lower() == SET_SUFFIX else ".dng" for p in inputs]
    suffix_alone = out is not None and out.name.lower() in (".dng", SET_SUFFIX)  # Path reads ".dng" as a name
    if suffix_alone and not (out.is_dir() or isinstance(out, FolderPath)):
        raise FadError(f"--out {out}: a file name needs a name before its suffix (e.g. denoised{out.name})")
    if out is not None and out.suffix and not out.is_dir() and not isinstance(out, FolderPath):
        if len(inputs) > 1:
            raise FadError(f"--out {out}: {len(inputs)} inputs need an output folder, not a file")
        if out.suffix.lower() != kinds[0]:
            raise FadError(f"--out {out}: {inputs[0].name} is written as {kinds[0]}, not {out.suffix}")
        pairs = [(out, out.with_suffix(".png"))]
    else:
        folder = Path(out) if out is not None else source / FOLDER_OUT if source.is_dir() else source.parent
        if folder.exists() and not folder.is_dir():
            raise FadError(f"--out {folder}: exists and is not a folder" if out is not None else
                           f"{folder}: exists and is not a folder (where the outputs of {source} go; give --out)")
        pairs = [(folder / f"{p.stem}{DENOISED_SUFFIX}{k}", folder / f"{p.stem}{DENOISED_SUFFIX}.png")
                 for p, k in zip(inputs, kinds)]
        stems = [p.stem for p in inputs]
        clash = [p.name for p in inputs if stems.count(p.stem) > 1]
        if clash:
            raise FadError(f"{source}: {', '.join(clash)} would overwrite each other's outputs (named "
                           f"<name>{DENOISED_SUFFIX}.*, without the input's suffix); move all but one of each name")
    for p, (o, preview) in zip(inputs, pairs):
        if o.resolve() == p.resolve():
            raise FadError(f"{o}: would overwrite the input")
        require_output(o, "file", "output")
        require_output(preview, "file", "output")
    return pairs


def set_noise(pairs: dict, settings: NoiseSettings) -> tuple[list[NoiseParams], str]:
    """A synth set's annotated noise levels, unless the user gave one for all its images."""
    given = given_noise(settings.shot, settings.read, settings.iso, settings.camera, settings.profiles)
    if given is not None:
        return [given[0]] * len(pairs["noisy"]), given[1]
    return noise_list(pairs), "annotated in the set"


def network_levels(noise: list[NoiseParams], means, source: str) -> tuple[list[NoiseParams], list[str]]:
    """Each image's level to run the networks at (:func:`fad_deploy.data.noise.network_noise`
    of its noise and mean level) and where that level came from."""
    levels, sources = [], []
    for given, mean in zip(noise, means):
        level = network_noise(given, mean)
        levels.append(level)
        x = max(float(mean), MEAN_FLOOR)  # as network_noise takes it
        at = f"the mean level x={x:.3g}" if x == mean else f"x={x:g}, the floor of the mean level ({mean:.3g})"
        above = level.shot > given.shot  # moved up from above the band, down from below it
        edge = READ_BAND if above else READ_BAND_LOW
        sources.append(source if level == given else
                       f"{source}; the image's own a={given.shot:.3g}, b={given.read:.3g}: read noise "
                       f"{'above' if above else 'below'} the band the networks run as it is ({edge:g} times UPI's "
                       f"line, {read_band_edge(given.shot, edge):.3g}), so they run at this level of equal variance "
                       f"at {at}, with b={level.read:.3g}")
    return levels, sources


def plan_input(path: Path, out: Path, preview: Path, array: ModelArray, settings: NoiseSettings,
               cfa: str | None) -> Plan:
    """Read and check one input, find its noise level(s) and model(s); writes nothing."""
    if path.suffix.lower() == SET_SUFFIX:
        pairs = load_pairs(path)
        noise, source = set_noise(pairs, settings)
        means = pairs["noisy"].mean(axis=(1, 2, 3))
    else:
        raw = read_raw(path, cfa)
        clipped = float(np.mean(raw.planes >= 1.0))
        if clipped > CLIPPED_WARNING:
            warnings.warn(f"{path}: {clipped:.0%} of the pixels are at or above the file's white level "
                          f"({raw.white_level:g}) and are kept as they are (keep_clipped): overexposed, or a wrong "
                          "white level in the file")
        n, source = noise_for(raw, settings.shot, settings.read, settings.iso, settings.camera, settings.profiles)
        noise, means = [n], [raw.planes.mean()]
    noise, sources = network_levels(noise, means, source)
    selections = [array.select(n.shot, s) for n, s in zip(noise, sources)]
    for index in sorted({s.index for s in selections}):
        array.runner(index)  # a missing or broken model fails now, before any output
    runs = [floor_level(n, m, array.table[0].shot_min) for n, m in zip(noise, means)]
    return Plan(path, path.suffix.lower() == SET_SUFFIX, out, preview, noise, sources, selections, runs)


def denoise_frames(array: ModelArray, noisy: np.ndarray, plan: Plan, low: float | None = 0.0) -> np.ndarray:
    """(N, 4, h, w) -> denoised in [``low``, 1], each frame with its chosen model at the level its
    selection runs it (its noise level, or below the array's range the range's floor with part of
    the change kept)."""
    out = np.empty_like(noisy, dtype=np.float32)
    choices = np.array([s.index for s in plan.selections])
    for index in np.unique(choices):
        frames = np.flatnonzero(choices == index)
        out[frames] = array.denoise(noisy[frames], [plan.runs[k][0] for k in frames], int(index), low)
    return keep_share(noisy, out, [w for _, w in plan.runs])


def keep_clipped(noisy: np.ndarray, denoised: np.ndarray) -> np.ndarray:
    """``denoised`` with the pixels the sensor clipped (at or above the white level, 1) as they
    were: they carry no noise, and the networks pull a clipped area below white, which the
    camera pipeline turns into grey or tinted highlights."""
    return np.where(noisy >= 1.0, noisy, denoised)


def montage(images: list[np.ndarray]) -> np.ndarray:
    """Previews of a set side by side in a near-square grid (uint8 RGB)."""
    cols = int(np.ceil(np.sqrt(len(images))))
    rows = int(np.ceil(len(images) / cols))
    h = max(im.shape[0] for im in images)
    w = max(im.shape[1] for im in images)
    sheet = np.zeros((rows * (h + MONTAGE_GAP) - MONTAGE_GAP, cols * (w + MONTAGE_GAP) - MONTAGE_GAP, 3), np.uint8)
    for k, im in enumerate(images):
        y, x = (k // cols) * (h + MONTAGE_GAP), (k % cols) * (w + MONTAGE_GAP)
        sheet[y : y + im.shape[0], x : x + im.shape[1]] = im
    return sheet


def png_bytes(rgb: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format="PNG", compress_level=PNG_LEVEL)
    return buf.getvalue()


def run_plan(plan: Plan, array: ModelArray, cfa: str | None) -> None:
    """Denoise one planned input and write its outputs, the denoised file and its preview
    together (both or neither)."""
    if plan.is_set:
        pairs = load_pairs(plan.path)
        denoised = denoise_frames(array, pairs["noisy"], plan)
        previews = [preview_rgb(d, {k: pairs[k][i] for k in ("red_gain", "blue_gain", "rgb_gain", "cam2rgb")})
                    for i, d in enumerate(denoised)]
        png = png_bytes(montage(previews))
        with atomic_paths(plan.out, plan.preview) as (out, preview):
            save_npz(out, **{**pairs, "denoised": denoised, "model": np.array([s.entry.name for s in plan.selections]),
                             "denoised_shot": np.array([n.shot for n in plan.noise], np.float32),
                             "denoised_read": np.array([n.read for n in plan.noise], np.float32)})
            preview.write_bytes(png)
    else:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the planning pass already reported this file's warnings
            raw = read_raw(plan.path, cfa)
        # values below black kept (the DNG holds them down to 0 DN): clipped, a dark area's noise would lift it
        denoised = keep_clipped(raw.planes, denoise_frames(array, raw.planes[None], plan, low=None)[0])
        png = png_bytes(raw.shown(raw.frame(preview_rgb(denoised, raw.isp_meta()))))
        with atomic_paths(plan.out, plan.preview) as (out, preview):
            out.write_bytes(dng_bytes(raw, denoised, plan.out))
            preview.write_bytes(png)


def denoise_path(source: Path, array: ModelArray, out: Path | None = None, settings: NoiseSettings = NoiseSettings(),
                 cfa: str | None = None, report=print) -> list[Plan]:
    """Denoise a file or a folder of files; ``report`` receives one line per input."""
    inputs = list_inputs(source)
    outputs = output_paths(inputs, source, out)
    plans = [plan_input(p, o, pv, array, settings, cfa) for p, (o, pv) in zip(inputs, outputs)]
    report(f"model array: {array.source} ({count(len(array.table), 'model')}, backend {array.backend})")
    for plan in plans:
        run_plan(plan, array, cfa)
        report(plan.summary())
    return plans
