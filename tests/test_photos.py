"""Clean-image sources and the datasets made from them: photo folders and their errors,
seeded evaluation sets, the patch cache and the noisy-patch dataset."""
from __future__ import annotations

import itertools
import math
import os
import zipfile
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from fad_deploy.data.dataset import CacheConfig, NoisyPatches, build_patch_cache, exposed, load_patch_cache
from fad_deploy.data.noise import NoiseParams
from fad_deploy.data.photos import default_cache_dir, list_photos, load_photo, prepared_shape, skimage_photo
from fad_deploy.data.synth import (PAIR_KEYS, SET_LEVELS, SUBRANGE_LEVELS, VALIDATION_CROPS, folder_images, load_pairs, save_pairs,
                                   set_shots, shot_levels, synth_pairs, validation_set)
from fad_deploy.errors import FadError
from fad_deploy.fileio import load_npz


def save_photo(path, name="chelsea", size=(96, 72)):
    img = (skimage_photo(name) * 255).astype(np.uint8)
    Image.fromarray(img).resize(size).save(path)
    return path


def test_list_and_load_photos(tmp_path):
    (tmp_path / "sub").mkdir()
    save_photo(tmp_path / "b.png")
    save_photo(tmp_path / "sub" / "a.JPG")
    (tmp_path / "notes.txt").write_text("not a photo")
    photos = list_photos(tmp_path)
    assert [p.relative_to(tmp_path).as_posix() for p in photos] == ["b.png", "sub/a.JPG"]
    img = load_photo(photos[0])
    assert img.shape == (72, 96, 3) and img.dtype == np.float32 and 0 <= img.min() and img.max() <= 1
    assert load_photo(photos[0], downscale=2).shape == (36, 48, 3)
    assert load_photo(photos[0], downscale=2, max_side=24).shape == (18, 24, 3)


def test_8_and_16_bit_versions_of_a_photo_are_prepared_alike(tmp_path):
    rgb = (skimage_photo("coffee")[:50, :66] * 255).round().astype(np.uint8)  # 50x66: odd halves and thirds
    grey = rgb[..., 1]
    Image.fromarray(rgb).save(tmp_path / "rgb8.png")
    cv2.imwrite(str(tmp_path / "rgb16.png"), rgb[..., ::-1].astype(np.uint16) * 257)
    Image.fromarray(grey).save(tmp_path / "grey8.png")
    Image.fromarray(grey.astype(np.uint16) * 257).save(tmp_path / "grey16.png")
    assert Image.open(tmp_path / "grey16.png").mode == "I;16"
    for steps in ({}, {"downscale": 2}, {"downscale": 3, "max_side": 7}):
        rgb8, rgb16 = load_photo(tmp_path / "rgb8.png", **steps), load_photo(tmp_path / "rgb16.png", **steps)
        grey8, grey16 = load_photo(tmp_path / "grey8.png", **steps), load_photo(tmp_path / "grey16.png", **steps)
        assert rgb8.shape == rgb16.shape == grey8.shape == grey16.shape and rgb8.dtype == grey16.dtype == np.float32
        np.testing.assert_array_equal(rgb16, rgb8)
        np.testing.assert_array_equal(grey16, grey8)
        np.testing.assert_array_equal(grey8, grey8[..., :1].repeat(3, axis=-1))  # grey: three equal channels
        np.testing.assert_array_equal(grey8[..., 0], rgb8[..., 1])
    assert load_photo(tmp_path / "grey16.png").shape == (50, 66, 3)  # odd sizes are kept
    assert load_photo(tmp_path / "grey16.png", downscale=3, max_side=7).shape == (6, 7, 3)
    for steps in ({"downscale": 1, "max_side": None}, {"downscale": 2, "max_side": None},
                  {"downscale": 3, "max_side": 7}, {"downscale": 2, "max_side": 20}):  # the header tells what loads
        assert prepared_shape(tmp_path / "rgb8.png", **steps) == load_photo(tmp_path / "rgb8.png", **steps).shape[:2]
    np.testing.assert_array_equal(load_photo(tmp_path / "grey16.png")[..., 0], grey / np.float32(255))


