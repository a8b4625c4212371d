"""Real RAW input and output: camera files (DNG and the other formats LibRaw reads, via
rawpy), SIDD .MAT files and DND .mat files, all read into one :class:`RawImage`; and a
DNG writer for denoised results.

Every reader hands back packed RGGB planes normalised by the file's black and white
levels, the file's own CFA pattern (other patterns are unified to RGGB with
:func:`fad_deploy.data.bayer.pack_unified`, undone by :meth:`RawImage.mosaic`), and, when
the file says, its noise level function and the white balance / colour matrix for previews.
A mosaic of odd height or width gets one more row or column, a copy of the one two before
it (the same colours), which :meth:`RawImage.mosaic` drops again.
"""
from __future__ import annotations

import contextlib
import io
import os
import sys
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..checks import read_noise, shot_noise
from ..errors import FadError
from ..fileio import write_bytes
from ..native_logs import quiet_logger
from .bayer import RED_OFFSET, check_pattern, pack_unified, unpack_unified
from .noise import NoiseParams
from .unprocess import RGB2XYZ

# File signatures: MATLAB v7.3 files are HDF5 with a 512-byte MATLAB header before the HDF5 one.
HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"
HDF5_OFFSETS = (0, 512)
MAT5_SIGNATURE = b"MATLAB 5.0 MAT-file"
TIFF_SIGNATURES = (b"II*\x00", b"MM\x00*")

# TIFF/DNG tag ids (DNG 1.4 spec); SIDD metadata keeps the ones MATLAB doesn't know as UnknownTags.
CFA_REPEAT_TAG, XTRANS_REPEAT = 33421, (6, 6)  # CFARepeatPatternDim (rows, columns); Fujifilm's X-Trans pattern
NOISE_PROFILE_TAG = 51041
DNG_VERSION_TAG, CFA_PATTERN_TAG = 50706, 33422  # what makes a .tif a RAW mosaic (TIFF/EP, DNG)
PLAIN_TIFF_SUFFIXES = (".tif", ".tiff")
IMAGE_WIDTH_TAG, IMAGE_LENGTH_TAG = 256, 257
PHOTOMETRIC_TAG, PHOTOMETRIC_CFA = 262, 32803  # a TIFF/EP or DNG mosaic's PhotometricInterpretation
LIBRAW_MIN_SIDE = 22  # LibRaw calls a smaller image "not RAW" (21x32 refused, 22x22 read)
AS_SHOT_NEUTRAL_TAG = 50728
COLOR_MATRIX_TAGS = (50722, 50721)  # ColorMatrix2 (usually D65), then ColorMatrix1
DNG_CFA_CODES = "RGB"  # CFAPattern colour codes 0, 1, 2
# Tags a written DNG keeps from its source (TIFF-based files): how to show it, the camera (raw
# editors find their profile for it by UniqueCameraModel), and the crop of the area LibRaw reads
# as the visible image (DefaultCrop is relative to the ActiveArea, which that area is).
ORIENTATION_TAG = 274
BLACK_DELTA_TAGS = {50715: "BlackLevelDeltaH", 50716: "BlackLevelDeltaV"}  # black level offsets per column / row
BLACK_REPEAT_TAG, BLACK_LEVEL_TAG = 50713, 50714  # BlackLevelRepeatDim (rows, cols); BlackLevel, one value per cell
CAMERA_TAGS = {271: "Make", 272: "Model", 50708: "UniqueCameraModel"}
CROP_TAGS = {50719: "DefaultCropOrigin", 50720: "DefaultCropSize"}
WRITER = "fad-deploy"

DND_CFA = "RGGB"  # DND .mat files carry no CFA tag; override with read_raw(..., cfa=...)
NORMALISED_SLACK = 0.5  # .mat values this far outside [0, 1] mean the data is not normalised
DNG_WHITE = 65535  # full scale used when writing data that came normalised (SIDD, DND)
RATIONAL_DENOMINATOR = 1_000_000  # DNG stores matrices as rationals


