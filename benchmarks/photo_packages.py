"""Issue 19's data lever: which Debian packages hold real photographs to train on? Each
candidate package is downloaded and unpacked (nothing installed, as `fad-data fetch` does),
and its raster images at least MIN_SIDE pixels on the short side are listed with their sizes
and shown as thumbnails on one contact sheet, beside the photos fad-data already fetches
for training.
Whether a set is photographs (camera images: texture and noise everywhere) or graphics
(renders, gradients, logos) is then read off the sheet.

    python benchmarks/photo_packages.py [--packages PKG ...]

Writes benchmarks/results/photo_packages.{md,json,jpg}. Never list the evaluation-reserved
lomiri-wallpapers-20.04 (nor lomiri-wallpapers, which depends on it) here.
"""
from __future__ import annotations

import argparse
import tempfile
import warnings
from pathlib import Path

from PIL import Image, ImageDraw, UnidentifiedImageError

from fad_deploy.data.photos import DEBIAN_PHOTOS, package_photos, unpack_debian_package
from fad_deploy.fileio import write_json, write_text

RESULTS = Path(__file__).parent / "results"
CANDIDATES = ("gnome-backgrounds", "ukui-wallpapers", "sway-backgrounds", "cinnamon-desktop-data",
              "debian-edu-artwork")
RASTER = {".jpg", ".jpeg", ".png", ".webp", ".tif", ".tiff"}
MIN_SIDE = 512  # smaller files are icons and previews
THUMB = (192, 120)
PER_ROW = 8


def images_of(paths: list[Path]) -> list[tuple[Path, tuple[int, int]]]:
    """The raster images among ``paths`` at least MIN_SIDE on the short side, with their sizes."""
    found = []
    for path in sorted(p for p in paths if p.suffix.lower() in RASTER and p.is_file()):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", Image.DecompressionBombWarning)
                with Image.open(path) as im:
                    size = im.size
        except (UnidentifiedImageError, OSError):
            continue
        if min(size) >= MIN_SIDE:
            found.append((path, size))
    return found


def thumbnail(path: Path) -> Image.Image:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        with Image.open(path) as im:
            im.draft("RGB", THUMB)  # JPEGs decode at a fraction of their size
            im = im.convert("RGB")
            im.thumbnail(THUMB)
            return im


def contact_sheet(rows: list[tuple[str, list[Path]]]) -> Image.Image:
    """One labelled block of thumbnails per package (PER_ROW a line)."""
    label_h, (w, h) = 18, THUMB
    lines = [(pkg, paths[i:i + PER_ROW]) for pkg, paths in rows for i in range(0, len(paths), PER_ROW)]
    sheet = Image.new("RGB", (PER_ROW * w, len(lines) * (h + label_h)), "white")
    draw = ImageDraw.Draw(sheet)
    for line, (pkg, paths) in enumerate(lines):
        y = line * (h + label_h)
        draw.text((4, y + 3), pkg, fill="black")
        for col, path in enumerate(paths):
            sheet.paste(thumbnail(path), (col * w, y + label_h))
    return sheet


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--packages", nargs="+", default=list(CANDIDATES), metavar="PKG")
    args = p.parse_args(argv)
    if reserved := [pkg for pkg in args.packages if pkg.startswith("lomiri-wallpapers") and pkg not in DEBIAN_PHOTOS]:
        p.error(f"--packages: {', '.join(reserved)} hold or pull in photos reserved for evaluation")
    fetched = [pkg for pkg, spec in DEBIAN_PHOTOS.items() if spec["split"] == "train"]
    found: dict[str, list[tuple[Path, tuple[int, int]]]] = {}
    roots: dict[str, Path] = {}
    with tempfile.TemporaryDirectory(prefix="fad-photo-packages-") as tmp:
        for pkg in [*fetched, *args.packages]:
            folder = Path(tmp) / pkg
            folder.mkdir()
            print(f"{pkg}: downloading", flush=True)
            root = roots[pkg] = unpack_debian_package(pkg, folder)
            paths = package_photos(root, DEBIAN_PHOTOS[pkg]) if pkg in fetched else list(root.rglob("*"))
            found[pkg] = images_of(paths)
        rows = [(f"{pkg} ({'fetched for training' if pkg in fetched else 'candidate'}, {len(imgs)} images)",
                 [path for path, _ in imgs]) for pkg, imgs in found.items() if imgs]
        contact_sheet(rows).save(RESULTS / "photo_packages.jpg", quality=80)
        listing = {pkg: [{"file": str(path.relative_to(roots[pkg])), "size": list(size)}
                         for path, size in imgs] for pkg, imgs in found.items()}
    write_json(RESULTS / "photo_packages.json", {"min_side": MIN_SIDE, "images": listing})
    table = ["| package | role | images >= %d px | sizes |" % MIN_SIDE, "|---|---|---:|---|"]
    for pkg, imgs in found.items():
        sizes = sorted({f"{w}x{h}" for _, (w, h) in imgs})
        table.append(f"| {pkg} | {'fetched (train)' if pkg in fetched else 'candidate'} | {len(imgs)} | "
                     f"{', '.join(sizes[:6])}{' ...' if len(sizes) > 6 else ''} |")
    write_text(RESULTS / "photo_packages.md", "\n".join([
        "# Debian packages as a source of training photos", "",
        f"Made by `python benchmarks/photo_packages.py --packages {' '.join(args.packages)}`: each package "
        "downloaded and unpacked as `fad-data fetch` does; its raster images listed in photo_packages.json and shown "
        "on the contact sheet below (one block per package with images, the packages fad-data fetches first).", "",
        "\n".join(table), "", "![contact sheet](photo_packages.jpg)", ""]))
    print(f"wrote {RESULTS / 'photo_packages.md'}")


if __name__ == "__main__":
    main()
