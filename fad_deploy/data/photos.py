"""Clean-image sources: a folder of the user's photos, real photos fetched from
Debian packages (``fad-data fetch``) and scikit-image's bundled photos (tests).
"""
from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import warnings
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np
from PIL import Image, UnidentifiedImageError

from ..errors import FadError, count

PHOTO_SUFFIXES = {".jpg", ".jpeg", ".png", ".tif", ".tiff"}

# Debian packages holding real photographs, and which of their files are photos (not graphics).
# The split keeps evaluation honest: the "test" photos are never used for training.
DEBIAN_PHOTOS = {
    "lomiri-wallpapers-16.04": {"split": "train", "globs": ["usr/share/backgrounds/*.jpg"]},
    "plasma-workspace-wallpapers": {
        "split": "train",
        "largest_only": True,  # each wallpaper comes at many resolutions: keep the largest
        "globs": [
            f"usr/share/wallpapers/{name}/contents/images/*"
            for name in ("BytheWater", "ColdRipple", "ColorfulCups", "DarkestHour", "EveningGlow", "FallenLeaf",
                         "Grey", "Kite", "OneStandsOut", "Path", "summer_1am", "Volna")
        ],
    },
    "mate-backgrounds": {"split": "test", "globs": ["usr/share/backgrounds/mate/nature/*.jpg"]},
}
SKIMAGE_PHOTOS = ("astronaut", "chelsea", "coffee", "rocket", "stereo_motorcycle")


def default_cache_dir() -> Path:
    """$FAD_CACHE (when set and not empty), else ~/.cache/fad-deploy (the account's home folder
    where HOME is empty, not the current folder)."""
    if os.environ.get("FAD_CACHE"):
        return Path(os.environ["FAD_CACHE"])
    import pwd

    return Path(os.environ.get("HOME") or pwd.getpwuid(os.getuid()).pw_dir) / ".cache" / "fad-deploy"


DENOISED_SUFFIX = "-denoised"  # fad-denoise's outputs: <name>-denoised.dng / .npz / .png


def left_out(relative: Path) -> bool:
    """Whether a file of an input folder (``relative`` to it) is no input: hidden, or inside a hidden
    folder (such as a killed writer's temporary file), or an output of fad-denoise."""
    return relative.stem.endswith(DENOISED_SUFFIX) or any(part.startswith(".") for part in relative.parts)


def list_photos(folder: str | Path) -> list[Path]:
    """All photos in a folder (recursively, through links to folders too), sorted; a clear error if
    there are none. Hidden files and folders (a killed writer's temporary file) and fad-denoise's
    previews (<name>-denoised.png: denoised, not clean) are skipped, with a warning that counts them."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FadError(f"{folder}: not a folder of photos")
    found = [p for p in files_in(folder) if p.suffix.lower() in PHOTO_SUFFIXES]
    photos = [p for p in found if not left_out(p.relative_to(folder))]
    if len(photos) < len(found):
        warnings.warn(f"{folder}: skipped {count(len(found) - len(photos), 'image file')} hidden or denoised "
                      f"(<name>{DENOISED_SUFFIX}.*)")
    if not photos:
        raise FadError(f"{folder}: no photos found (looked for {', '.join(sorted(PHOTO_SUFFIXES))})")
    return photos


def files_in(folder: Path) -> list[Path]:
    """Every file under ``folder``, sorted, following links to folders: each folder once (by the
    first path in sorted order), and none that holds ``folder`` (a link back up is no loop)."""
    found, seen, top = [], set(), Path(os.path.realpath(folder))
    for root, dirs, files in os.walk(folder, followlinks=True):
        real = os.path.realpath(root)
        if real in seen or (Path(root) != Path(folder) and top.is_relative_to(real)):
            dirs[:] = []
            continue
        seen.add(real)
        dirs.sort()
        found += [Path(root) / f for f in files if os.path.isfile(os.path.join(root, f))]
    return sorted(found)


def load_photo(path: str | Path, downscale: int = 1, max_side: int | None = None) -> np.ndarray:
    """Read a photo as float32 RGB in [0, 1], optionally box-downscaled.

    Downscaling by 2 or more averages away JPEG blocking and the camera's own noise and
    demosaicing, so the unprocessed image is a cleaner stand-in for a RAW ground truth.
    Photos are prepared at 8 bits per channel: Pillow reads 16-bit colour as its high bytes,
    and 16-bit greyscale is read the same way, so the 8-bit and 16-bit versions of a photo
    give the same image; float TIFFs (values in [0, 1]) and the TIFFs Pillow cannot read
    (float colour, 16-bit with extra channels) are read by tifffile and rounded the same way.
    Photos beyond Pillow's decompression-bomb limit are an error.
    """
    path = Path(path)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # large photos are downscaled next
            with Image.open(path) as im:
                im.load()
                if im.mode.startswith("I") or im.mode == "F":  # 16-bit or float greyscale
                    im = rgb8(np.asarray(im), path)
                im = im.convert("RGB")
    except Image.DecompressionBombError as e:
        raise FadError(f"{path}: too large to read ({e})")
    except UnidentifiedImageError as e:
        if path.suffix.lower() not in TIFF_SUFFIXES:
            raise FadError(f"{path}: cannot read photo ({e})")
        im = rgb8(tiff_values(path), path)
    except (OSError, ValueError) as e:
        raise FadError(f"{path}: cannot read photo ({e})")
    if (size := capped(im.size, downscale, max_side)) != im.size:
        im = im.resize(size, Image.BOX)
    if downscale > 1:
        im = im.reduce(downscale)
    return np.asarray(im, dtype=np.float32) / 255.0


TIFF_SUFFIXES = {".tif", ".tiff"}


def tiff_values(path: Path) -> np.ndarray:
    """A TIFF's first image as tifffile reads it: (h, w) or (h, w, channels)."""
    import tifffile

    try:
        with tifffile.TiffFile(path) as tf:
            page = tf.pages.first
            if page.imagewidth * page.imagelength > 2 * Image.MAX_IMAGE_PIXELS:  # Pillow's decompression-bomb bound
                raise FadError(f"{path}: too large to read ({page.imagewidth}x{page.imagelength} pixels)")
            values = tf.series[0].asarray()
    except (tifffile.TiffFileError, OSError, ValueError, IndexError, KeyError) as e:
        raise FadError(f"{path}: cannot read photo ({e})")
    if values.ndim == 3 and values.shape[0] < min(values.shape[1:], default=0) and values.shape[0] <= 4:
        values = np.moveaxis(values, 0, -1)  # planes stored one after another
    return values