@dataclass(frozen=True, eq=False)
class RawImage:
    """One Bayer RAW frame, whatever file it came from."""

    planes: np.ndarray  # (4, h, w) float32 R, Gr, Gb, B: (value - black) / (white - black)
    cfa: str  # the file's own pattern; planes were unified to RGGB from it
    black_level: tuple[float, float, float, float]  # per plane R, Gr, Gb, B, in file units
    white_level: float
    noise: NoiseParams | None = None  # variance = shot * x + read on the normalised values
    wb: tuple[float, float] | None = None  # (red gain, blue gain) relative to green
    cam2rgb: np.ndarray | None = None  # (3, 3) camera RGB -> linear sRGB, rows sum to 1
    source: str = ""
    format: str = ""
    odd: tuple[int, int] = (0, 0)  # rows, columns added at the bottom/right to make an odd mosaic even
    kept: dict | None = None  # source tags a written DNG keeps, by name (kept_tags)

    def mosaic(self, planes: np.ndarray | None = None) -> np.ndarray:
        """``planes`` (default: this image's) back in the file's own pattern and size."""
        mosaic = unpack_unified(self.planes if planes is None else planes, self.cfa)
        h, w = mosaic.shape[-2:]
        return mosaic[..., : h - self.odd[0], : w - self.odd[1]]

    @property
    def mosaic_shape(self) -> tuple[int, int]:
        """(H, W) of the file's mosaic (unification padded one row/column at each shifted side)."""
        dy, dx = RED_OFFSET[self.cfa]
        h, w = self.planes.shape[-2:]
        return 2 * h - 2 * dy - self.odd[0], 2 * w - 2 * dx - self.odd[1]

    def frame(self, image: np.ndarray) -> np.ndarray:
        """An image at the unified mosaic's size (2h, 2w, ...), e.g. an RGB preview of the planes,
        cut to the file's own frame: its size and its pixels' places."""
        dy, dx = RED_OFFSET[self.cfa]
        h, w = self.mosaic_shape
        return image[dy : dy + h, dx : dx + w]

    def shown(self, image: np.ndarray) -> np.ndarray:
        """An (H, W, ...) image of the frame turned as a viewer shows the file: its TIFF Orientation
        (1: as stored, 3: turned 180 degrees, 6 / 8: 90 clockwise / anticlockwise; 2, 4, 5, 7 mirrored)."""
        orientation = (self.kept or {}).get("Orientation", 1)
        if orientation in (5, 6, 7, 8):
            image = np.swapaxes(image, 0, 1)  # stored rows become columns
        flip_rows = orientation in (3, 4, 7, 8)
        flip_cols = orientation in (2, 3, 6, 7)
        return image[:: -1 if flip_rows else 1, :: -1 if flip_cols else 1]

    def isp_meta(self) -> dict:
        """Metadata for :func:`fad_deploy.isp.process.preview_rgb` (neutral where the file says nothing)."""
        red, blue = self.wb or (1.0, 1.0)
        cam2rgb = np.eye(3) if self.cam2rgb is None else self.cam2rgb
        return {"red_gain": red, "blue_gain": blue, "rgb_gain": 1.0, "cam2rgb": cam2rgb}


# ---- helpers shared by the readers -----------------------------------------------------

def noise_from_profile(values, source: str = "") -> NoiseParams | None:
    """DNG NoiseProfile (S, O) pairs -> NoiseParams; one pair per colour plane is averaged.

    The DNG spec defines the profile on values normalised to [0, 1] after black and white
    level, variance = S * x + O: exactly our (shot, read).
    """
    if values is None:
        return None
    v = np.ravel(np.asarray(values, dtype=np.float64))
    if v.size < 2 or v.size % 2:
        warnings.warn(f"{source}: ignoring NoiseProfile with {v.size} values (expected (S, O) pairs)")
        return None
    return checked_noise(float(v[0::2].mean()), float(v[1::2].mean()), source, "NoiseProfile")


def checked_noise(shot: float, read: float, source: str, name: str) -> NoiseParams | None:
    """A file's noise level, or None with a warning where it lies outside what fad-denoise
    accepts for values normalised to [0, 1] (the bounds of --shot-noise and --read-noise)."""
    try:
        return NoiseParams(shot_noise.check(shot), read_noise.check(read))
    except ValueError:
        warnings.warn(f"{source}: ignoring {name} with shot {shot:g} and read {read:g} (need shot: {shot_noise}; "
                      f"read: {read_noise})")
        return None


def wb_from_neutral(neutral) -> tuple[float, float] | None:
    """AsShotNeutral (camera RGB of a grey) -> (red gain, blue gain) relative to green."""
    values = np.ravel(np.asarray(neutral if neutral is not None else [], dtype=np.float64))
    if values.size != 3:
        return None
    r, g, b = values
    return (float(g / r), float(g / b)) if min(r, g, b) > 0 else None