def test_float_and_multi_channel_tiffs_are_prepared_as_their_8_bit_versions(tmp_path):
    """TIFFs Pillow misreads (float grey: all black) or cannot open (float colour, 16-bit with
    alpha) come out as the 8-bit photo; what is no photo is named."""
    import tifffile

    rgb = (skimage_photo("coffee")[:50, :66] * 255).round().astype(np.uint8)
    Image.fromarray(rgb).save(tmp_path / "rgb8.png")
    tifffile.imwrite(tmp_path / "rgb32.tif", rgb / np.float32(255), photometric="rgb")
    tifffile.imwrite(tmp_path / "grey32.tif", rgb[..., 1] / np.float32(255))
    tifffile.imwrite(tmp_path / "rgba16.tif", np.dstack([rgb, rgb[..., :1]]).astype(np.uint16) * 257,
                     photometric="rgb", extrasamples=[2])
    tifffile.imwrite(tmp_path / "planes.tif", np.moveaxis(rgb, -1, 0), photometric="rgb", planarconfig="separate")
    want = load_photo(tmp_path / "rgb8.png", downscale=2)
    for name in ("rgb32.tif", "rgba16.tif", "planes.tif"):
        np.testing.assert_array_equal(load_photo(tmp_path / name, downscale=2), want, err_msg=name)
        assert prepared_shape(tmp_path / name, 2, None) == want.shape[:2]
    np.testing.assert_array_equal(load_photo(tmp_path / "grey32.tif")[..., 2],
                                  load_photo(tmp_path / "rgb8.png")[..., 1])
    tifffile.imwrite(tmp_path / "five.tif", np.zeros((50, 66, 5), np.uint8), photometric="minisblack",
                     planarconfig="contig")
    with pytest.raises(FadError, match=r"five.tif: an image of shape \(50, 66, 5\): a photo has 1 \(grey\)"):
        load_photo(tmp_path / "five.tif")
    tifffile.imwrite(tmp_path / "hdr.tif", np.full((50, 66, 3), 4.5, np.float32), photometric="rgb")
    with pytest.raises(FadError, match=r"hdr.tif: float values from 4.5 to 4.5: a float photo holds values in \[0, 1"):
        load_photo(tmp_path / "hdr.tif")


def test_the_cache_lives_in_the_home_folder_even_where_home_is_empty(monkeypatch):
    import pwd

    monkeypatch.delenv("FAD_CACHE", raising=False)
    monkeypatch.setenv("HOME", "")  # had put the cache in the current folder
    assert default_cache_dir() == Path(pwd.getpwuid(os.getuid()).pw_dir) / ".cache" / "fad-deploy"
    monkeypatch.setenv("FAD_CACHE", "")  # empty means unset
    assert default_cache_dir().is_absolute()


def test_photo_folders_are_followed_through_links_once(tmp_path):
    """A linked folder of photos had been skipped without a word."""
    for folder, name in (("elsewhere", "a.jpg"), ("photos", "b.jpg")):
        (tmp_path / folder).mkdir()
        save_photo(tmp_path / folder / name)
    (tmp_path / "photos" / "more").symlink_to(tmp_path / "elsewhere")
    (tmp_path / "elsewhere" / "up").symlink_to(tmp_path / "photos")  # a loop
    (tmp_path / "photos" / "parent").symlink_to(tmp_path)  # a link up: not its folders, photos/ among them
    assert [p.relative_to(tmp_path / "photos").as_posix() for p in list_photos(tmp_path / "photos")] == \
        ["b.jpg", "more/a.jpg"]


def test_photo_errors_name_the_file(tmp_path, monkeypatch):
    jpeg = save_photo(tmp_path / "good.jpg").read_bytes()
    (tmp_path / "truncated.jpg").write_bytes(jpeg[: len(jpeg) // 2])
    with pytest.raises(FadError, match="truncated.jpg: cannot read photo"):
        load_photo(tmp_path / "truncated.jpg")
    (tmp_path / "fake.png").write_text("hello")
    with pytest.raises(FadError, match="fake.png: cannot read photo"):
        load_photo(tmp_path / "fake.png")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)  # Pillow refuses twice its limit
    with pytest.raises(FadError, match="good.jpg: too large to read"):
        load_photo(tmp_path / "good.jpg")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FadError, match="empty: no photos found"):
        list_photos(tmp_path / "empty")
    with pytest.raises(FadError, match="missing: not a folder"):
        list_photos(tmp_path / "missing")
    with pytest.raises(FadError, match="'lena'"):
        skimage_photo("lena")


