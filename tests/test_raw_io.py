"""Real RAW input: DNG (written here with numpy2dng, read back through LibRaw), SIDD
.MAT (v5 and v7.3/HDF5) and DND .mat files, the DNG writer, and every bad-input error."""
from __future__ import annotations

import os
import re
import warnings

import h5py
import numpy as np
import pytest
import scipy.io as sio
from numpy2dng.core import RAW2DNG
from numpy2dng.defs import CFAPattern, PhotometricInterpretation
from numpy2dng.dng import DNGTags, Tag

from fad_deploy.data import raw_io
from fad_deploy.data.bayer import CFA_PATTERNS, RED_OFFSET, pack_unified
from fad_deploy.data.noise import NoiseParams
from fad_deploy.data.raw_io import RawImage, cam2rgb_from_xyz2cam, read_raw, write_dng
from fad_deploy.errors import FadError
from fad_deploy.isp.process import preview_rgb

WHITE = 1023
BLACK_TILE = (60, 64, 62, 66)  # per position of the 2x2 tile, row-major
XYZ2CAM = [[1.0234, -0.2969, -0.2266], [-0.5625, 1.6328, -0.0469], [-0.0703, 0.2188, 0.6406]]
CODES = {"R": 0, "G": 1, "B": 2}  # DNG CFAPattern colour codes


def rationals(values):
    return [[int(round(v * 10000)), 10000] for v in np.ravel(values)]


def make_dng(path, values, cfa="RGGB", black=BLACK_TILE, white=WHITE, noise_profile=None, neutral=None,
             color_matrix=XYZ2CAM, cfa_dim=(2, 2), cfa_codes=None, extra=()):
    """A minimal uncompressed 16-bit CFA DNG, the way a camera app would write it (``extra``:
    more (Tag, value) pairs)."""
    h, w = values.shape
    tags = DNGTags()
    for tag, value in [
        (Tag.ImageWidth, w), (Tag.ImageLength, h), (Tag.RowsPerStrip, h),
        (Tag.PhotometricInterpretation, PhotometricInterpretation.Color_Filter_Array),
        (Tag.SamplesPerPixel, 1), (Tag.BitsPerSample, 16),
        (Tag.CFARepeatPatternDim, list(cfa_dim)), (Tag.CFAPattern, cfa_codes or getattr(CFAPattern, cfa)),
        (Tag.BlackLevelRepeatDim, [2, 2]), (Tag.BlackLevel, list(black)), (Tag.WhiteLevel, white),
        (Tag.ColorMatrix1, rationals(color_matrix)), (Tag.CalibrationIlluminant1, 21),
        (Tag.Make, "Test"), (Tag.Model, "Camera"), (Tag.UniqueCameraModel, "Test Camera"), *extra,
    ]:
        tags.set(tag, value)
    if noise_profile is not None:
        tags.set(Tag.NoiseProfile, list(noise_profile))
    if neutral is not None:
        tags.set(Tag.AsShotNeutral, rationals(neutral))
    writer = RAW2DNG()
    writer.options(tags, str(path.parent))
    path.write_bytes(bytes(writer.convert(np.ascontiguousarray(values, dtype=np.uint16))))
    return path


def coded_values(h, w, cfa):
    """DN values whose hundreds digit names the colour at each pixel (R 1xx, G 2xx, B 3xx)."""
    dy, dx = RED_OFFSET[cfa]
    yy, xx = np.mgrid[:h, :w]
    red = (yy % 2 == dy) & (xx % 2 == dx)
    blue = (yy % 2 != dy) & (xx % 2 != dx)
    colour = np.where(red, 1, np.where(blue, 3, 2))
    return 100 * colour + (yy * w + xx) % 100 + 100  # R 200-299, G 300-399, B 400-499