def tiff_size(path: Path) -> tuple[int, int] | None:
    """(width, height) of a TIFF's first image from its header (None where tifffile cannot read it)."""
    import tifffile

    try:
        with tifffile.TiffFile(path) as tf:
            page = tf.pages.first
            return int(page.imagewidth), int(page.imagelength)
    except (tifffile.TiffFileError, OSError, ValueError, IndexError, KeyError):
        return None


def rgb8(values: np.ndarray, path: Path) -> Image.Image:
    """An 8-bit RGB image of a photo's values, (h, w) or (h, w, 1 to 4): grey or colour, alpha
    dropped; unsigned integers by their high byte, floats in [0, 1] rounded."""
    values = values[..., None] if values.ndim == 2 else values
    if values.ndim != 3 or not 1 <= values.shape[-1] <= 4:
        raise FadError(f"{path}: an image of shape {values.shape}: a photo has 1 (grey), 2 (grey and alpha), 3 (RGB) "
                       "or 4 (RGBA) channels")
    values = values[..., :1] if values.shape[-1] < 3 else values[..., :3]
    if np.issubdtype(values.dtype, np.floating):
        low, high = float(np.min(values)), float(np.max(values))
        if not (0 <= low and high <= 1):  # (NaN fails too)
            raise FadError(f"{path}: float values from {low:g} to {high:g}: a float photo holds values in [0, 1]")
        values = np.rint(values * 255)
    elif np.issubdtype(values.dtype, np.unsignedinteger):
        values = values >> (8 * values.dtype.itemsize - 8)
    elif np.issubdtype(values.dtype, np.signedinteger):  # Pillow's 32-bit mode I: 16-bit greyscale
        values = np.clip(values, 0, 65535) >> 8
    else:
        raise FadError(f"{path}: {values.dtype} values: a photo holds 8- or 16-bit integers or floats in [0, 1]")
    return Image.fromarray(np.repeat(values, 3 // values.shape[-1], axis=-1).astype(np.uint8), "RGB")


def capped(size: tuple[int, int], downscale: int, max_side: int | None) -> tuple[int, int]:
    """A photo's (width, height) resized so that, after ``downscale``, its long side is at most
    ``max_side``; unchanged where it fits already."""
    if not max_side or max(size) <= max_side * downscale:
        return size
    scale = max_side * downscale / max(size)
    return max(1, round(size[0] * scale)), max(1, round(size[1] * scale))


def prepared_shape(path: Path, downscale: int, max_side: int | None) -> tuple[int, int] | None:
    """(height, width) of the photo :func:`load_photo` makes of ``path``, from its header alone
    (None where it cannot be read: loading it says why)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # (loading it says what is too large)
            with Image.open(path) as im:
                size = im.size
    except UnidentifiedImageError:
        size = tiff_size(path) if path.suffix.lower() in TIFF_SUFFIXES else None
        if size is None:
            return None
    except (OSError, ValueError, Image.DecompressionBombError):
        return None
    w, h = (-(-side // downscale) for side in capped(size, downscale, max_side))  # reduce() rounds up
    return h, w


def smaller_than(side: int, skipped: list[str]) -> str:
    """How the photos ``skipped`` (each "name (hxw)") are named as too small for a crop of ``side``
    photo pixels (a packed RAW crop of half that)."""
    return (f"the {side}x{side} photo pixels of a packed {side // 2}x{side // 2} crop (sizes height x width, after "
            f"any downscaling): {', '.join(skipped)}")


def large_enough(images: Iterable[tuple[str, np.ndarray]], side: int) -> Iterator[tuple[str, np.ndarray]]:
    """The (name, image) pairs of ``images`` at least ``side`` x ``side`` pixels.

    The others are skipped with one warning naming them all (once ``images`` is used up);
    none large enough is an error.
    """
    used, skipped = 0, []
    for name, image in images:
        h, w = image.shape[:2]
        if h >= side and w >= side:
            used += 1
            yield name, image
        else:
            skipped.append(f"{name} ({h}x{w})")
    what = smaller_than(side, skipped)
    if not used:
        raise FadError(f"no photo is large enough for {what}" if skipped else "no photos to take crops from")
    if skipped:
        warnings.warn(f"skipped {len(skipped)} photo{'s' if len(skipped) > 1 else ''} smaller than {what}")


def skimage_photo(name: str) -> np.ndarray:
    """A photo bundled with scikit-image, float32 RGB in [0, 1] with even sizes."""
    from skimage import data

    if name not in SKIMAGE_PHOTOS:
        raise FadError(f"unknown scikit-image photo {name!r}: choose from {', '.join(SKIMAGE_PHOTOS)}")
    img = getattr(data, name)()
    if isinstance(img, tuple):  # stereo pairs: take the left view
        img = img[0]
    if img.ndim == 2:
        img = np.repeat(img[..., None], 3, axis=-1)
    img = img[..., :3].astype(np.float32) / 255.0
    h, w = img.shape[0] // 2 * 2, img.shape[1] // 2 * 2
    return np.ascontiguousarray(img[:h, :w])


def unpack_debian_package(pkg: str, tmp: Path) -> Path:
    """``apt-get download`` one package into ``tmp`` and unpack it there with ``dpkg -x``
    (nothing is installed); returns the unpacked tree's root."""
    run = subprocess.run(["apt-get", "download", pkg], cwd=tmp, capture_output=True, text=True)
    debs = list(tmp.glob(f"{pkg}_*.deb"))
    if run.returncode != 0 or not debs:
        last = (run.stderr.strip().splitlines() or ["no .deb produced"])[-1]
        raise FadError(f"apt-get download {pkg} failed: {last}")
    unpacked = tmp / pkg
    subprocess.run(["dpkg", "-x", str(debs[0]), str(unpacked)], check=True, capture_output=True)
    return unpacked


def package_photos(unpacked: Path, spec: dict) -> list[Path]:
    """The photos of an unpacked package that its DEBIAN_PHOTOS entry ``spec`` keeps."""
    kept = []
    for pattern in spec["globs"]:
        matches = sorted(unpacked.glob(pattern), key=lambda p: p.stat().st_size)
        kept += matches[-1:] if spec.get("largest_only") else matches
    return kept


def fetch_debian_photos(dest: str | Path, packages=None, progress=print) -> dict[str, list[Path]]:
    """Download the photo packages with ``apt-get download`` and unpack them with ``dpkg -x``.

    Nothing is installed on the system. Photos land in ``dest/<split>/<package>/``.
    Returns {split: [photo paths]}.
    """
    dest = Path(dest)
    packages = list(packages or DEBIAN_PHOTOS)
    for tool in ("apt-get", "dpkg"):
        if shutil.which(tool) is None:
            raise FadError(f"{tool} not found: `fad-data fetch` needs Debian's apt; use --images with your own photos")
    found: dict[str, list[Path]] = {}
    with tempfile.TemporaryDirectory(prefix="fad-fetch-") as tmp:
        tmp = Path(tmp)
        for pkg in packages:
            if pkg not in DEBIAN_PHOTOS:
                raise FadError(f"unknown photo package {pkg!r}: choose from {', '.join(DEBIAN_PHOTOS)}")
            spec = DEBIAN_PHOTOS[pkg]
            out_dir = dest / spec["split"] / pkg
            if out_dir.is_dir() and any(out_dir.iterdir()):
                progress(f"{pkg}: already in {out_dir}")
            else:
                progress(f"{pkg}: downloading with apt-get")
                unpacked = unpack_debian_package(pkg, tmp)
                staging = dest / spec["split"] / f".{pkg}.part"
                shutil.rmtree(staging, ignore_errors=True)
                staging.mkdir(parents=True)
                for src in package_photos(unpacked, spec):
                    name = src.relative_to(unpacked).as_posix().replace("/", "_")
                    shutil.copy2(src, staging / name)
                shutil.rmtree(out_dir, ignore_errors=True)
                staging.rename(out_dir)
            found.setdefault(spec["split"], []).extend(list_photos(out_dir))
    return found