def test_synth_pairs_are_seeded_and_complete(tmp_path):
    save_photo(tmp_path / "a.png")
    save_photo(tmp_path / "b.png", "coffee")
    assert shot_levels(1) == pytest.approx([math.sqrt(1e-4 * 0.012)])  # one level: the centre, not the floor
    shots = shot_levels(3)
    make = lambda seed: synth_pairs(folder_images(tmp_path, 1, None), 8, 2, shots, seed)  # noqa: E731
    pairs = make(0)
    assert set(pairs) == {*PAIR_KEYS, "source"}
    assert pairs["noisy"].shape == pairs["clean"].shape == (2 * 2 * 3, 4, 8, 8)
    np.testing.assert_allclose(np.unique(pairs["shot"]), shots, rtol=1e-6)
    assert sorted(set(pairs["source"].tolist())) == ["a.png", "b.png"]
    again = make(0)
    for key in pairs:
        np.testing.assert_array_equal(pairs[key], again[key])
    assert not np.array_equal(make(1)["clean"], pairs["clean"])
    # Each crop is repeated at every level with fresh noise.
    np.testing.assert_array_equal(pairs["clean"][0], pairs["clean"][2])
    assert not np.array_equal(pairs["noisy"][0], pairs["noisy"][1])
    save_pairs(tmp_path / "set.npz", pairs)
    loaded = load_pairs(tmp_path / "set.npz")
    np.testing.assert_array_equal(loaded["noisy"], pairs["noisy"])


def test_a_subrange_models_validation_set_lies_in_its_range_with_every_crop_at_every_level():
    """fad-export's gate set for a sub-range model: its own levels, VALIDATION_CROPS crops of
    each bundled photo at each, fewer only when asked; the description says which."""
    pairs, described = validation_set((1e-3, 4e-3))
    shots = np.unique(pairs["shot"])
    assert len(shots) == SUBRANGE_LEVELS and 1e-3 < shots.min() and shots.max() < 4e-3
    photos = len(set(pairs["source"].tolist()))
    assert len(pairs["noisy"]) == photos * VALIDATION_CROPS * SUBRANGE_LEVELS
    assert f"{VALIDATION_CROPS} crops each" in described and "[0.001, 0.004]" in described
    fewer, described = validation_set((1e-3, 4e-3), crops=2)
    assert len(fewer["noisy"]) == photos * 2 * SUBRANGE_LEVELS and "2 crops each" in described


def test_synth_options_and_errors(tmp_path):
    save_photo(tmp_path / "a.png")
    np.testing.assert_array_equal(set_shots(None, 2e-3), [2e-3])
    assert len(set_shots(4)) == 4 and len(set_shots(None)) == SET_LEVELS
    with pytest.raises(FadError, match="give one of them"):
        set_shots(4, 2e-3)
    with pytest.raises(FadError, match="shot noise -1"):
        set_shots(None, -1.0)
    with pytest.raises(FadError, match="0 noise levels"):
        set_shots(0)
    pairs = synth_pairs(folder_images(tmp_path, 1, None), 8, 1, [2e-3], 0, read=1e-5)
    assert pairs["read"].tolist() == [pytest.approx(1e-5)]
    with pytest.raises(FadError, match="read noise -1"):
        synth_pairs(folder_images(tmp_path, 1, None), 8, 1, [2e-3], 0, read=-1.0)
    with pytest.raises(FadError, match=r"no photo is large enough for the 200x200 photo pixels of a packed 100x100 "
                       r"crop .*: a.png \(72x96\)"):
        synth_pairs(folder_images(tmp_path, 1, None), 100, 1, [2e-3], 0)


def test_load_pairs_errors(tmp_path):
    np.savez(tmp_path / "other.npz", noisy=np.zeros((1, 4, 8, 8)))
    with pytest.raises(FadError, match="other.npz: not a fad-data synth set"):
        load_pairs(tmp_path / "other.npz")
    (tmp_path / "junk.npz").write_bytes(b"PK junk")
    with pytest.raises(FadError, match="junk.npz: cannot read"):
        load_pairs(tmp_path / "junk.npz")