def black_grid(h, w, tile=BLACK_TILE):
    return np.tile(np.reshape(tile, (2, 2)), (h // 2, w // 2)).astype(np.float64)


# ---- DNG via LibRaw (which ignores images under 22 pixels a side) ---------------------------

@pytest.mark.parametrize("cfa", CFA_PATTERNS)
def test_dng_all_patterns_unify_to_rggb_with_levels(tmp_path, cfa):
    values = coded_values(24, 28, cfa)
    raw = read_raw(make_dng(tmp_path / "x.dng", values, cfa))
    assert raw.cfa == cfa and raw.white_level == WHITE
    assert raw.planes.dtype == np.float32
    dy, dx = RED_OFFSET[cfa]
    assert raw.planes.shape == (4, 12 + dy, 14 + dx)
    assert raw.mosaic_shape == (24, 28)
    expected = (values - black_grid(24, 28)) / (WHITE - black_grid(24, 28))
    np.testing.assert_allclose(raw.mosaic(), expected, atol=1e-6)
    # Each packed plane holds its colour: undo the normalisation and read the hundreds digit.
    dn = raw.planes * (WHITE - np.reshape(raw.black_level, (4, 1, 1))) + np.reshape(raw.black_level, (4, 1, 1))
    assert [set(np.unique(np.rint(p) // 100).tolist()) for p in dn] == [{2}, {3}, {3}, {4}]
    # Black levels follow their pixels into the R, Gr, Gb, B planes.
    np.testing.assert_array_equal(raw.black_level, pack_unified(np.reshape(BLACK_TILE, (2, 2)), cfa)[:, 0, 0])


def test_dng_metadata_noise_profile_white_balance_colour_matrix(tmp_path):
    path = make_dng(tmp_path / "x.dng", coded_values(24, 24, "GRBG"), "GRBG", noise_profile=[1e-3, 2e-5],
                    neutral=[0.5, 1.0, 0.625])
    raw = read_raw(path)
    assert raw.noise == NoiseParams(1e-3, 2e-5)
    assert raw.wb == pytest.approx((2.0, 1.6))
    np.testing.assert_allclose(raw.cam2rgb, cam2rgb_from_xyz2cam(XYZ2CAM), atol=1e-4)  # LibRaw agrees with ours
    assert raw.format == "LibRaw DNG" and raw.source == str(path)
    meta = raw.isp_meta()
    assert preview_rgb(raw.planes, meta).shape == (2 * raw.planes.shape[1], 2 * raw.planes.shape[2], 3)


def test_dng_without_optional_tags_and_per_plane_noise_profile(tmp_path):
    raw = read_raw(make_dng(tmp_path / "plain.dng", coded_values(24, 24, "RGGB")))
    assert raw.noise is None and raw.wb is None
    assert raw.isp_meta()["red_gain"] == 1.0
    # One (S, O) pair per colour plane: averaged into one NoiseParams.
    raw = read_raw(make_dng(tmp_path / "planes.dng", coded_values(24, 24, "RGGB"),
                            noise_profile=[1e-3, 1e-5, 2e-3, 2e-5, 3e-3, 3e-5]))
    assert raw.noise.shot == pytest.approx(2e-3) and raw.noise.read == pytest.approx(2e-5)


@pytest.mark.parametrize("profile", [[-1e-3, 2e-5], [1e9, 2e-5], [1e-3, 5.0]])
def test_dng_bad_noise_profile_is_ignored_with_a_warning(tmp_path, profile):
    path = make_dng(tmp_path / "x.dng", coded_values(24, 24, "RGGB"), noise_profile=profile)
    with pytest.warns(UserWarning, match=r"NoiseProfile .*need shot: a finite number in \(0, 0\.1\]; read: "
                                         r".* in \[0, 0\.1"):
        assert read_raw(path).noise is None


def test_plain_tiff_is_not_a_raw_mosaic_and_cfa_is_for_mat_files(tmp_path):
    import tifffile

    tifffile.imwrite(tmp_path / "scan.tif", np.zeros((64, 64), np.uint16))  # LibRaw would call it RGBG
    with pytest.raises(FadError, match="scan.tif: a TIFF image without DNG or CFA tags, not a RAW mosaic"):
        read_raw(tmp_path / "scan.tif")
    dng = make_dng(tmp_path / "x.dng", coded_values(24, 24, "GRBG"), "GRBG")
    (tmp_path / "x.tif").write_bytes(dng.read_bytes())  # a DNG under a .tif name is still read
    assert read_raw(tmp_path / "x.tif").cfa == "GRBG"
    with pytest.warns(UserWarning, match="records its own CFA pattern; --cfa BGGR is for .mat files"):
        assert read_raw(dng, cfa="BGGR").cfa == "GRBG"


@pytest.mark.parametrize("content, kind", [(b"", "an empty file"), (b"ISO=100\n", "a text file"),
                                           (b"\x89PNG\r\n\x1a\n" + bytes(64), "a PNG image"),
                                           (b"\xff\xd8\xff\xe0" + bytes(64), "a JPEG image"),
                                           (b"\x93NUMPY\x01\x00" + bytes(64), "a NumPy .npy array")])
def test_files_mistaken_for_raw_are_named_for_what_they_are(tmp_path, content, kind):
    (tmp_path / "x.dng").write_bytes(content)
    with pytest.raises(FadError, match=f"x.dng: {kind}, not a RAW file: give a DNG or a camera's RAW file"):
        read_raw(tmp_path / "x.dng")


def test_a_file_name_that_is_not_utf8_is_read(tmp_path):
    """LibRaw opens a path by its UTF-8 name; 'caf\\xe9.dng' (Latin-1 bytes) has none."""
    path = make_dng(tmp_path / "x.dng", coded_values(24, 24, "GRBG"), "GRBG")
    latin1 = path.with_name(os.fsdecode(b"caf\xe9.dng"))
    path.rename(latin1)
    assert read_raw(latin1).mosaic_shape == (24, 24)


def test_mosaics_under_libraws_smallest_size_are_said_to_be(tmp_path):
    path = make_dng(tmp_path / "thin.dng", coded_values(24, 20, "RGGB"))
    with pytest.raises(FadError, match=r"thin.dng: its mosaic is 20x24 \(width x height\): LibRaw reads no RAW image "
                                       "under 22 pixels a side"):
        read_raw(path)
    import tifffile  # a camera's layout: a preview in IFD0, the mosaic in a SubIFD; sizes are the mosaic's

    dng = [(50706, "B", 4, (1, 4, 0, 0), True), (33421, "H", 2, (2, 2), True), (33422, "B", 4, (0, 1, 1, 2), True)]
    for name, mosaic, preview, message in (("tiny", (16, 18), (64, 64), "its mosaic is 18x16 (width x height)"),
                                           ("cut", (64, 96), (8, 8), "cannot read RAW file, truncated")):
        with tifffile.TiffWriter(tmp_path / f"{name}.dng") as tw:
            tw.write(np.zeros((*preview, 3), np.uint8), photometric="rgb", subfiletype=1, subifds=1, extratags=dng,
                     metadata=None)
            tw.write(np.full(mosaic, 500, np.uint16), photometric=32803, subfiletype=0, metadata=None)
        if name == "cut":
            (tmp_path / "cut.dng").write_bytes((tmp_path / "cut.dng").read_bytes()[:-6000])
        with pytest.raises(FadError, match=re.escape(message)):
            read_raw(tmp_path / f"{name}.dng")
    src = read_raw(make_dng(tmp_path / "x.dng", coded_values(24, 24, "RGGB")))
    small = RawImage(src.planes[:, :5, :], "RGGB", src.black_level, src.white_level, source="small")
    with pytest.warns(UserWarning, match=r"a 24x10 DNG \(width x height\): LibRaw-based readers"):
        write_dng(tmp_path / "small.dng", small, small.planes)


def damage_tag_type(path, tag: int) -> None:
    """Give IFD0's entry for ``tag`` an invalid TIFF data type (a little-endian file)."""
    data = bytearray(path.read_bytes())
    ifd = int.from_bytes(data[4:8], "little")
    for k in range(int.from_bytes(data[ifd:ifd + 2], "little")):
        entry = ifd + 2 + 12 * k
        if int.from_bytes(data[entry:entry + 2], "little") == tag:
            data[entry + 2:entry + 4] = (1027).to_bytes(2, "little")
            path.write_bytes(bytes(data))
            return
    raise AssertionError(f"no tag {tag} in IFD0")


def test_damaged_tag_tifffile_skips_is_not_logged(tmp_path, caplog, monkeypatch):
    path = make_dng(tmp_path / "x.dng", coded_values(24, 24, "RGGB"), noise_profile=[1e-3, 2e-5])
    damage_tag_type(path, 305)  # Software: nothing we read
    monkeypatch.setenv("FAD_VERBOSE", "0")
    raw = read_raw(path)
    assert raw.planes.shape == (4, 12, 12) and raw.noise == NoiseParams(1e-3, 2e-5)
    assert not [r for r in caplog.records if r.name == "tifffile"]
    monkeypatch.setenv("FAD_VERBOSE", "1")  # --verbose shows the library's line
    read_raw(path)
    assert any("TiffTag" in r.getMessage() for r in caplog.records if r.name == "tifffile")


def test_write_dng_round_trips_pattern_levels_and_metadata(tmp_path):
    values = coded_values(24, 32, "BGGR")
    src = read_raw(make_dng(tmp_path / "in.dng", values, "BGGR", neutral=[0.5, 1.0, 0.625]))
    out = write_dng(tmp_path / "out.dng", src, src.planes)
    back = read_raw(out)
    assert (back.cfa, back.black_level, back.white_level) == (src.cfa, src.black_level, src.white_level)
    np.testing.assert_array_equal(back.planes, src.planes)  # same DN values, bit for bit
    assert back.wb == pytest.approx(src.wb)
    np.testing.assert_allclose(back.cam2rgb, src.cam2rgb, atol=1e-4)
    # Planes that changed (a denoiser's output) come back to within half a DN.
    denoised = np.clip(src.planes * 0.9 + 0.01, 0, 1)
    back = read_raw(write_dng(tmp_path / "den.dng", src, denoised))
    step = 1.0 / (WHITE - max(BLACK_TILE))
    np.testing.assert_allclose(back.planes, denoised, atol=0.5 * step + 1e-6)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["den.dng", "in.dng", "out.dng"]  # no temp files


def test_write_dng_keeps_the_orientation_camera_and_crop_of_its_source(tmp_path):
    """A portrait shot came back sideways, with the sensor border shown and another camera's name."""
    crop = [(Tag.Orientation, 6), (Tag.DefaultCropOrigin, [2, 4]), (Tag.DefaultCropSize, [28, 18])]
    src = read_raw(make_dng(tmp_path / "in.dng", coded_values(24, 32, "RGGB"), extra=crop))
    assert src.kept == {"Make": "Test", "Model": "Camera", "UniqueCameraModel": "Test Camera", "Orientation": 6,
                        "DefaultCropOrigin": [2, 4], "DefaultCropSize": [28, 18]}
    tags = raw_io.tiff_tags(write_dng(tmp_path / "out.dng", src, src.planes))
    assert (tags[274], tags[271], tags[272], tags[50708]) == (6, "Test", "Camera", "Test Camera")
    assert (list(np.ravel(tags[50719])), list(np.ravel(tags[50720]))) == ([2, 4], [28, 18])
    outside = read_raw(make_dng(tmp_path / "bad.dng", coded_values(24, 32, "RGGB"),
                                extra=[(Tag.DefaultCropOrigin, [10, 0]), (Tag.DefaultCropSize, [28, 18])]))
    assert "DefaultCropOrigin" not in outside.kept  # a crop beyond the frame is dropped, not written


def test_shown_turns_an_image_as_its_orientation_says():
    image = np.arange(2 * 3).reshape(2, 3)
    turned = {o: RawImage(np.zeros((4, 1, 1), np.float32), "RGGB", (0.0,) * 4, 1.0,
                          kept={"Orientation": o}).shown(image) for o in range(1, 9)}
    np.testing.assert_array_equal(turned[1], image)
    np.testing.assert_array_equal(turned[3], image[::-1, ::-1])
    np.testing.assert_array_equal(turned[6], np.rot90(image, -1))  # 90 degrees clockwise to be upright
    np.testing.assert_array_equal(turned[8], np.rot90(image, 1))
    np.testing.assert_array_equal(turned[2], image[:, ::-1])
    np.testing.assert_array_equal(turned[5], image.T)


def test_write_dng_rejects_bad_planes_and_is_atomic(tmp_path, monkeypatch):
    src = read_raw(make_dng(tmp_path / "in.dng", coded_values(24, 24, "RGGB")))
    with pytest.raises(FadError, match="out.dng: planes of shape"):
        write_dng(tmp_path / "out.dng", src, src.planes[:, :2])
    with pytest.raises(FadError, match="NaN"):
        write_dng(tmp_path / "out.dng", src, np.full_like(src.planes, np.nan))

    def broken(self, image, filename="", file=None):
        raise OSError("disk full")

    monkeypatch.setattr(RAW2DNG, "convert", broken)
    with pytest.raises(OSError):
        write_dng(tmp_path / "out.dng", src, src.planes)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.dng"]


def test_bad_raw_files_give_one_clear_error(tmp_path):
    good = make_dng(tmp_path / "good.dng", coded_values(24, 24, "RGGB")).read_bytes()
    cases = {
        "truncated.dng": (good[: len(good) // 2], "truncated"),
        "junk.dng": (b"this is not a raw file" * 20, "a text file, not a RAW file"),
        "junk.nef": (b"II*\x00" + bytes(range(256)) * 2, "cannot read RAW"),
        "empty.nef": (b"", "an empty file, not a RAW file"),
    }
    for name, (data, message) in cases.items():
        (tmp_path / name).write_bytes(data)
        with pytest.raises(FadError, match=message) as e:
            read_raw(tmp_path / name)
        assert str(tmp_path / name) in str(e.value) and "\n" not in str(e.value)
    with pytest.raises(FadError, match="no such RAW file"):
        read_raw(tmp_path / "missing.dng")


@pytest.mark.parametrize("cfa", ["RGGB", "GBRG"])
def test_odd_sized_dngs_are_padded_by_a_same_colour_row_and_written_back_at_their_size(tmp_path, cfa):
    values = coded_values(23, 27, cfa)
    raw = read_raw(make_dng(tmp_path / "odd.dng", values, cfa))
    assert raw.mosaic_shape == (23, 27) and raw.odd == (1, 1)
    expected = (values - black_grid(24, 28)[:23, :27]) / (WHITE - black_grid(24, 28)[:23, :27])
    np.testing.assert_allclose(raw.mosaic(), expected, atol=1e-6)
    dn = raw.planes * (WHITE - np.reshape(raw.black_level, (4, 1, 1))) + np.reshape(raw.black_level, (4, 1, 1))
    assert [set(np.unique(np.rint(p) // 100).tolist()) for p in dn] == [{2}, {3}, {3}, {4}]  # added row: same colours
    back = read_raw(write_dng(tmp_path / "out.dng", raw, raw.planes))
    assert back.mosaic_shape == (23, 27) and back.cfa == cfa
    np.testing.assert_allclose(back.mosaic(), raw.mosaic(), atol=1e-4)


def test_non_bayer_and_too_small_mosaics_are_rejected(tmp_path):
    with pytest.raises(FadError, match="cam.dng: a 1x8 mosaic is smaller than one 2x2 Bayer block"):
        raw_io.from_mosaic(np.zeros((1, 8)), "RGGB", [0] * 4, 1023, "cam.dng")
    xtrans = [1, 1, 0, 1, 1, 2, 1, 1, 2, 1, 1, 0, 2, 0, 1, 0, 2, 1, 1, 1, 2, 1, 1, 0, 1, 1, 0, 1, 1, 2, 0, 2, 1, 2, 0, 1]
    path = make_dng(tmp_path / "xtrans.dng", np.full((36, 36), 500), cfa_dim=(6, 6), cfa_codes=xtrans)
    with pytest.raises(FadError, match="xtrans.dng: .*not a 2x2 Bayer pattern"):
        read_raw(path)
    # RGGB tagged as a 4x4 pattern: LibRaw reads a pattern 2 pixels wide (rows 0, 0, 3, 3 of RGBG), not this one
    rggb = make_dng(tmp_path / "rggb.dng", np.full((32, 32), 500), cfa_dim=(4, 4),
                    cfa_codes=[0, 1, 0, 1, 1, 2, 1, 2] * 2)
    with pytest.raises(FadError, match="rggb.dng: its CFAPattern tag repeats every 4x4 pixels, which LibRaw reads as "
                                       "if it were 2 pixels wide: if the mosaic is Bayer, tag its pattern as 2x2"):
        read_raw(rggb)


def test_bayer_pattern_rejects_non_rgb_colour_filters():
    colors = np.tile(np.array([[0, 1], [3, 2]]), (2, 2))
    assert raw_io.bayer_pattern(colors, "RGBG", "cam.raw") == "RGGB"
    with pytest.raises(FadError, match="cam.raw: unsupported CFA pattern CMGY"):
        raw_io.bayer_pattern(colors, "CMYG", "cam.raw")
    # a monochrome DNG (or one without CFAPattern tags): LibRaw's colour 6 of "GMCY" had been an IndexError
    with pytest.raises(FadError, match=r"mono.dng: no colour filter array \(a monochrome sensor"):
        raw_io.bayer_pattern(np.full((4, 4), 6), "GMCY", "mono.dng")
    with pytest.raises(FadError, match=r"quad.dng: unsupported CFA pattern RRGG \(as LibRaw reads its first 2x2 "
                                       "pixels; a Quad Bayer"):
        raw_io.bayer_pattern(np.tile(np.array([[0, 0], [1, 1]]), (2, 2)), "RGBG", "quad.dng")


def test_a_black_level_that_varies_by_row_or_column_is_refused(tmp_path, monkeypatch):
    """Averaged into one black level and left out of the denoised DNG, BlackLevelDeltaV/H had
    changed its brightness by rows; all-zero deltas change nothing."""
    path = make_dng(tmp_path / "cam.dng", np.full((32, 32), 500))
    tags = raw_io.tiff_tags(path)
    deltas = {50716: (0, 1) * 16 + (40, 1) * 16}  # BlackLevelDeltaV, SRATIONAL per row: +40 DN on the lower half
    monkeypatch.setattr(raw_io, "tiff_tags", lambda p: {**tags, **deltas})
    with pytest.raises(FadError, match=r"cam.dng: its black level varies by row or column \(BlackLevelDeltaV\)"):
        read_raw(path)
    deltas = {50715: (0, 1) * 32}  # BlackLevelDeltaH, all zero
    assert read_raw(path).planes.shape == (4, 16, 16)


@pytest.mark.parametrize("black", [[60], [60, 64, 62]])
def test_a_black_level_libraw_cannot_read_is_refused(tmp_path, black):
    """A BlackLevel of fewer values than its 2x2 BlackLevelRepeatDim has cells: LibRaw had read black as 0."""
    with pytest.raises(FadError, match=r"cam.dng: its BlackLevel tag does not hold one value per cell of its "
                                       r"BlackLevelRepeatDim \(2x2\), so LibRaw reads its black level as 0"):
        read_raw(make_dng(tmp_path / "cam.dng", coded_values(24, 28, "RGGB"), black=black))
    zero = make_dng(tmp_path / "zero.dng", coded_values(24, 28, "RGGB"), black=[0] * 4)
    assert read_raw(zero).black_level == (0,) * 4  # a black level of 0 that is one


# ---- SIDD and DND .mat files --------------------------------------------------------------

def normalised_mosaic(h=16, w=20, seed=0):
    return np.random.default_rng(seed).uniform(0.0, 1.0, (h, w))


def write_mat73(path, variables, userblock=True):
    """MATLAB v7.3: HDF5 after a 512-byte MATLAB header, arrays stored transposed (column-major)."""
    with h5py.File(path, "w", userblock_size=512 if userblock else 0) as f:
        for name, value in variables.items():
            if isinstance(value, dict):
                group = f.create_group(name)
                for k, v in value.items():
                    group[k] = np.atleast_2d(v).T
            else:
                f[name] = np.asarray(value).T
    if userblock:
        with open(path, "r+b") as f:
            f.write(b"MATLAB 7.3 MAT-file, Platform: GLNXA64".ljust(128))
    return path


def sidd_metadata(path, cfa="GRBG", noise=(2e-3, 3e-5), neutral=(0.5, 1.0, 0.8), in_subifd=False):
    tags = np.array([(raw_io.CFA_PATTERN_TAG, 0, np.array([CODES[c] for c in cfa], float)),
                     (raw_io.NOISE_PROFILE_TAG, 0, np.array(noise))],
                    dtype=[("ID", "O"), ("Offset", "O"), ("Value", "O")])
    meta = {"AsShotNeutral": np.array(neutral), "ColorMatrix2": np.ravel(XYZ2CAM)}
    if in_subifd:
        meta["SubIFDs"] = [{"UnknownTags": tags}]
    else:
        meta["UnknownTags"] = tags
    sio.savemat(path, {"metadata": meta})
    return path


@pytest.mark.parametrize("fmt", ["v7.3", "v7.3-no-header", "v5"])
def test_sidd_raw_with_metadata(tmp_path, fmt):
    mosaic = normalised_mosaic()
    path = tmp_path / "0001_NOISY_RAW_010.MAT"
    if fmt == "v5":
        sio.savemat(path, {"x": mosaic})
    else:
        write_mat73(path, {"x": mosaic}, userblock=fmt == "v7.3")
    sidd_metadata(tmp_path / "0001_METADATA_RAW_010.MAT", in_subifd=fmt == "v5")
    raw = read_raw(path)
    assert raw.format == "SIDD .MAT" and raw.cfa == "GRBG"
    np.testing.assert_allclose(raw.mosaic(), mosaic, atol=1e-7)  # same orientation as MATLAB's
    assert raw.noise == NoiseParams(2e-3, 3e-5)
    assert raw.wb == pytest.approx((2.0, 1.25))
    np.testing.assert_allclose(raw.cam2rgb, cam2rgb_from_xyz2cam(XYZ2CAM))
    assert (raw.black_level, raw.white_level) == ((0.0, 0.0, 0.0, 0.0), 1.0)


def test_sidd_without_metadata_needs_a_cfa(tmp_path):
    path = write_mat73(tmp_path / "0002_GT_RAW_010.MAT", {"x": normalised_mosaic()})
    with pytest.raises(FadError, match="0002_GT_RAW_010.MAT: no CFA pattern .*0002_METADATA_RAW_010.MAT.*--cfa"):
        read_raw(path)
    raw = read_raw(path, cfa="bggr")
    assert raw.cfa == "BGGR" and raw.noise is None and raw.cam2rgb is None
    with pytest.raises(FadError, match="'XGGR'"):
        read_raw(path, cfa="XGGR")


def test_dnd_raw_with_nlf(tmp_path):
    mosaic = normalised_mosaic(12, 16)
    path = write_mat73(tmp_path / "0001.mat", {"Inoisy": mosaic, "nlf": {"a": 4e-3, "b": 1e-5}})
    raw = read_raw(path)
    assert raw.format == "DND .mat" and raw.cfa == raw_io.DND_CFA
    assert raw.noise.shot == pytest.approx(4e-3) and raw.noise.read == pytest.approx(1e-5)
    np.testing.assert_allclose(raw.mosaic(), mosaic, atol=1e-7)
    assert read_raw(path, cfa="GBRG").cfa == "GBRG"


@pytest.mark.parametrize("nlf", [{"a": np.nan, "b": 1e-5}, {"a": 4e-3, "b": -1e-5}, {"a": -4e-3, "b": 1e-5}])
def test_dnd_bad_nlf_is_ignored_with_a_warning(tmp_path, nlf):
    path = write_mat73(tmp_path / "0001.mat", {"Inoisy": normalised_mosaic(12, 16), "nlf": nlf})
    with pytest.warns(UserWarning, match=r"0001.mat: ignoring nlf with shot .* \(need shot: a finite number"):
        assert read_raw(path).noise is None


@pytest.mark.parametrize("levels, expected", [([(1e-3, 1e-6), (5e-3, 2e-6)], NoiseParams(5e-3, 2e-6)),
                                              ([(1e-3, 1e-6), (np.nan, 2e-6)], None)])
def test_dnd_noise_level_from_the_datasets_info_mat(tmp_path, levels, expected):
    """The real DND layout: images_raw/0002.mat holds Inoisy; info.mat holds nlf references
    (a level outside the accepted bounds is ignored with a warning)."""
    (tmp_path / "images_raw").mkdir()
    path = write_mat73(tmp_path / "images_raw" / "0002.mat", {"Inoisy": normalised_mosaic(8, 8)})
    with h5py.File(tmp_path / "info.mat", "w") as f:
        refs = []
        for i, (a, b) in enumerate(levels):
            g = f.create_group(f"#refs#/{i}")
            g["a"], g["b"] = np.array([[a]]), np.array([[b]])
            refs.append(g.ref)
        f.create_group("info").create_dataset("nlf", data=np.array([refs], dtype=h5py.ref_dtype))
    if expected is None:
        with pytest.warns(UserWarning, match=r"info.mat: ignoring the noise level of 0002.mat with shot nan"):
            assert read_raw(path).noise is None
    else:
        assert read_raw(path).noise == expected


def test_bad_mat_files_give_one_clear_error(tmp_path):
    good = write_mat73(tmp_path / "good.mat", {"Inoisy": normalised_mosaic()}).read_bytes()
    (tmp_path / "truncated.mat").write_bytes(good[: len(good) // 2])
    with pytest.raises(FadError, match="truncated.mat: cannot read MATLAB file"):
        read_raw(tmp_path / "truncated.mat")
    (tmp_path / "text.mat").write_text("x = 1\n")
    with pytest.raises(FadError, match="text.mat: not a MATLAB .mat file"):
        read_raw(tmp_path / "text.mat")
    sio.savemat(tmp_path / "other.mat", {"img": normalised_mosaic()})
    with pytest.raises(FadError, match=r"other.mat: MATLAB file with variables \['img'\]"):
        read_raw(tmp_path / "other.mat")
    sio.savemat(tmp_path / "nlf_text.mat", {"Inoisy": normalised_mosaic(), "nlf": {"a": "big", "b": 1e-5}})
    with pytest.raises(FadError, match="nlf_text.mat: the noise level nlf.a, nlf.b must be numbers, got <U3"):
        read_raw(tmp_path / "nlf_text.mat")

    bad_values = {
        "nan.mat": (np.where(np.eye(16, 20) > 0, np.nan, 0.5), "16 NaN or Inf"),
        "dn.mat": (normalised_mosaic() * 1023, "not normalised|normalised to \\[0, 1\\]"),
        "int.mat": ((normalised_mosaic() * 1023).astype(np.uint16), "dtype uint16"),
        "cube.mat": (np.zeros((4, 8, 8)), "2-D Bayer mosaic"),
    }
    for name, (values, message) in bad_values.items():
        write_mat73(tmp_path / name, {"Inoisy": values})
        with pytest.raises(FadError, match=message) as e:
            read_raw(tmp_path / name)
        assert str(e.value).startswith(str(tmp_path / name))
    for name, values, got in (("one.mat", np.full((1, 1), 0.5), r"a single value \(a 1x1 array\?\)"),
                              ("row.mat", np.full((1, 6), 0.5), r"a vector of 6 values")):  # scipy squeezes them
        sio.savemat(tmp_path / name, {"x": values})
        with pytest.raises(FadError, match=f"{name}: expected a 2-D Bayer mosaic of at least 2x2 values, got {got}"):
            read_raw(tmp_path / name, "RGGB")


def test_from_mosaic_rejects_white_below_black():
    with pytest.raises(FadError, match="white level 50"):
        raw_io.from_mosaic(np.zeros((4, 4)), "RGGB", [64] * 4, 50, "cam.dng")


def test_raw_image_is_what_the_runners_need(tmp_path):
    raw = read_raw(make_dng(tmp_path / "x.dng", coded_values(24, 32, "RGGB")))
    assert isinstance(raw, RawImage)
    batch = raw.planes[None]
    assert batch.shape == (1, 4, 12, 16) and np.isfinite(batch).all()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a clean file reads without warnings
        read_raw(tmp_path / "x.dng")