def cam2rgb_from_xyz2cam(xyz2cam) -> np.ndarray | None:
    """DNG ColorMatrix (XYZ -> camera) -> camera -> sRGB, rows normalised as in unprocessing."""
    if xyz2cam is None:
        return None
    m = np.asarray(xyz2cam, dtype=np.float64).reshape(3, 3)
    rgb2cam = m @ RGB2XYZ
    sums = rgb2cam.sum(axis=-1, keepdims=True)
    if not np.isfinite(m).all() or np.any(np.abs(sums) < 1e-9):
        return None
    try:
        return np.linalg.inv(rgb2cam / sums)
    except np.linalg.LinAlgError:
        return None


def check_normalised(values: np.ndarray, path) -> np.ndarray:
    """Float RAW from a .mat file: finite and (roughly) within [0, 1]."""
    if values.ndim != 2:  # scipy reads MATLAB's 1x1 arrays as single values, its 1xN and Nx1 ones as vectors
        got = {0: "a single value (a 1x1 array?)", 1: f"a vector of {values.size} values (1xN or Nx1?)"}.get(
            values.ndim, f"an array of shape {values.shape}")
        raise FadError(f"{path}: expected a 2-D Bayer mosaic of at least 2x2 values, got {got}")
    if not np.issubdtype(values.dtype, np.floating):
        raise FadError(f"{path}: expected float RAW normalised to [0, 1], got dtype {values.dtype}")
    bad = int(np.size(values) - np.count_nonzero(np.isfinite(values)))
    if bad:
        raise FadError(f"{path}: RAW contains {bad} NaN or Inf values")
    lo, hi = float(values.min()), float(values.max())
    if lo < -NORMALISED_SLACK or hi > 1 + NORMALISED_SLACK:
        raise FadError(f"{path}: RAW values span {lo:.4g}..{hi:.4g}; expected data normalised to [0, 1]")
    return values


def from_mosaic(mosaic: np.ndarray, cfa: str, black_tile, white: float, source, **extra) -> RawImage:
    """Normalise a mosaic by its 2x2 black-level tile and white level and unify it to RGGB
    (an odd height or width first gets one row/column more: see the module docstring)."""
    h, w = mosaic.shape
    if h < 2 or w < 2:
        raise FadError(f"{source}: a {h}x{w} mosaic is smaller than one 2x2 Bayer block")
    odd = (h % 2, w % 2)
    mosaic = np.pad(mosaic, ((0, odd[0]), (0, odd[1])), mode="reflect")
    tile = np.asarray(black_tile, dtype=np.float64).reshape(2, 2)
    if not np.all(white > tile):
        raise FadError(f"{source}: white level {white} is not above the black level {tile.ravel().tolist()}")
    packed = pack_unified(mosaic, cfa)  # in the mosaic's own dtype: no float64 copy of the whole frame
    black_planes = pack_unified(tile, cfa)[:, 0, 0]
    planes = np.empty(packed.shape, np.float32)
    for plane, values, black in zip(planes, packed, black_planes):
        plane[...] = (values - black) / (white - black)  # in float64, one plane at a time
    return RawImage(planes, cfa, tuple(float(b) for b in black_planes), float(white), source=str(source), odd=odd,
                    **extra)


# ---- camera RAW files via LibRaw --------------------------------------------------------

@contextlib.contextmanager
def _libraw_messages():
    """LibRaw prints data errors straight to C's stderr: collect them into a list instead."""
    messages: list[str] = []
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as log:
        os.dup2(log.fileno(), 2)
        try:
            yield messages
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            log.seek(0)
            messages.extend(line.strip() for line in log.read().decode(errors="replace").splitlines())