def test_noisy_values_may_lie_as_far_beyond_raw_as_their_noise_reaches(tmp_path):
    """At the largest noise fad-data synth makes, white's noisy values pass 2 (the room without noise)."""
    pairs = good_set(tmp_path)
    pairs["shot"], pairs["read"] = np.full(2, 0.1), np.full(2, 0.022)
    pairs["noisy"][0, 0, 0, 0] = 3.0  # white plus about 6 noise stds (std 0.35): beyond the room of a noiseless set
    save_pairs(tmp_path / "loud.npz", pairs)
    assert load_pairs(tmp_path / "loud.npz")["noisy"].max() == 3.0


def test_hidden_files_and_denoised_previews_are_not_photos(tmp_path):
    for name in ("a.png", "a-denoised.png", ".a.png.k3j4.part.png", ".thumbs/b.png", "denoised/c-denoised.png"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (8, 8)).save(tmp_path / name, format="PNG")
    with pytest.warns(UserWarning, match=r"skipped 4 image files hidden or denoised \(<name>-denoised"):
        assert list_photos(tmp_path) == [tmp_path / "a.png"]


def good_set(tmp_path) -> dict:
    """A 2-pair set (one crop at two levels), saved as good.npz."""
    save_photo(tmp_path / "a.png")
    pairs = synth_pairs(folder_images(tmp_path, 1, None), 8, 1, [1e-3, 2e-3], 0)
    save_pairs(tmp_path / "good.npz", pairs)
    return pairs


@pytest.mark.parametrize("change, message", [
    ({"shot": [2e-3]}, r"shot must have shape \(2,\), one per pair, got \(1,\)"),
    ({"shot": [1e-3, 2e-3, 3e-3]}, r"shot must have shape \(2,\), one per pair, got \(3,\)"),
    ({"read": 1e-5}, r"read must have shape \(2,\), one per pair, got \(\)"),
    ({"shot": [[1e-3], [2e-3]]}, r"shot must have shape \(2,\), one per pair, got \(2, 1\)"),
    ({"shot": ["a", "b"]}, "shot holds <U1 values, not numbers"),
    ({"red_gain": [2.0]}, r"red_gain must have shape \(2,\)"),
    ({"cam2rgb": np.ones((2, 2, 3))}, r"cam2rgb must have shape \(2, 3, 3\), one per pair, got \(2, 2, 3\)"),
    ({"blue_gain": [np.nan, 1.0]}, "blue_gain contains NaN or Inf"),
    ({"shot": [0.0, 2e-3]}, r"shot noise must be a finite number in \(0, 0.1\] \(variance a x \+ b of RAW in "
                            r"\[0, 1\]\), got 0$"),
    ({"shot": [-1e-3, 2e-3]}, "shot noise must be .* got -0.001"),
    ({"read": [-1.0, 0.0]}, r"read noise must be a finite number in \[0, 0.1\] .* got -1$"),
    ({"noisy": np.zeros((2, 4, 0, 8)), "clean": np.zeros((2, 4, 0, 8))},
     r"\(N, 4, h, w\) with h, w >= 1, got \(2, 4, 0"),
    ({"read": [0.5, 0.0]}, r"read noise must be a finite number in \[0, 0.1\] .* got 0.5$"),
    ({"noisy": np.zeros((2, 4, 8, 8), np.uint16)}, r"noisy holds uint16 values; a set holds float RAW normalised"),
    ({"clean": np.full((2, 4, 8, 8), 300.0)}, r"clean spans \[300, 300\], not RAW normalised to \[0, 1\]"),
    ({"noisy": np.full((2, 4, 8, 8), 3.0)}, r"noisy spans \[3, 3\], not RAW .* with noise of std up to 0.0633"),
    ({"cam2rgb": np.zeros((2, 3, 3))}, r"cam2rgb must hold invertible colour matrices"),  # had scored RGB PSNR inf
    ({"noisy": np.full((2, 4, 8, 8), 1.5)}, r"pair 0's noise has .* times the variance its shot and read noise say"),
    ({"red_gain": [0.0, 2.0]}, r"red_gain must hold positive numbers, got values from 0 to 2$"),
])
def test_load_pairs_refuses_arrays_that_do_not_match_the_pairs(tmp_path, change, message):
    save_pairs(tmp_path / "bad.npz", {**good_set(tmp_path), **{k: np.asarray(v) for k, v in change.items()}})
    with pytest.raises(FadError, match=message) as e:
        load_pairs(tmp_path / "bad.npz")
    assert str(e.value).startswith(f"{tmp_path / 'bad.npz'}: ")


