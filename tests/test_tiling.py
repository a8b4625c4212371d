"""Exact tiling (fad_deploy.runners.tiling): the measured receptive-field margin, tiles of
every backend equal to one whole-frame run on sizes that are not multiples of the
alignment, the export manifest's tiling entry (and bundles from before it), and
`fad-denoise` on odd-sized frames with its default int8 TFLite backend."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch.nn as nn

from fad_deploy.cli.denoise import main as fad_denoise
from fad_deploy.data.noise import SHOT_RANGE
from fad_deploy.data.raw_io import read_raw
from fad_deploy.errors import FadError
from fad_deploy.export.manifest import TILING_RULE, entry_tiling, read_bundle, tiling_record
from fad_deploy.models.registry import load_checkpoint
from fad_deploy.runners import BACKENDS, load_runner
from fad_deploy.runners.tiling import (BORDER, TiledRunner, TileSpec, arch_tile_spec, axis_tiles, receptive_reach,
                                       round_up, tile_spec, tiled_run)
from fad_deploy.runners.torch_runner import TorchRunner
from test_profile import TINY_FAN, randomised
from test_quant_export import SIZE, exported, workdir  # noqa: F401 - the tiny exported bundle (fixtures)
from test_raw_io import make_dng

# Largest |tiled - whole| over the frames below (measured: 0 for the int8 files, whose integer
# kernels are exact; float backends differ by their kernels' summation order only).
TOLERANCE = {"torch": 1e-5, "onnx-fp32": 1e-5, "tflite-fp32": 1e-5, "onnx-int8": 0.0, "tflite-int8": 0.0}
FRAMES = [(150, 190), (37, 53), (13, 21)]  # packed sizes: not multiples of 4, odd, smaller than one tile

pytestmark = pytest.mark.usefixtures("one_thread")


class FixedSize(TorchRunner):
    """A stand-in for a fixed-shape model that cannot be resized: refuses any other input size."""

    input_size = (32, 32)

    def run(self, u):
        assert tuple(u.shape[-2:]) == self.input_size, u.shape
        return super().run(u)


def padded(u: np.ndarray, hw: tuple[int, int]) -> np.ndarray:
    """``u`` replicate-padded on the bottom/right to ``hw``."""
    return np.pad(u, ((0, 0), (0, 0), (0, hw[0] - u.shape[-2]), (0, hw[1] - u.shape[-1])), mode="edge")


def test_receptive_reach_of_known_stacks():
    one = nn.Conv2d(4, 4, 3, padding=1)
    two = nn.Sequential(nn.Conv2d(4, 4, 3, padding=1), nn.Conv2d(4, 4, 5, padding=2))
    assert receptive_reach(one, 1) == 1 and receptive_reach(two, 1) == 3
    gated = nn.Sequential(nn.Conv2d(4, 4, 3, padding=1), nn.AdaptiveAvgPool2d(1))  # as CycleISP's attention
    with pytest.raises(FadError, match=r"global pooling \(1\) makes every output pixel depend on the whole frame"):
        receptive_reach(gated, 1)  # at once, not after probing frames up to 4096 pixels wide


@pytest.mark.parametrize("length, tile, margin", [(200, 32, 8), (40, 32, 8), (32, 32, 8), (1520, 256, 32)])
def test_axis_tiles_cover_the_axis_with_equal_aligned_tiles_and_their_margins(length, tile, margin):
    tiles = axis_tiles(length, tile, margin)
    assert [c0 for _, _, c0, _ in tiles] == [0, *(c1 for _, _, _, c1 in tiles[:-1])] and tiles[-1][3] == length
    for t0, t1, c0, c1 in tiles:
        assert t1 - t0 == min(tile, length) and 0 <= t0 and t1 <= length and t0 % 4 == 0
        assert t0 <= max(0, c0 - margin) and t1 >= min(length, c1 + margin)  # context on every inner side
    with pytest.raises(FadError, match="too small for a receptive-field margin of 16"):
        axis_tiles(100, 32, 16)


def test_tiled_output_equals_untiled():
    ckpt = randomised("fan", TINY_FAN)
    runner = TorchRunner(ckpt)
    spec = tile_spec(runner.model)
    assert spec.align == 4 and spec.margin % 4 == 0
    u = np.random.default_rng(1).random((2, 4, 70, 101), dtype=np.float32)  # not multiples of the alignment
    whole = runner.run(u)
    assert np.abs(tiled_run(runner, u, spec, tile=32) - whole).max() < 1e-4
    assert np.abs(tiled_run(FixedSize(ckpt), u, spec) - whole).max() < 1e-4
    too_little = TileSpec(margin=0, align=spec.align)  # the margin is what makes it exact
    assert np.abs(tiled_run(runner, u, too_little, tile=32) - whole).max() > 1e-3
    small = u[..., :20, :27]  # smaller than the fixed size: padded up to it, one run
    np.testing.assert_array_equal(tiled_run(FixedSize(ckpt), small, spec),
                                  FixedSize(ckpt).run(padded(small, (32, 32)))[..., :20, :27])


def test_a_small_fixed_input_runs_a_frame_that_fits_it_without_the_border():
    """A file exported at a small input (32x32 with a margin of 16: the mirrored frame would need
    tiles with no core) runs a 32x32 frame in one tile, as it is; a smaller margin keeps the border."""
    ckpt = randomised("fan", TINY_FAN)
    runner = FixedSize(ckpt)
    u = np.random.default_rng(2).random((1, 4, 32, 32), dtype=np.float32)
    tight = TiledRunner(runner, TileSpec(margin=16, align=4))
    assert tight.border(32, 32) == 0
    np.testing.assert_array_equal(tight.run(u), runner.run(u))
    assert TiledRunner(runner, TileSpec(margin=4, align=4)).border(32, 32) == BORDER


# The int8 bundle's backends; a 16x8 file's tiles are checked in test_quant_export's int16 test.
@pytest.mark.parametrize("backend", [b for b in BACKENDS if b != "tflite-int16"])
def test_tiles_of_every_backend_equal_one_whole_frame_run(exported, backend):  # noqa: F811 - fixture
    """Tiles of SIZE (the TFLite files' fixed input; the same for the others) on frames that
    are not multiples of the alignment, odd, or smaller than one tile."""
    runner = load_runner(backend, exported.parent / "tiny.pt" if backend == "torch" else exported, threads=1)
    spec = entry_tiling(read_bundle(exported)["models"][0], exported)
    assert runner.input_size in (None, (SIZE, SIZE))
    rng = np.random.default_rng(4)
    for h, w in FRAMES:
        u = rng.uniform(0, 2, (1, 4, h, w)).astype(np.float32)
        whole = runner.run(padded(u, (round_up(h, spec.align), round_up(w, spec.align))))
        diff = np.abs(tiled_run(runner, u, spec, tile=SIZE) - whole[..., :h, :w]).max()
        assert diff <= TOLERANCE[backend], (backend, (h, w), diff)


def test_manifest_tiling_entry_round_trips_and_older_bundles_measure_it(exported, tmp_path):  # noqa: F811
    entry = read_bundle(exported)["models"][0]
    spec = arch_tile_spec("fan", entry["config"])
    assert entry["tiling"] == {"tile": [SIZE, SIZE], "margin": spec.margin, "align": spec.align, "rule": TILING_RULE}
    assert entry_tiling(entry, exported) == spec == TileSpec(8, 4)
    assert entry_tiling({k: v for k, v in entry.items() if k != "tiling"}, exported) == spec  # older bundles
    for bad in ({"margin": "x", "align": 4}, {"align": 4}, {"margin": 6, "align": 4}, {"margin": 8, "align": 0}):
        with pytest.raises(FadError, match="'tiling' needs"):
            entry_tiling({**entry, "tiling": bad}, exported)
    with pytest.raises(FadError, match="input size 16x16: tiles of tiny need more than twice .* margin of 8"):
        tiling_record(load_checkpoint(exported.parent / "tiny.pt"), (16, 16))


def array_bundle(exported, folder, tiling: bool):  # noqa: F811
    """The tiny export as a one-model array over the whole noise range (with or without its tiling entry)."""
    shutil.copytree(exported, folder)
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest["subranges"] = [{"name": "tiny", "file": "tiny.int8.tflite", "shot_min": SHOT_RANGE[0],
                              "shot_max": SHOT_RANGE[1]}]
    if not tiling:
        del manifest["models"][0]["tiling"]
    (folder / "manifest.json").write_text(json.dumps(manifest))
    return folder


def test_fad_denoise_default_tflite_takes_odd_frames_with_or_without_the_tiling_entry(exported, tmp_path, capsys):  # noqa: F811
    values = np.random.default_rng(5).integers(100, 900, (301, 379))  # odd Bayer size: packed 151x190
    dng = make_dng(tmp_path / "frame.dng", values, cfa="GRBG")
    outputs = []
    for tiling in (True, False):
        bundle = array_bundle(exported, tmp_path / f"bundle-{tiling}", tiling)
        out = tmp_path / f"out-{tiling}.dng"
        fad_denoise([str(dng), "--model-bundle", str(bundle), "--shot-noise", "1e-3", "--out", str(out)])
        assert "backend tflite-int8" in capsys.readouterr().out
        result = read_raw(out)
        assert result.mosaic_shape == (301, 379) and result.cfa == "GRBG"
        outputs.append(result.mosaic())
    np.testing.assert_array_equal(*outputs)  # the measured tiling equals the recorded one