def bayer_pattern(colors: np.ndarray, color_desc: str, source, repeat=(2, 2)) -> str:
    """LibRaw's per-pixel colour indices -> 'RGGB', 'BGGR', ...; errors for non-Bayer sensors.
    ``repeat``: the file's CFARepeatPatternDim (rows, columns), for the message."""
    h, w = colors.shape
    tile = colors[:2, :2]
    if h < 2 or w < 2 or not np.array_equal(colors, np.tile(tile, (h // 2 + 1, w // 2 + 1))[:h, :w]):
        rows, cols = repeat
        if cols != 2 and (rows, cols) != XTRANS_REPEAT:
            raise FadError(f"{source}: its CFAPattern tag repeats every {rows}x{cols} pixels, which LibRaw reads "
                           "as if it were 2 pixels wide: if the mosaic is Bayer, tag its pattern as 2x2")
        raise FadError(f"{source}: the colour filter array is not a 2x2 Bayer pattern (X-Trans or other "
                       f"sensor); only Bayer RAW is supported")
    if tile.max() >= len(color_desc):
        raise FadError(f"{source}: no colour filter array (a monochrome sensor, or a mosaic without CFAPattern "
                       "tags); only Bayer RAW is supported")
    pattern = "".join(color_desc[c] for c in tile.ravel())
    if pattern not in RED_OFFSET:
        raise FadError(f"{source}: unsupported CFA pattern {pattern} (as LibRaw reads its first 2x2 pixels; a Quad "
                       f"Bayer or another non-Bayer sensor?): expected one of {', '.join(RED_OFFSET)}")
    return pattern


def unread_black_level(tags: dict[int, object], black_tile: np.ndarray) -> str | None:
    """Why LibRaw read a black level of 0 although the BlackLevel tag holds one (LibRaw ignores a
    tag whose value count is not BlackLevelRepeatDim's cell count), or None where it did not."""
    if np.any(black_tile) or not np.any(np.ravel(tags.get(BLACK_LEVEL_TAG, 0))):  # (a rational's numerator: non-zero)
        return None
    dims = "x".join(str(int(n)) for n in np.ravel(tags.get(BLACK_REPEAT_TAG, (1, 1))))
    return f"its BlackLevel tag does not hold one value per cell of its BlackLevelRepeatDim ({dims})"


def tiff_pages(path: Path) -> list[dict[int, object]]:
    """The tags of each IFD of a TIFF-based file, its SubIFDs after them, or [] for a file that is
    not TIFF-based or whose tags cannot be read."""
    import tifffile

    try:
        with open(path, "rb") as f:
            if f.read(4) not in TIFF_SIGNATURES:
                return []
    except OSError:
        return []  # unreadable: the reader says so
    found = []
    try:
        # tifffile logs a damaged tag it skips as an error; the pixels come from LibRaw
        with quiet_logger("tifffile"), tifffile.TiffFile(path) as tf:
            pages = list(tf.pages)
            pages += [sub for page in pages for sub in (page.pages or [])]
            for page in pages:
                found.append({tag.code: tag.value for tag in page.tags.values()})
    except (tifffile.TiffFileError, OSError, ValueError, IndexError, KeyError):
        pass  # LibRaw read the pixels; a damaged tag only costs what it held
    return found


def tiff_tags(path: Path) -> dict[int, object]:
    """The tags of a TIFF-based file's IFDs and their SubIFDs (the first value of each code),
    or {} for a file that is not TIFF-based or whose tags cannot be read."""
    tags = {}
    for page in tiff_pages(path):
        for code, value in page.items():
            tags.setdefault(code, value)
    return tags


def mosaic_size(path: Path) -> tuple[int, int] | None:
    """(width, height) of the CFA image of a TIFF-based RAW file (a camera's DNG keeps a preview in
    its first IFD and the mosaic in a SubIFD), or None where it has none."""
    for page in tiff_pages(path):
        if page.get(PHOTOMETRIC_TAG) == PHOTOMETRIC_CFA:
            size = (page.get(IMAGE_WIDTH_TAG), page.get(IMAGE_LENGTH_TAG))
            return size if all(isinstance(n, int) for n in size) else None
    return None


def is_raw_tiff(path: Path) -> bool:
    """Whether a TIFF-based file holds a RAW mosaic (DNG or TIFF/EP CFA tags), not an image."""
    return bool({DNG_VERSION_TAG, CFA_PATTERN_TAG} & set(tiff_tags(path)))


def kept_tags(tags: dict[int, object], mosaic_shape: tuple[int, int]) -> dict:
    """The tags (by name) a denoised DNG keeps from its source's ``tags``, those that are sane:
    an Orientation of 1-8, camera names, and a default crop inside the (H, W) mosaic."""
    kept = {name: tags[code].strip() for code, name in CAMERA_TAGS.items()
            if isinstance(tags.get(code), str) and tags[code].strip()}
    if tags.get(ORIENTATION_TAG) in range(1, 9):
        kept["Orientation"] = int(tags[ORIENTATION_TAG])
    try:
        (x0, y0), (cw, ch) = ([round(float(v[0]) / float(v[1]) if isinstance(v, tuple) else float(v))
                              for v in _pairs(tags[code])] for code in CROP_TAGS)
    except (KeyError, TypeError, ValueError, ZeroDivisionError):
        return kept
    if min(x0, y0) >= 0 and min(cw, ch) > 0 and x0 + cw <= mosaic_shape[1] and y0 + ch <= mosaic_shape[0]:
        kept.update(DefaultCropOrigin=[x0, y0], DefaultCropSize=[cw, ch])
    return kept


def _pairs(value) -> list:
    """A crop tag's two values as tifffile gives them: numbers, or rationals as (num, den) pairs
    (flat or nested)."""
    flat = list(np.ravel(value))
    if len(flat) == 4:  # two rationals, flat
        return [(flat[0], flat[1]), (flat[2], flat[3])]
    if len(flat) != 2:
        raise ValueError(value)
    return flat


# what a file with several colours per pixel (LibRaw's Stack data) is, by its suffix
STACKED = {".dng": "a demosaiced, linear DNG", ".x3f": "a Foveon sensor's X3F", "": "e.g. Canon sRAW / mRAW, Foveon"}


def libraw_source(path: Path):
    """What rawpy opens ``path`` from: its name, which LibRaw takes as UTF-8, or, for a name that is
    not UTF-8 (bytes a file system allows, which Python keeps as surrogates), the file's bytes."""
    name = str(path)
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return io.BytesIO(path.read_bytes())
    return name


def read_libraw(path: Path) -> RawImage:
    """DNG and the camera formats LibRaw reads (CR2, NEF, ARW, ...)."""
    import rawpy

    try:
        with _libraw_messages() as messages:
            with rawpy.imread(libraw_source(path)) as raw:
                if raw.raw_type != rawpy.RawType.Flat:
                    raise FadError(f"{path}: not a Bayer mosaic: " + (
                        f"several colours per pixel ({STACKED.get(path.suffix.lower(), STACKED[''])})"
                        if raw.raw_type == rawpy.RawType.Stack else f"LibRaw reports {raw.raw_type.name} data")
                        + "; give the camera's RAW file")
                mosaic = np.array(raw.raw_image_visible)  # (a copy: LibRaw frees its own on closing)
                colors = np.array(raw.raw_colors_visible)
                desc = raw.color_desc.decode("ascii", errors="replace")
                black_by_color = np.asarray(raw.black_level_per_channel, dtype=np.float64)
                white = float(raw.white_level)
                wb = list(raw.camera_whitebalance)
                color_matrix = np.array(raw.color_matrix, dtype=np.float64)
    except rawpy.LibRawError as e:
        kind = other_file_kind(path)
        if kind:
            raise FadError(f"{path}: {kind}, not a RAW file: give a DNG or a camera's RAW file (photos become "
                           "noisy/clean RAW pairs with `fad-data synth --images`)")
        reason = e.args[0].decode(errors="replace") if e.args and isinstance(e.args[0], bytes) else str(e)
        detail = "; ".join(filter(None, [reason, *messages]))
        size = mosaic_size(path)
        if size is not None and min(size) < LIBRAW_MIN_SIDE:
            raise FadError(f"{path}: its mosaic is {size[0]}x{size[1]} (width x height): LibRaw reads no RAW image "
                           f"under {LIBRAW_MIN_SIDE} pixels a side")
        raise FadError(f"{path}: cannot read RAW file, truncated or not a supported format? ({detail})")
    for message in filter(None, messages):
        warnings.warn(f"{path}: LibRaw: {message}")
    tags = tiff_tags(path)
    repeat = tuple(int(n) for n in np.ravel(tags.get(CFA_REPEAT_TAG, (2, 2))))
    cfa = bayer_pattern(colors, desc, path, repeat if len(repeat) == 2 else (2, 2))
    varying = [name for code, name in BLACK_DELTA_TAGS.items() if np.any(np.ravel(tags.get(code, 0))[0::2])]
    if varying:  # (signed rationals: every other value a numerator)
        raise FadError(f"{path}: its black level varies by row or column ({' and '.join(varying)}), which "
                       "fad-deploy does not apply: a denoised file would change its brightness by rows or columns")
    black_tile = black_by_color[colors[:2, :2]]
    unread = unread_black_level(tags, black_tile)
    if unread:
        raise FadError(f"{path}: {unread}, so LibRaw reads its black level as 0, which would lift the denoised "
                       "file's blacks and misjudge its noise")
    red, green, blue = (wb[desc.index(c)] for c in "RGB")
    cam2rgb = color_matrix[:, [desc.index(c) for c in "RGB"]]
    profile = tags.get(NOISE_PROFILE_TAG)
    return from_mosaic(
        mosaic, cfa, black_tile, white, path,
        noise=None if profile is None else noise_from_profile(profile, str(path)),
        kept=kept_tags(tags, mosaic.shape),
        wb=(red / green, blue / green) if min(red, green, blue) > 0 else None,
        cam2rgb=cam2rgb if np.isfinite(cam2rgb).all() and np.abs(cam2rgb).sum() > 0 else None,
        format="LibRaw " + path.suffix.lstrip(".").upper(),
    )


# ---- MATLAB files: SIDD and DND -----------------------------------------------------------

def mat_kind(path: Path) -> str | None:
    """'hdf5' (MATLAB v7.3), 'mat5' or None, from the file's first bytes."""
    try:
        with open(path, "rb") as f:
            head = f.read(max(HDF5_OFFSETS) + len(HDF5_SIGNATURE))
    except OSError as e:
        raise FadError(f"{path}: cannot open ({e.strerror})")
    if any(head[o : o + len(HDF5_SIGNATURE)] == HDF5_SIGNATURE for o in HDF5_OFFSETS):
        return "hdf5"
    if head.startswith(MAT5_SIGNATURE):
        return "mat5"
    return None


def _h5_to_python(node):
    """h5py group/dataset -> nested dict / numpy array in MATLAB's orientation (h5py reads transposed)."""
    import h5py

    if isinstance(node, h5py.Group):
        return {k: _h5_to_python(v) for k, v in node.items() if not k.startswith("#")}
    value = node[()]
    return value.T if isinstance(value, np.ndarray) else value


def load_mat(path: Path) -> dict:
    """Top-level variables of a MATLAB file (v5 via scipy, v7.3 via h5py); structs become dicts."""
    kind = mat_kind(path)
    try:
        if kind == "hdf5":
            import h5py

            with h5py.File(path, "r") as f:
                return {k: _h5_to_python(v) for k, v in f.items() if not k.startswith("#")}
        if kind == "mat5":
            from scipy.io import loadmat

            return {k: v for k, v in loadmat(path, simplify_cells=True).items() if not k.startswith("__")}
    except Exception as e:  # h5py and scipy raise many types (OSError, ValueError, KeyError, ...) for bad files
        raise FadError(f"{path}: cannot read MATLAB file, truncated or damaged? ({type(e).__name__}: {e})")
    raise FadError(f"{path}: not a MATLAB .mat file (no v5 or v7.3/HDF5 header)")


def _unknown_tags(meta) -> dict[int, np.ndarray]:
    """{tag id: value} from MATLAB imfinfo-style UnknownTags, in the struct and its SubIFDs."""
    found: dict[int, np.ndarray] = {}
    if not isinstance(meta, dict):
        return found
    tags = meta.get("UnknownTags")
    for tag in tags if isinstance(tags, list) else [tags]:
        if isinstance(tag, dict) and "ID" in tag and "Value" in tag:
            found.setdefault(int(np.ravel(tag["ID"])[0]), np.ravel(tag["Value"]))
    subs = meta.get("SubIFDs")
    for sub in subs if isinstance(subs, list) else [subs]:
        for k, v in _unknown_tags(sub).items():
            found.setdefault(k, v)
    return found


def _tag(meta: dict, tags: dict, name: str, tag_ids) -> np.ndarray | None:
    """A DNG field from SIDD metadata: the named struct field, else the UnknownTags entry."""
    if name in meta:
        return np.ravel(meta[name])
    return next((tags[t] for t in tag_ids if t in tags), None)


def _color_matrix(meta: dict, tags: dict) -> np.ndarray | None:
    """The first 3x3 XYZ -> camera matrix among ColorMatrix2 and ColorMatrix1."""
    for name, tag in zip(("ColorMatrix2", "ColorMatrix1"), COLOR_MATRIX_TAGS):
        m = _tag(meta, tags, name, [tag])
        if m is not None and m.size == 9:
            return m
    return None


def sidd_metadata_path(path: Path) -> Path:
    """SIDD keeps metadata beside the image: 0001_NOISY_RAW_010.MAT -> 0001_METADATA_RAW_010.MAT."""
    name = path.name
    for part in ("_NOISY_RAW_", "_GT_RAW_"):
        i = name.upper().find(part)
        if i >= 0:
            return path.with_name(name[:i] + "_METADATA_RAW_" + name[i + len(part):])
    return path.with_name(path.stem + "_METADATA" + path.suffix)


def read_sidd(path: Path, variables: dict, cfa: str | None) -> RawImage:
    """A SIDD RAW .MAT ('x', normalised mosaic) with the metadata file beside it."""
    meta_path = sidd_metadata_path(path)
    meta = load_mat(meta_path).get("metadata", {}) if meta_path.is_file() else {}
    tags = _unknown_tags(meta)
    if cfa is None:
        codes = _tag(meta, tags, "CFAPattern", [CFA_PATTERN_TAG])
        if codes is None:
            raise FadError(f"{path}: no CFA pattern (no metadata file {meta_path.name} with a CFAPattern); "
                           f"give one with --cfa")
        if len(codes) != 4 or not set(int(c) for c in codes) <= {0, 1, 2}:
            raise FadError(f"{meta_path}: CFAPattern {list(codes)} is not a 2x2 Bayer pattern")
        cfa = "".join(DNG_CFA_CODES[int(c)] for c in codes)
    return from_mosaic(
        check_normalised(np.asarray(variables["x"]), path), cfa, np.zeros(4), 1.0, path,
        noise=noise_from_profile(_tag(meta, tags, "NoiseProfile", [NOISE_PROFILE_TAG]), str(meta_path)),
        wb=wb_from_neutral(_tag(meta, tags, "AsShotNeutral", [AS_SHOT_NEUTRAL_TAG])),
        cam2rgb=cam2rgb_from_xyz2cam(_color_matrix(meta, tags)),
        format="SIDD .MAT",
    )


def dnd_info_noise(path: Path) -> NoiseParams | None:
    """DND's noise level function for images_raw/NNNN.mat from the dataset's info.mat."""
    import h5py

    info_path = path.parent.parent / "info.mat"
    if not (info_path.is_file() and path.stem.isdigit()):
        return None
    try:
        with h5py.File(info_path, "r") as f:
            nlf = f[f["info"]["nlf"][0][int(path.stem) - 1]]
            shot, read = float(np.ravel(nlf["a"])[0]), float(np.ravel(nlf["b"])[0])
    except Exception as e:  # info.mat is optional: a damaged one only costs the noise level
        warnings.warn(f"{info_path}: cannot read the noise level of {path.name} ({type(e).__name__}: {e})")
        return None
    return checked_noise(shot, read, str(info_path), f"the noise level of {path.name}")


def read_dnd(path: Path, variables: dict, cfa: str | None) -> RawImage:
    """A DND raw .mat ('Inoisy', normalised) with its 'nlf' struct (a, b) or the dataset's info.mat."""
    nlf = variables.get("nlf")
    if isinstance(nlf, dict) and "a" in nlf and "b" in nlf:
        a, b = np.asarray(nlf["a"]), np.asarray(nlf["b"])
        if a.dtype.kind not in "fiu" or b.dtype.kind not in "fiu":
            raise FadError(f"{path}: the noise level nlf.a, nlf.b must be numbers, got {a.dtype} and {b.dtype}")
        noise = checked_noise(float(np.mean(a)), float(np.mean(b)), str(path), "nlf")
    else:
        noise = dnd_info_noise(path)
    return from_mosaic(check_normalised(np.asarray(variables["Inoisy"]), path), cfa or DND_CFA, np.zeros(4), 1.0,
                       path, noise=noise, format="DND .mat")


# ---- one entry point ------------------------------------------------------------------------

def read_raw(path: str | os.PathLike, cfa: str | None = None) -> RawImage:
    """Read any supported RAW file. ``cfa`` sets the pattern of .mat files that lack one."""
    path = Path(path)
    if not path.is_file():
        raise FadError(f"{path}: no such RAW file")
    if cfa is not None:
        cfa = check_pattern(cfa)
    if mat_kind(path) or path.suffix.lower() == ".mat":
        variables = load_mat(path)
        if "Inoisy" in variables:
            return read_dnd(path, variables, cfa)
        if "x" in variables:
            return read_sidd(path, variables, cfa)
        raise FadError(f"{path}: MATLAB file with variables {sorted(variables)}: expected SIDD ('x') or DND "
                       f"('Inoisy') RAW")
    if path.suffix.lower() in PLAIN_TIFF_SUFFIXES and not is_raw_tiff(path):
        raise FadError(f"{path}: a TIFF image without DNG or CFA tags, not a RAW mosaic (LibRaw would read any "
                       "single-channel TIFF as one); give the camera's RAW file or a DNG")
    if cfa is not None:
        warnings.warn(f"{path}: the file records its own CFA pattern; --cfa {cfa} is for .mat files and is not used")
    return read_libraw(path)


# the first bytes of files people mistake for RAW ones, and what they are
FILE_MAGIC = ((b"\x89PNG", "a PNG image"), (b"\xff\xd8\xff", "a JPEG image"), (b"GIF8", "a GIF image"),
              (b"BM", "a BMP image"), (b"\x93NUMPY", "a NumPy .npy array"),
              (b"PK\x03\x04", "a zip archive (a fad-data synth set needs the .npz suffix)"))
TEXT_BYTES = set(range(32, 127)) | set(b"\t\n\r")


def other_file_kind(path: Path) -> str | None:
    """What a file LibRaw could not read is when its first bytes say (an image, an array, text,
    nothing), else None. (Asked only after LibRaw: it reads some RAW files behind a JPEG header.)"""
    with open(path, "rb") as f:
        head = f.read(512)
    if not head:
        return "an empty file"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "a WebP image"
    kind = next((k for magic, k in FILE_MAGIC if head.startswith(magic)), None)
    return kind or ("a text file" if set(head) <= TEXT_BYTES else None)


# ---- writing denoised results -------------------------------------------------------------

def _rationals(values) -> list[list[int]]:
    return [[int(round(v * RATIONAL_DENOMINATOR)), RATIONAL_DENOMINATOR] for v in np.ravel(values)]


def write_dng(path: str | os.PathLike, raw: RawImage, planes: np.ndarray) -> Path:
    """Write :func:`dng_bytes` to ``path``, atomically."""
    write_bytes(path, dng_bytes(raw, planes, path))
    return Path(path)


def dng_bytes(raw: RawImage, planes: np.ndarray, path: str | os.PathLike) -> bytes:
    """``planes`` (e.g. the denoised ``raw.planes``) as a 16-bit DNG in the file's own pattern,
    size and levels, with its white balance and colour matrix and the source tags it keeps
    (orientation, camera names, default crop: :func:`kept_tags`); ``path``, where it goes, names
    it in messages."""
    from numpy2dng.core import RAW2DNG
    from numpy2dng.defs import CalibrationIlluminant, PhotometricInterpretation
    from numpy2dng.dng import DNGTags, Tag

    planes = np.asarray(planes)
    if planes.shape != raw.planes.shape:
        raise FadError(f"{path}: planes of shape {planes.shape} do not match the RAW's {raw.planes.shape}")
    if not np.isfinite(planes).all():
        raise FadError(f"{path}: refusing to write planes containing NaN or Inf")
    if raw.white_level > 1:
        black_planes, white = np.asarray(raw.black_level), raw.white_level
    else:  # normalised source (SIDD, DND): spread over the 16-bit range
        black_planes, white = np.zeros(4), DNG_WHITE
    black = raw.mosaic(np.broadcast_to(black_planes[:, None, None], planes.shape))
    values = np.clip(np.rint(raw.mosaic(planes) * (white - black) + black), 0, DNG_WHITE).astype(np.uint16)
    h, w = values.shape
    if min(h, w) < LIBRAW_MIN_SIDE:
        warnings.warn(f"{path}: a {w}x{h} DNG (width x height): LibRaw-based readers, fad-deploy's own included, "
                      f"read no RAW image under {LIBRAW_MIN_SIDE} pixels a side")
    cam2rgb = np.eye(3) if raw.cam2rgb is None else np.asarray(raw.cam2rgb, dtype=np.float64)
    xyz2cam = np.linalg.inv(cam2rgb) @ np.linalg.inv(RGB2XYZ)
    red, blue = raw.wb or (1.0, 1.0)

    tags = DNGTags()
    kept = raw.kept or {}
    for tag, value in [
        (Tag.ImageWidth, w), (Tag.ImageLength, h), (Tag.RowsPerStrip, h), (Tag.Orientation, kept.get("Orientation", 1)),
        (Tag.PhotometricInterpretation, PhotometricInterpretation.Color_Filter_Array),
        (Tag.SamplesPerPixel, 1), (Tag.BitsPerSample, 16),
        (Tag.CFARepeatPatternDim, [2, 2]), (Tag.CFAPattern, [DNG_CFA_CODES.index(c) for c in raw.cfa]),
        (Tag.BlackLevelRepeatDim, [2, 2]), (Tag.BlackLevel, [int(round(b)) for b in black[:2, :2].ravel()]),
        (Tag.WhiteLevel, int(round(white))),
        (Tag.ColorMatrix1, _rationals(xyz2cam)), (Tag.CalibrationIlluminant1, CalibrationIlluminant.D65),
        (Tag.AsShotNeutral, _rationals([1.0 / red, 1.0, 1.0 / blue])),
        (Tag.Make, kept.get("Make", WRITER)), (Tag.Model, kept.get("Model", "denoised")),
        (Tag.UniqueCameraModel, kept.get("UniqueCameraModel", f"{WRITER} denoised")),
        *((getattr(Tag, name), kept[name]) for name in CROP_TAGS.values() if name in kept),
    ]:
        tags.set(tag, value)
    writer = RAW2DNG()
    writer.options(tags, str(Path(path).parent))
    return bytes(writer.convert(values))
