"""Noise Subrange Model Array: the partition (equations 5, 6), model selection from the
sub-range table (clamping, manifests), the blind noise estimator's accuracy, where the
noise level comes from, the evaluation, and `fad-denoise` end to end on files written here."""
from __future__ import annotations

import json
import math
import warnings

import numpy as np
import pytest
import torch

from fad_deploy.cli.denoise import main as fad_denoise
from fad_deploy.data.noise import (SHOT_RANGE, NoiseParams, add_noise, floor_level, load_profiles, profile_from_dict,
                                   read_from_shot)
from fad_deploy.data.photos import skimage_photo
from fad_deploy.data.raw_io import RawImage, read_raw
from fad_deploy.data.synth import save_pairs, synth_pairs
from fad_deploy.data.unprocess import random_params, unprocess
from fad_deploy.errors import FadError
from fad_deploy.models.registry import Checkpoint, build, model_config
from fad_deploy.nsma.array import bundle_table, default_bundle, load_array
from fad_deploy.nsma.estimate import SHOT_FLOOR, estimate_noise
from fad_deploy.nsma.evaluate import compare, subrange_levels
from fad_deploy.nsma.manifest import build_manifest, nsma_bundle_table, write_manifest
from fad_deploy.nsma.noise_level import given_noise, noise_for
from fad_deploy.nsma.partition import subranges
from fad_deploy.nsma.pipeline import list_inputs
from fad_deploy.nsma.select import (ShotOutOfRangeWarning, SubRange, keep_share, parse_table, select_model,
                                    table_from_manifest)
from fad_deploy.runners.tiling import BORDER, TiledRunner, mirrored
from fad_deploy.runners.torch_runner import TorchRunner
from test_raw_io import make_dng  # the DNG writer of the RAW-reading tests (a camera-style file)

TINY_FAN = {"widths": [8, 8, 16], "expansions": [1, 1, 1]}
WHITE, BLACK = 1023, 64
pytestmark = pytest.mark.usefixtures("one_thread")


# ---- partition (equations 5 and 6) ----------------------------------------------------------

def test_partition_follows_equations_5_and_6():
    lo, hi = SHOT_RANGE
    ranges = subranges(4)
    assert len(ranges) == 4
    for i, (a_min, a_max) in enumerate(ranges):
        assert math.log(a_min) == pytest.approx(math.log(lo) + i / 4 * (math.log(hi) - math.log(lo)), abs=1e-12)
        assert math.log(a_max) == pytest.approx(math.log(lo) + (i + 1) / 4 * (math.log(hi) - math.log(lo)), abs=1e-12)
    assert ranges[0][0] == lo and ranges[-1][1] == hi  # exact ends
    assert all(ranges[i][1] == ranges[i + 1][0] for i in range(3))  # shared boundaries, no gaps
    assert subranges(1, (0.001, 0.01)) == [(0.001, 0.01)]


@pytest.mark.parametrize("n, shot_range", [(0, SHOT_RANGE), (2.5, SHOT_RANGE), (4, (0.0, 0.01)), (4, (0.01, 0.001))])
def test_partition_rejects_bad_input(n, shot_range):
    with pytest.raises(FadError):
        subranges(n, shot_range)


# ---- selection ----------------------------------------------------------------------------------

def table4() -> list[SubRange]:
    return [SubRange(f"m{i}", f"m{i}.pt", lo, hi) for i, (lo, hi) in enumerate(subranges(4))]


def test_selection_inside_and_on_boundaries():
    table = table4()
    for i, e in enumerate(table):
        centre = math.sqrt(e.shot_min * e.shot_max)
        s = select_model(table, centre, "test")
        assert (s.index, s.clamped) == (i, False)
        assert e.name in s.reason and "test" in s.reason and f"sub-range {i}" in s.reason
    assert select_model(table, table[2].shot_min).index == 2  # a boundary belongs to the upper sub-range
    assert select_model(table, SHOT_RANGE[1]).index == 3  # the last sub-range includes its end
    assert select_model(table, SHOT_RANGE[0]).index == 0
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a range end rounded to float32 (as sets store a) is no clamp
        for end, index in ((SHOT_RANGE[0], 0), (SHOT_RANGE[1], 3)):
            s = select_model(table, float(np.float32(end)))
            assert (s.index, s.clamped) == (index, False) and "clamped" not in s.reason