def test_truncated_or_empty_npz_is_one_error(tmp_path):
    good_set(tmp_path)
    data = (tmp_path / "good.npz").read_bytes()
    (tmp_path / "truncated.npz").write_bytes(data[: len(data) // 2])
    (tmp_path / "empty.npz").write_bytes(b"")
    np.save(tmp_path / "array.npy", np.zeros(3))
    (tmp_path / "photo.dng").write_bytes(b"II*\x00" + bytes(64))
    for name in ("truncated.npz", "empty.npz", "array.npy", "photo.dng"):
        with pytest.raises(FadError, match=f"{name}: cannot read evaluation set: not an .npz archive"):
            load_pairs(tmp_path / name)
        with pytest.raises(FadError, match=f"{name}: cannot read patch cache"):
            load_patch_cache(tmp_path / name)


def test_npz_member_that_is_not_an_array_is_one_error(tmp_path):
    """np.load returns the bytes of a member np.save did not write (no .npy header)."""
    np.savez(tmp_path / "set.npz", shot=np.array([1e-3]))
    with zipfile.ZipFile(tmp_path / "set.npz", "a") as z:
        z.writestr("noisy", b"garbage")
    with pytest.raises(FadError, match=r"set.npz: cannot read evaluation set: not a numpy array: noisy \(damaged"):
        load_pairs(tmp_path / "set.npz")


def test_damaged_npz_is_one_error_wherever_the_damage_lies(tmp_path):
    """A byte changed anywhere in a compressed set: it still loads (a byte zip ignores) or gives
    one error line (not zlib's, tokenize's or numpy's header parser's exception)."""
    np.savez_compressed(tmp_path / "good.npz", noisy=np.linspace(0, 1, 64, dtype=np.float32).reshape(1, 4, 4, 4),
                        shot=np.array([1e-3]))
    data = (tmp_path / "good.npz").read_bytes()
    for i, flip in itertools.product(range(len(data)), (0x01, 0x5A, 0xFF)):
        (tmp_path / "bad.npz").write_bytes(data[:i] + bytes([data[i] ^ flip]) + data[i + 1:])
        try:
            load_npz(tmp_path / "bad.npz", "evaluation set")
        except FadError as e:
            assert str(e).startswith(f"{tmp_path / 'bad.npz'}: cannot read evaluation set")


@pytest.mark.parametrize("change, message", [
    ({"raw": np.zeros(())}, r"raw must hold float patches of shape \(N, 4, h, w\), N, h, w >= 1, got float64 \(\)"),
    ({"raw": np.zeros((2, 4, 8, 8), np.uint8)}, r"raw must hold float patches .* got uint8 \(2, 4, 8, 8\)"),
    ({"cam2rgb": np.ones((2, 3))}, r"cam2rgb must have shape \(2, 3, 3\), one per patch, got \(2, 3\)"),
    ({"red_gain": [1.0, np.inf]}, "red_gain contains NaN or Inf"),
])
def test_load_patch_cache_refuses_malformed_caches(tmp_path, change, message):
    good = {"raw": np.zeros((2, 4, 8, 8), np.float16), "red_gain": np.ones(2), "blue_gain": np.ones(2),
            "rgb_gain": np.ones(2), "cam2rgb": np.stack([np.eye(3)] * 2)}
    np.savez(tmp_path / "cache.npz", **{**good, **change})
    with pytest.raises(FadError, match=f"cache.npz: {message}"):
        load_patch_cache(tmp_path / "cache.npz")


def test_patch_cache_and_noisy_patches(tmp_path):
    save_photo(tmp_path / "a.png")
    config = CacheConfig(patch=16, patches_per_photo=3, downscale=1, max_side=None, seed=0)
    build_patch_cache(list_photos(tmp_path), tmp_path / "cache.npz", config)
    cache = load_patch_cache(tmp_path / "cache.npz")
    assert cache["raw"].shape == (3, 4, 16, 16) and cache["raw"].dtype == np.float16
    assert cache["cam2rgb"].shape == (3, 3, 3)
    data = NoisyPatches(cache, crop=8, shot_range=(1e-3, 2e-3), seed=0, length=5)
    item = data[0]
    assert item["noisy"].shape == item["clean"].shape == (4, 8, 8)
    assert 1e-3 <= item["shot"].item() <= 2e-3
    again = NoisyPatches(cache, crop=8, shot_range=(1e-3, 2e-3), seed=0)[0]
    assert (item["noisy"] == again["noisy"]).all()  # items are pure functions of (seed, epoch, index)
    # The clean crop is an RGGB crop of some cached patch: its noise matches its level.
    residual = (item["noisy"] - item["clean"]).numpy().astype(np.float64)
    expected = NoiseParams(item["shot"].item(), item["read"].item()).variance(item["clean"].numpy()).mean()
    assert residual.var() == pytest.approx(expected, rel=0.5)
    with pytest.raises(FadError, match=r"no photo is large enough for the 200x200 photo pixels of a packed 100x100 "
                       r"crop .*a.png \(72x96\)"):
        build_patch_cache(list_photos(tmp_path), tmp_path / "big.npz", CacheConfig(patch=100, downscale=1))
    assert not (tmp_path / "big.npz").exists()


def test_exposure_brightens_the_clean_patch_before_its_noise(tmp_path):
    save_photo(tmp_path / "a.png")
    build_patch_cache(list_photos(tmp_path), tmp_path / "cache.npz", CacheConfig(patch=16, patches_per_photo=3,
                                                                                downscale=1, max_side=None))
    cache = load_patch_cache(tmp_path / "cache.npz")
    plain = NoisyPatches(cache, crop=8, seed=0)
    bright = NoisyPatches(cache, crop=8, seed=0, exposure=4.0)
    gains = []
    for i in range(3):
        base, item = plain[i]["clean"].numpy(), bright[i]["clean"].numpy()
        gains.append(item.max() / base.max())  # (the test photo's patches lie well below 1/4)
        assert base.max() < 0.25 and 1 < gains[-1] <= 4
        np.testing.assert_allclose(item, np.minimum(base * gains[-1], 1), rtol=1e-5)
        assert bright[i]["shot"] == plain[i]["shot"]  # the same crop and noise level: only brighter
    assert len(set(np.round(gains, 4))) == 3  # a gain of its own for each patch
    half = NoisyPatches(cache, crop=8, seed=0, exposure=4.0, exposure_share=0.5)
    brightened = [not np.array_equal(half[i]["clean"], plain[i]["clean"]) for i in range(16)]
    assert 0 < sum(brightened) < 16  # some patches as they are, the others brighter
    assert np.array_equal(exposed(np.array([0.2, 0.6]), 2.0), [0.4, 1.0])  # a longer exposure saturates at 1


def test_photos_too_small_for_the_crop_are_skipped_with_one_warning(tmp_path, recwarn):
    save_photo(tmp_path / "a.png")  # 96x72
    save_photo(tmp_path / "small.png", size=(40, 30))
    save_photo(tmp_path / "tiny.png", size=(1, 1))
    pairs = synth_pairs(folder_images(tmp_path, 1, None), 16, 2, [2e-3], 0)  # 32x32 RGB crops
    assert set(pairs["source"].tolist()) == {"a.png"} and len(pairs["noisy"]) == 2
    (warning,) = recwarn.list
    assert str(warning.message) == ("skipped 2 photos smaller than the 32x32 photo pixels of a packed 16x16 crop "
                                    "(sizes height x width, after any downscaling): small.png (30x40), tiny.png (1x1)")
    recwarn.clear()
    config = CacheConfig(patch=16, patches_per_photo=3, downscale=1, max_side=None)
    assert build_patch_cache(list_photos(tmp_path), tmp_path / "cache.npz", config) == 1
    assert load_patch_cache(tmp_path / "cache.npz")["raw"].shape == (3, 4, 16, 16)
    (warning,) = recwarn.list
    assert "skipped 2 photos" in str(warning.message) and "small.png (30x40)" in str(warning.message)