def test_selection_clamps_out_of_range_with_a_warning():
    table = table4()
    with pytest.warns(ShotOutOfRangeWarning, match="below every sub-range"):
        low = select_model(table, 1e-6)
    with pytest.warns(ShotOutOfRangeWarning, match="above every sub-range"):
        high = select_model(table, 0.5)
    assert (low.index, low.clamped) == (0, True) and (high.index, high.clamped) == (3, True)
    assert "clamped" in low.reason and "m3" in high.reason
    assert f"run at a={table[0].shot_min:.3g} with part of its change kept" in low.reason
    gappy = [SubRange("a", "a.pt", 1e-4, 2e-4), SubRange("b", "b.pt", 1e-3, 2e-3)]
    with pytest.warns(ShotOutOfRangeWarning):  # in a gap: nearest in log a, run at a (not below the range)
        assert select_model(gappy, 3e-4).index == 0
        in_gap = select_model(gappy, 8e-4)
        assert in_gap.index == 1 and "run at a=" not in in_gap.reason
    for bad in (0.0, -1e-3, float("nan"), float("inf")):
        with pytest.raises(FadError, match="positive"):
            select_model(table, bad)


def test_below_the_floor_a_network_runs_at_it_keeping_the_variance_ratio_of_its_change():
    floor, x = SHOT_RANGE[0], 0.25
    assert floor_level(NoiseParams(1e-3, 1e-5), x, floor) == (NoiseParams(1e-3, 1e-5), 1.0)  # above: as it is
    run, w = floor_level(NoiseParams(1e-6, 1e-5), x, floor)
    assert run == NoiseParams(floor, 1e-5) and w == pytest.approx((1e-6 * x + 1e-5) / (floor * x + 1e-5))
    assert floor_level(NoiseParams(1e-6, 0.0), 0.0, floor)[1] == pytest.approx(1e-2)  # a black frame: x at 1e-3
    on_floor = NoiseParams(float(np.float32(floor)), 1e-8)  # the floor as a set stores it: rounded below
    assert floor_level(on_floor, x, floor) == (on_floor, 1.0)


def test_keep_share_blends_each_image_by_its_weight():
    noisy, denoised = np.zeros((2, 4, 3, 3), np.float32), np.random.default_rng(0).uniform(0, 1, (2, 4, 3, 3))
    np.testing.assert_array_equal(keep_share(noisy, denoised, [1.0, 1.0]), denoised)  # exactly, not by rounding
    mixed = keep_share(noisy + 0.5, denoised, [0.25, 1.0])
    np.testing.assert_allclose(mixed[0], 0.5 + 0.25 * (denoised[0] - 0.5), rtol=1e-6)
    np.testing.assert_array_equal(mixed[1], denoised[1])


def test_selection_table_from_manifest(tmp_path):
    entries = [e.as_dict() for e in table4()]
    manifest = {"selection_rule": "...", "subranges": entries, "other": 1}
    assert table_from_manifest(manifest) == table4()
    path = tmp_path / "manifest.json"
    path.write_text(json.dumps(manifest))
    assert select_model(table_from_manifest(path), 2e-3).entry.name == "m2"
    bad_tables = {
        "empty": [],
        "missing key": [{"name": "m", "file": "m.pt", "shot_min": 1e-4}],
        "negative": [{"name": "m", "file": "m.pt", "shot_min": -1e-4, "shot_max": 1e-3}],
        "reversed": [{"name": "m", "file": "m.pt", "shot_min": 1e-3, "shot_max": 1e-4}],
        "overlap": [entries[1], entries[0]],
    }
    for what, entries_bad in bad_tables.items():
        with pytest.raises(FadError, match="sub-range"):
            parse_table(entries_bad, what)
    with pytest.raises(FadError, match="no 'subranges' table"):
        table_from_manifest({"models": []})
    (tmp_path / "broken.json").write_text("{not json")
    with pytest.raises(FadError, match="broken.json"):
        table_from_manifest(tmp_path / "broken.json")


# ---- the blind noise estimator --------------------------------------------------------------------

def noisy_crop(name: str, a: float, rng, crop: int = 128, b: float | None = None) -> np.ndarray:
    image = skimage_photo(name)
    rgb = 2 * crop
    y, x = 2 * rng.integers(0, (image.shape[0] - rgb) // 2 + 1), 2 * rng.integers(0, (image.shape[1] - rgb) // 2 + 1)
    clean = unprocess(image[y : y + rgb, x : x + rgb], random_params(rng))
    return add_noise(clean, NoiseParams(a, read_from_shot(a) if b is None else b), rng)


# Stated accuracy of a (|estimate / true - 1|) on 4x128x128 unprocessed scikit-image photo
# crops, per level; benchmarks/results/nsma_estimator.md has the full study (more photos,
# crop sizes, per-level medians and p90s). At the range's lowest level the photos' own grain
# and fine texture (these are full-resolution JPEGs) add to the noise: a is overestimated,
# by up to 5x.
ESTIMATOR_BOUNDS = {1e-4: (-0.1, 4.0), 4e-4: (-0.6, 0.6), 1.5e-3: (-0.25, 0.25), 6e-3: (-0.25, 0.25),
                    1.2e-2: (-0.25, 0.25)}
ESTIMATOR_MEDIAN_BOUND = 0.10  # median |relative error| over the levels >= 4e-4


def test_estimator_accuracy_on_unprocessed_photos():
    rng = np.random.default_rng(0)
    errors = []
    for name in ("astronaut", "coffee", "rocket"):
        for a, (lo, hi) in ESTIMATOR_BOUNDS.items():
            rel = estimate_noise(noisy_crop(name, a, rng)).params.shot / a - 1
            assert lo < rel < hi, (name, a, rel)
            if a >= 4e-4:
                errors.append(abs(rel))
    assert np.median(errors) < ESTIMATOR_MEDIAN_BOUND, errors


def test_estimator_exact_on_textureless_image_with_clipping_and_quantisation():
    """A smooth ramp through black and white clipping, stored as 10-bit integers like a DNG:
    clipped pixels are ignored, and both a and b are recovered."""
    rng = np.random.default_rng(1)
    yy, xx = np.mgrid[:128, :128] / 127.0
    clean = np.stack([np.clip(-0.05 + 1.1 * (0.7 * xx + 0.3 * yy), 0, 1)] * 4).astype(np.float32)
    truth = NoiseParams(2e-3, 1e-4)
    noisy = np.clip(add_noise(clean, truth, rng), 0, 1)
    noisy = np.round(noisy * WHITE) / WHITE
    est = estimate_noise(noisy).params
    assert est.shot == pytest.approx(truth.shot, rel=0.05)
    assert est.read == pytest.approx(truth.read, rel=0.5)


def test_estimator_flat_field_of_few_integer_levels_is_not_clipped():
    """A flat field whose noise (0.5 DN) spans only a few integer values has its min and max
    repeated on many pixels, like a clipping level, but each rarer than the level next to it:
    the blocks stay usable and the variance at that level (noise + rounding) is found."""
    level, std = 0.25, 0.5 / WHITE
    noisy = add_noise(np.full((4, 64, 64), level, np.float32), NoiseParams(std**2 / level, 0.0),
                      np.random.default_rng(3))
    noisy = np.round(noisy * WHITE) / WHITE
    assert len(np.unique(noisy)) <= 6
    est = estimate_noise(noisy)
    assert est.blocks_used > est.blocks_total // 2  # (before: none, "too clipped")
    total = std**2 + 1 / 12 / WHITE**2
    assert est.params.shot * level + est.params.read == pytest.approx(total, rel=0.05)


def test_estimator_bad_input():
    with pytest.raises(FadError, match="packed RAW"):
        estimate_noise(np.zeros((3, 64, 64), np.float32))
    with pytest.raises(FadError, match="too small"):
        estimate_noise(np.random.default_rng(0).random((4, 12, 12)).astype(np.float32), "tiny.dng")
    with pytest.raises(FadError, match=r"white.dng: 0 of its \d+ 8x8 blocks vary at all \(a flat, noise-free or "):
        estimate_noise(np.ones((4, 64, 64), np.float32), "white.dng")
    with pytest.raises(FadError, match=r"grey.dng: 0 of its \d+ 8x8 blocks vary at all"):
        estimate_noise(np.full((4, 64, 64), 0.4, np.float32), "grey.dng")
    bright = np.random.default_rng(0).random((4, 64, 64)).astype(np.float32)
    bright[:, 8:] = 1.0  # clipped but for one row of blocks
    with pytest.raises(FadError, match=r"bright.dng: too small or too clipped to estimate its noise \(\d+ usable"):
        estimate_noise(bright, "bright.dng")


def test_noise_free_estimate_says_so():
    planes = np.broadcast_to(np.linspace(0.2, 0.6, 96, dtype=np.float32), (4, 96, 96)).copy()
    planes += np.random.default_rng(0).normal(0, 1e-6, planes.shape).astype(np.float32)  # far below any model's a
    noise, how = noise_for(RawImage(planes, "RGGB", (0.0,) * 4, 1.0, source="clean.dng"))
    assert noise.shot == SHOT_FLOOR and "no measurable shot noise, a at the estimator's floor" in how


# ---- where the noise level comes from ---------------------------------------------------------------

def raw_image(noise: NoiseParams | None, a: float = 2e-3) -> RawImage:
    planes = noisy_crop("astronaut", a, np.random.default_rng(2), crop=96)
    return RawImage(planes, "RGGB", (0.0,) * 4, 1.0, noise=noise, source="x.dng", format="LibRaw DNG")


def test_noise_for_priorities():
    raw = raw_image(NoiseParams(3e-3, 1e-5))
    assert noise_for(raw, shot=1e-3) == (NoiseParams(1e-3, float(read_from_shot(1e-3))),
                                         "given shot noise, read noise from UPI's regression")
    assert noise_for(raw, shot=1e-3, read=2e-6)[0] == NoiseParams(1e-3, 2e-6)
    profile = load_profiles()["pmrid-example"]
    noise, source = noise_for(raw, iso=1600, camera="pmrid-example")
    assert noise == profile.params(1600) and "pmrid-example" in source and "1600" in source
    noise, source = noise_for(raw)
    assert noise == NoiseParams(3e-3, 1e-5) and "noise profile in the file" in source
    noise, source = noise_for(raw_image(None))  # no metadata: the estimator
    assert source.startswith("estimated from the image") and noise.shot == pytest.approx(2e-3, rel=0.2)


@pytest.mark.parametrize("bad", [NoiseParams(-1e-3, 1e-6), NoiseParams(float("nan"), 0.0), NoiseParams(1e-3, -1.0)])
def test_noise_for_ignores_bad_metadata(bad):
    with pytest.warns(UserWarning, match="ignoring unusable noise metadata"):
        noise, source = noise_for(raw_image(bad))
    assert source.startswith("estimated") and noise.shot == pytest.approx(2e-3, rel=0.2)


@pytest.mark.parametrize("kwargs, message", [
    ({"read": 1e-5}, "without the shot noise"),
    ({"shot": -1e-3}, "needs a > 0"),
    ({"shot": 1e-3, "read": -1.0}, "needs a > 0 and b >= 0"),
    ({"iso": 800}, "both --iso and --camera"),
    ({"camera": "pmrid-example"}, "both --iso and --camera"),
    ({"iso": 800, "camera": "nope"}, "unknown camera 'nope'"),
    ({"iso": 1e6, "camera": "pmrid-example"}, "outside the calibrated range"),
])
def test_noise_for_bad_flags(kwargs, message):
    with pytest.raises(FadError, match=message):
        noise_for(raw_image(None), **kwargs)


# ---- the array: manifest, bundle table, evaluation --------------------------------------------------

@pytest.fixture(scope="module")
def array_dir(tmp_path_factory):
    """4 tiny untrained FAN students, one per sub-range, with their manifest."""
    folder = tmp_path_factory.mktemp("nsma")
    torch.manual_seed(0)
    for i, r in enumerate(subranges()):
        m = build("fan", TINY_FAN)
        Checkpoint(f"fan-nsma-{i}", "fan", model_config(m), m.state_dict(), r).save(folder / f"fan-nsma-{i}.pt")
    write_manifest(folder)
    return folder


def test_default_bundle_is_the_exported_array_with_the_backends_files(tmp_path, monkeypatch):
    monkeypatch.setenv("FAD_MODELS", str(tmp_path / "models"))
    for name, backend in (("fan-nsma", "tflite-int8"), ("fan-nsma-int16", "tflite-int16")):
        (tmp_path / "export" / name).mkdir(parents=True)
        (tmp_path / "export" / name / "manifest.json").write_text(json.dumps(
            {"subranges": [], "models": [{"files": {"tflite-fp32": {}, backend: {}}}]}))
    assert default_bundle("tflite-int16") == tmp_path / "export" / "fan-nsma-int16"
    assert default_bundle("tflite-int8") == default_bundle() == tmp_path / "export" / "fan-nsma"
    with pytest.raises(FadError, match="no exported array in .* has onnx-int8 files .fan-nsma, fan-nsma-int16 lack "
                                       "them.: run fad-export --int8 --target all"):
        default_bundle("onnx-int8")


def test_one_exported_model_is_an_array_of_one_and_files_are_named_as_such(tmp_path):
    files = {"tflite-fp32": {"file": "m.fp32.tflite"}, "tflite-int8": {"file": "m.int8.tflite"}}
    one = {"models": [{"name": "m", "files": files, "shot_range": [1e-4, 1e-2]}]}
    assert bundle_table(one, "x") == [SubRange("m", "m.int8.tflite", 1e-4, 1e-2)]  # its quantized file runs
    with pytest.raises(FadError, match="x: no 'subranges' table and not one exported model"):
        bundle_table({"models": one["models"] * 2}, "x")
    (tmp_path / "manifest.json").write_text(json.dumps(one))
    (tmp_path / "m.int8.tflite").write_bytes(b"")
    with pytest.raises(FadError, match=r"m.int8.tflite: not a model array: give an array folder .* \(this file's "
                                       "folder is one: "):
        load_array(tmp_path / "m.int8.tflite")
    with pytest.raises(FadError, match="nowhere: no such model array folder or checkpoint"):
        load_array(tmp_path / "nowhere")


def test_manifest_and_bundle_table(array_dir, tmp_path):
    manifest = json.loads((array_dir / "manifest.json").read_text())
    assert manifest["n"] == 4 and manifest["shot_range"] == list(SHOT_RANGE)
    assert [e["file"] for e in manifest["subranges"]] == [f"fan-nsma-{i}.pt" for i in range(4)]
    assert [(e["shot_min"], e["shot_max"]) for e in manifest["subranges"]] == subranges()
    first = manifest["subranges"][0]
    assert first["anchor"]["shot"] == pytest.approx(math.sqrt(first["shot_min"] * first["shot_max"]))
    bundle = nsma_bundle_table(array_dir / "manifest.json")
    assert [m["name"] for m in bundle["models"]] == [f"fan-nsma-{i}" for i in range(4)]
    assert all(m["checkpoint"].endswith(f"fan-nsma-{i}.pt") for i, m in enumerate(bundle["models"]))
    assert "shot_min <= a < shot_max" in bundle["selection_rule"]
    # Missing numbers, a gap between sub-ranges, or a missing checkpoint are refused.
    def copy(src: int, dst: int) -> None:
        (tmp_path / f"fan-nsma-{dst}.pt").write_bytes((array_dir / f"fan-nsma-{src}.pt").read_bytes())

    copy(0, 0)
    copy(2, 2)
    with pytest.raises(FadError, match="numbered"):
        build_manifest(tmp_path)
    (tmp_path / "fan-nsma-2.pt").unlink()
    copy(2, 1)
    with pytest.raises(FadError, match="must tile one range"):
        build_manifest(tmp_path)
    (tmp_path / "fan-nsma-1.pt").unlink()
    (tmp_path / "manifest.json").write_text((array_dir / "manifest.json").read_text())
    with pytest.raises(FadError, match="fan-nsma-1.pt of fan-nsma-1 not found"):
        nsma_bundle_table(tmp_path / "manifest.json")


def test_load_array_from_folder_or_single_checkpoint(array_dir):
    array = load_array(array_dir)
    assert (len(array.table), array.backend) == (4, "torch")
    single = load_array(array_dir / "fan-nsma-2.pt")
    assert len(single.table) == 1 and single.table[0].shot_min == subranges()[2][0]
    with pytest.raises(FadError, match="torch checkpoints"):
        load_array(array_dir, "tflite").runner(0)
    with pytest.raises(FadError, match="unknown backend"):
        load_array(array_dir, "coreml")


def test_array_runners_tile_large_frames_exactly(array_dir):
    runner = load_array(array_dir).runner(1)
    assert isinstance(runner, TiledRunner)
    u = np.random.default_rng(0).random((1, 4, 72, 56)).astype(np.float32)
    small_tiles = TiledRunner(runner.inner, runner.spec, tile=runner.spec.margin * 2 + runner.spec.align * 2)
    whole = runner.inner.run(mirrored(u))[..., BORDER:-BORDER, BORDER:-BORDER]  # one run, mirrored border and all
    np.testing.assert_allclose(small_tiles.run(u), whole, atol=1e-5)


def test_evaluation_compares_array_and_single(array_dir):
    array = load_array(array_dir)
    levels = subrange_levels(array.table, 2)
    assert all(e.shot_min < lv < e.shot_max for e, pair in zip(array.table, levels.reshape(4, 2)) for lv in pair)
    pairs = synth_pairs([("astronaut", skimage_photo("astronaut"))], 48, 1, levels[::2], seed=0)
    model = build("fan", TINY_FAN)
    single = TorchRunner(Checkpoint("single", "fan", model_config(model), model.state_dict()))
    result = compare(array, single, pairs, "single")
    assert set(result["overall"]) == {"noisy", "single", "array", "array (estimated a)"}
    assert [r["images"] for r in result["per_subrange"]] == [1, 1, 1, 1]
    assert 0.0 <= result["selection_accuracy_estimated"] <= 1.0
    assert all(math.isfinite(v) for r in result["overall"].values() for v in r.values())


# ---- fad-denoise end to end -------------------------------------------------------------------------

def camera_dng(path, a: float = 2e-3, noise_profile=None, cfa: str = "RGGB"):
    """A noisy 256x256 DNG like a camera writes: 10-bit, black level 64, optional NoiseProfile."""
    planes = np.clip(noisy_crop("astronaut", a, np.random.default_rng(3)), 0, 1)
    mosaic = RawImage(planes, cfa, (0.0,) * 4, 1.0).mosaic()
    values = np.round(BLACK + mosaic * (WHITE - BLACK))
    return make_dng(path, values, cfa=cfa, black=(BLACK,) * 4, white=WHITE, noise_profile=noise_profile,
                    neutral=(0.5, 1.0, 0.6))


def run_denoise(capsys, *argv) -> tuple[int, str, str]:
    try:
        fad_denoise([str(a) for a in argv])
        code = 0
    except SystemExit as e:
        code = e.code
    out, err = capsys.readouterr()
    return code, out, err


def test_denoise_dng_with_estimated_noise(tmp_path, array_dir, capsys):
    dng = camera_dng(tmp_path / "shot.dng", a=2e-3)
    code, out, err = run_denoise(capsys, dng, "--model-bundle", array_dir)
    assert code == 0, err
    assert "estimated from the image" in out and "-> fan-nsma-2" in out  # a=2e-3: sub-range 2's centre
    result = read_raw(tmp_path / "shot-denoised.dng")
    source = read_raw(dng)
    assert result.planes.shape == source.planes.shape and result.cfa == "RGGB"
    assert result.wb == pytest.approx(source.wb, rel=1e-4)
    from PIL import Image

    assert np.asarray(Image.open(tmp_path / "shot-denoised.png")).shape == (256, 256, 3)


@pytest.mark.parametrize("shot, read, level", [([-1e-7, 0.0], [0.0], "a=-8e-05, b=0"),
                                               ([1e-4], [-1e-4], "a=0.0001, b=-0.0001"), ([1e-3, 0.0], [0.0], "a=0.8, b=0")])
def test_a_camera_profile_giving_levels_out_of_range_is_refused(shot, read, level):
    """A negative a or b, or an a far above any noise, had been run, a = 0.8 ruining the image."""
    profiles = {"cam": profile_from_dict("cam", {"shot": shot, "read": read, "iso_range": [100, 3200]})}
    with pytest.raises(FadError, match=f"camera profile 'cam' at ISO 800 gives {level}: outside the levels "
                                       "fad-denoise takes"):
        given_noise(iso=800, camera="cam", profiles=profiles)


def test_denoise_dng_uses_its_noise_profile_and_flags(tmp_path, array_dir, capsys):
    dng = camera_dng(tmp_path / "profiled.dng", noise_profile=(2e-4, 1e-7), cfa="GRBG")
    code, out, err = run_denoise(capsys, dng, "--model-bundle", array_dir, "--out", tmp_path / "o" / "x.dng")
    assert code == 0, err
    assert "noise profile in the file" in out and "-> fan-nsma-0" in out  # the file's a wins over the pixels
    assert read_raw(tmp_path / "o" / "x.dng").cfa == "GRBG" and (tmp_path / "o" / "x.png").is_file()
    with pytest.warns(ShotOutOfRangeWarning, match="a=0.03"):
        code, out, err = run_denoise(capsys, dng, "--model-bundle", array_dir, "--shot-noise", "0.03",
                                     "--out", tmp_path / "o")
    assert code == 0 and "clamped" in out and "-> fan-nsma-3" in out
    assert "every sub-range" not in out  # the clamp's reason is told once, by the warning


def test_denoise_synth_set_and_folder(tmp_path, array_dir, capsys):
    levels = [1.5e-4, 5e-3]
    pairs = synth_pairs([("coffee", skimage_photo("coffee"))], 32, 2, levels, seed=0)
    folder = tmp_path / "in"
    save_pairs(folder / "set.npz", pairs)
    camera_dng(folder / "a.dng")
    code, out, err = run_denoise(capsys, folder, "--model-bundle", array_dir)
    assert code == 0, err
    assert "4 images by their noise level (annotated in the set): fan-nsma-0 x2, fan-nsma-3 x2" in out
    with np.load(folder / "denoised" / "set-denoised.npz") as f:
        assert f["denoised"].shape == pairs["noisy"].shape
        assert list(f["model"]) == ["fan-nsma-0", "fan-nsma-3"] * 2
        np.testing.assert_array_equal(f["clean"], pairs["clean"])
    assert sorted(p.name for p in (folder / "denoised").iterdir()) == [
        "a-denoised.dng", "a-denoised.png", "set-denoised.npz", "set-denoised.png"]


def test_denoise_says_when_most_of_a_frame_is_at_white(tmp_path, array_dir, capsys):
    """Pixels at or above the white level stay as they are: a frame that is mostly such comes back
    nearly unchanged, and the user hears why (overexposed, or a wrong white level in the file)."""
    values = np.full((32, 32), WHITE)
    values[:8] = BLACK + 100
    dng = make_dng(tmp_path / "white.dng", values, black=(BLACK,) * 4, white=WHITE)
    with pytest.warns(UserWarning, match="75% of the pixels are at or above the file's white level"):
        code, _, err = run_denoise(capsys, dng, "--model-bundle", array_dir, "--shot-noise", "2e-3")
    assert code == 0, err


@pytest.mark.parametrize("cfa", ["RGGB", "GBRG"])
def test_denoise_preview_has_the_frames_size(tmp_path, array_dir, capsys, cfa):
    values = np.random.default_rng(0).integers(BLACK, WHITE, (45, 51))  # odd height and width
    dng = make_dng(tmp_path / "odd.dng", values, cfa=cfa, black=(BLACK,) * 4, white=WHITE)
    code, out, err = run_denoise(capsys, dng, "--model-bundle", array_dir, "--shot-noise", "2e-3")
    assert code == 0, err
    from PIL import Image

    assert np.asarray(Image.open(tmp_path / "odd-denoised.png")).shape == (45, 51, 3)
    assert read_raw(tmp_path / "odd-denoised.dng").mosaic().shape == (45, 51)


def test_a_folder_lists_raw_tiffs_but_not_tiff_images(tmp_path):
    from PIL import Image

    make_dng(tmp_path / "cam.tif", np.random.default_rng(0).integers(BLACK, WHITE, (32, 32)))  # a DNG named .tif
    Image.new("RGB", (32, 32)).save(tmp_path / "scan.tif")
    (tmp_path / "notes.txt").write_text("not an image")
    assert [p.name for p in list_inputs(tmp_path)] == ["cam.tif"]


def test_a_folder_skips_hidden_files_and_earlier_outputs_with_a_warning(tmp_path):
    values = np.random.default_rng(0).integers(BLACK, WHITE, (32, 32))
    for name in ("a.dng", "a-denoised.dng", ".a-denoised.dng.k3j4.part.dng"):
        make_dng(tmp_path / name, values)
    with pytest.warns(UserWarning, match=r"skipped 2 files hidden or written by an earlier run \(<name>-denoised"):
        assert [p.name for p in list_inputs(tmp_path)] == ["a.dng"]
    assert [p.name for p in list_inputs(tmp_path / "a-denoised.dng")] == ["a-denoised.dng"]  # named: taken


def test_denoise_keeps_the_orientation_and_shows_the_preview_upright(tmp_path, array_dir, capsys):
    from numpy2dng.dng import Tag
    from PIL import Image

    values = np.random.default_rng(0).integers(BLACK, WHITE, (40, 64))
    dng = make_dng(tmp_path / "portrait.dng", values, black=(BLACK,) * 4, white=WHITE, extra=[(Tag.Orientation, 6)])
    code, out, err = run_denoise(capsys, dng, "--model-bundle", array_dir, "--shot-noise", "2e-3")
    assert code == 0, err
    assert read_raw(tmp_path / "portrait-denoised.dng").kept["Orientation"] == 6
    assert np.asarray(Image.open(tmp_path / "portrait-denoised.png")).shape == (64, 40, 3)  # turned upright


def test_denoise_keeps_clipped_pixels_white(tmp_path, array_dir, capsys):
    planes = np.clip(noisy_crop("astronaut", 2e-3, np.random.default_rng(3)) * 2.5, 0, 1)  # a clipped highlight
    mosaic = RawImage(planes, "RGGB", (0.0,) * 4, 1.0).mosaic()
    dng = make_dng(tmp_path / "bright.dng", np.round(BLACK + mosaic * (WHITE - BLACK)), black=(BLACK,) * 4,
                   white=WHITE)
    code, out, err = run_denoise(capsys, dng, "--model-bundle", array_dir, "--shot-noise", "2e-3")
    assert code == 0, err
    noisy = read_raw(dng).planes
    clipped = noisy >= 1
    result = read_raw(tmp_path / "bright-denoised.dng").planes
    assert clipped.any() and (result[clipped] == 1).all()
    assert np.abs(result[~clipped] - noisy[~clipped]).mean() > 1e-3  # the rest is denoised


def test_denoise_keeps_a_black_frame_black_on_average(tmp_path, capsys):
    """Its sensor noise alone (a = 2e-3, read noise on the line: 4.4 DN): clipped at the black level,
    the denoised values had averaged 0.23 DN above it (a lifted black); kept below it, they average
    to about it, as a DNG (down to 0 DN) holds them. The shipped array."""
    a = 2e-3
    noise_dn = math.sqrt(read_from_shot(a)) * (WHITE - BLACK)
    values = np.round(BLACK + np.random.default_rng(0).normal(0, noise_dn, (128, 128)))
    dng = make_dng(tmp_path / "black.dng", values, black=(BLACK,) * 4, white=WHITE)
    code, out, err = run_denoise(capsys, dng, "--shot-noise", a)
    assert code == 0, err
    result = read_raw(tmp_path / "black-denoised.dng").planes * (WHITE - BLACK)  # DN above black
    assert abs(result.mean()) < 0.15 and result.min() < 0 and result.std() < noise_dn / 2  # clipped: +0.23


def test_the_int8_array_denoises_a_bright_frame_at_the_low_end_of_a_models_range():
    """A flat 90 % grey frame at a = 1.2e-3 (fan-nsma-2's range starts at 1.1e-3) maps above that
    model's int8 input grid: run at its own level, the shipped int8 array had left more than twice
    the float model's error (this test fails with Runner.grid_fill None)."""
    noise = NoiseParams(1.2e-3, float(read_from_shot(1.2e-3)))
    clean = np.full((1, 4, 64, 64), 0.9, np.float32)
    noisy = add_noise(clean, noise, np.random.default_rng(0))
    arrays = {b: load_array(None, b) for b in ("torch", "tflite-int8")}
    index = arrays["torch"].select(noise.shot).index
    rmse = {b: float(np.sqrt(np.mean((arr.denoise(noisy, noise, index) - clean) ** 2))) for b, arr in arrays.items()}
    assert rmse["tflite-int8"] < 2 * rmse["torch"] < 0.6 * float(np.sqrt(np.mean((noisy - clean) ** 2))), rmse


def test_denoise_runs_read_dominated_images_at_the_network_level(tmp_path, array_dir, capsys):
    pairs = synth_pairs([("coffee", skimage_photo("coffee"))], 32, 1, [1e-4], seed=0, read=1e-4)
    save_pairs(tmp_path / "read.npz", pairs)
    code, out, err = run_denoise(capsys, tmp_path / "read.npz", "--model-bundle", array_dir)
    assert code == 0, err
    assert ("the image's own a=0.0001, b=0.0001: read noise above the band the networks run as it is (100 times "
            "UPI's line") in out
    with np.load(tmp_path / "read-denoised.npz") as f:
        x = pairs["noisy"][0].mean()
        run_at = NoiseParams(float(f["denoised_shot"][0]), float(f["denoised_read"][0]))
        assert run_at.shot > 1e-4 and run_at.variance(x) == pytest.approx(NoiseParams(1e-4, 1e-4).variance(x),
                                                                          rel=1e-5)


def test_denoise_below_the_range_runs_at_its_floor_and_keeps_a_share(tmp_path, array_dir, capsys):
    """A network run at a far below the levels it learnt returns garbage: below the array's range
    the first model runs at the range's floor and keeps the share of its change that the image's
    noise variance is of the floor's."""
    floor = SHOT_RANGE[0]
    noise = NoiseParams(3e-5, 1e-8)  # read noise inside the band the networks run as it is at a and at the floor
    pairs = synth_pairs([("coffee", skimage_photo("coffee"))], 32, 1, [noise.shot], seed=0, read=noise.read)
    save_pairs(tmp_path / "low.npz", pairs)
    save_pairs(tmp_path / "floor.npz", {**pairs, "shot": np.full_like(pairs["shot"], floor)})
    with pytest.warns(ShotOutOfRangeWarning, match="with part of its change kept"):
        code, _, err = run_denoise(capsys, tmp_path / "low.npz", "--model-bundle", array_dir)
    assert code == 0, err
    code, _, err = run_denoise(capsys, tmp_path / "floor.npz", "--model-bundle", array_dir)
    assert code == 0, err
    with np.load(tmp_path / "low-denoised.npz") as low, np.load(tmp_path / "floor-denoised.npz") as at_floor:
        change = at_floor["denoised"] - pairs["noisy"]
        assert np.abs(change).max() > 1e-3
        w = floor_level(noise, pairs["noisy"][0].mean(), floor)[1]
        assert 0.2 < w < 0.4
        np.testing.assert_allclose(low["denoised"] - pairs["noisy"], w * change, atol=1e-6)


def test_denoise_bad_input_exits_2_without_outputs(tmp_path, array_dir, capsys):
    folder = tmp_path / "in"
    folder.mkdir()
    camera_dng(folder / "good.dng")
    (folder / "z-broken.dng").write_bytes(b"II*\x00 not really a DNG")  # read after good.dng
    clash = tmp_path / "clash"
    clash.mkdir()
    for name in ("a.dng", "a.nef", "b.dng"):  # a.dng and a.nef would both write a-denoised.dng and .png
        (clash / name).write_bytes((folder / "good.dng").read_bytes())
    cases = [
        ((tmp_path / "missing.dng",), "missing.dng: no such file or folder"),
        ((folder,), "z-broken.dng: cannot read RAW file"),  # one bad file: nothing written for the good one
        ((tmp_path / "empty",), "no RAW files"),
        ((folder / "good.dng", "--read-noise", "1e-5"), "without the shot noise"),
        ((folder / "good.dng", "--out", tmp_path / "x.npz"), "is written as .dng"),
        ((folder / "good.dng", "--out", tmp_path / "x.png"), "good.dng is written as .dng, not .png"),
        ((clash,), f"{clash}: a.dng, a.nef would overwrite each other's outputs"),
        ((folder / "good.dng", "--model-bundle", tmp_path), "no manifest.json"),
    ]
    (tmp_path / "empty").mkdir()
    for argv, message in cases:
        bundle = () if "--model-bundle" in argv else ("--model-bundle", array_dir)
        code, out, err = run_denoise(capsys, *argv, *bundle)
        assert code == 2 and message in err and len(err.strip().splitlines()) == 1, (argv, err)
    assert not (folder / "denoised").exists()
    assert sorted(p.name for p in folder.iterdir()) == ["good.dng", "z-broken.dng"]
    assert not list(tmp_path.glob("*.npz")) and not (tmp_path / "x.png").exists()
    assert sorted(p.name for p in clash.iterdir()) == ["a.dng", "a.nef", "b.dng"]
