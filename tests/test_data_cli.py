"""fad-data: fetch, synth (byte-identical on re-run), cache and info; every bad input is
one line on stderr, exit code 2, and no output file."""
from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from fad_deploy.cli.data import main
from fad_deploy.data.patch_cache import load_patch_cache
from fad_deploy.data.photos import DEBIAN_PHOTOS, fetch_debian_photos, skimage_photo
from fad_deploy.data.raw_io import from_mosaic, read_raw, write_dng
from fad_deploy.data.synth import PAIR_KEYS, load_pairs

SYNTH = ["--crop", "12", "--crops-per-image", "2", "--levels", "3", "--downscale", "1"]


@pytest.fixture
def photos(tmp_path):
    folder = tmp_path / "photos"
    folder.mkdir()
    for name in ("chelsea", "coffee"):
        Image.fromarray((skimage_photo(name) * 255).astype(np.uint8)).resize((64, 48)).save(folder / f"{name}.png")
    return folder


def run_main(argv, capsys):
    """main(argv) -> (exit code, stdout, stderr)."""
    try:
        main(argv)
        code = 0
    except SystemExit as e:
        code = e.code
    out, err = capsys.readouterr()
    return code, out, err


def on_terminal(text: str) -> list[str]:
    """The lines a terminal would show: carriage returns overwrite (progress bars erase themselves)."""
    return [shown for line in text.split("\n") if (shown := line.rsplit("\r", 1)[-1].strip())]


def assert_user_error(code, err, *names):
    assert code == 2
    lines = on_terminal(err)
    assert len(lines) == 1 and lines[0].startswith("fad-data"), err
    assert "Traceback" not in err
    for name in names:
        assert str(name) in lines[0]


def leftovers(folder):
    return sorted(p.name for p in folder.iterdir())


def test_synth_is_byte_identical_on_rerun(photos, tmp_path, capsys):
    out = tmp_path / "out"
    code, stdout, _ = run_main(["synth", "--images", str(photos), "--out", str(out / "a.npz"), "--seed", "7", *SYNTH],
                               capsys)
    assert code == 0 and "12 pairs (2 photos x 2 crops x 3 noise levels)" in stdout
    run_main(["synth", "--images", str(photos), "--out", str(out / "b.npz"), "--seed", "7", *SYNTH], capsys)
    run_main(["synth", "--images", str(photos), "--out", str(out / "c.npz"), "--seed", "8", *SYNTH], capsys)
    assert (out / "a.npz").read_bytes() == (out / "b.npz").read_bytes()
    assert (out / "a.npz").read_bytes() != (out / "c.npz").read_bytes()
    pairs = load_pairs(out / "a.npz")
    assert pairs["noisy"].shape == (12, 4, 12, 12)
    assert sorted(set(pairs["source"].tolist())) == ["chelsea.png", "coffee.png"]
    assert leftovers(out) == ["a.npz", "b.npz", "c.npz"]


def test_synth_fixed_noise(photos, tmp_path, capsys):
    out = tmp_path / "fixed.npz"
    code, _, _ = run_main(["synth", "--images", str(photos), "--out", str(out), "--crop", "12", "--crops-per-image", "2",
                           "--downscale", "1", "--shot-noise", "0.002", "--read-noise", "1e-5"], capsys)
    assert code == 0
    pairs = load_pairs(out)
    assert len(pairs["noisy"]) == 4  # 2 photos x 2 crops x 1 level
    np.testing.assert_allclose(pairs["shot"], 0.002)
    np.testing.assert_allclose(pairs["read"], 1e-5)


def test_synth_bad_input_leaves_no_output(photos, tmp_path, capsys):
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    out = out_dir / "set.npz"
    (tmp_path / "empty").mkdir()
    broken = tmp_path / "broken"
    broken.mkdir()
    jpeg = photos / "chelsea.png"
    Image.open(jpeg).save(broken / "a.jpg")
    (broken / "b.jpg").write_bytes((broken / "a.jpg").read_bytes()[:300])  # truncated
    cases = [
        (["--images", str(tmp_path / "empty")], ["empty", "no photos"]),
        (["--images", str(tmp_path / "nowhere")], ["nowhere"]),
        (["--images", str(broken)], ["b.jpg", "cannot read photo"]),
        (["--images", str(photos), "--crop", "40"], ["chelsea.png", "coffee.png", "no photo is large enough"]),
        # before the memory such crops would need: no photo holds one
        (["--images", str(photos), "--crop", "100000"], ["chelsea.png", "no photo is large enough"]),
        (["--images", str(photos), "--crops-per-image", "1000000000"], ["memory"]),  # (checked before any photo)
        (["--images", str(photos), "--shot-noise", "-1"], ["-1"]),
        (["--images", str(photos), "--read-noise", "-1"], ["-1"]),
        (["--images", str(photos), "--crop", "10"], ["--crop", "11"]),  # SSIM's window: fad-eval scores it
        (["--images", str(photos), "--levels", "x"], ["--levels"]),
    ]
    for args, names in cases:
        code, _, err = run_main(["synth", "--out", str(out), *SYNTH, *args], capsys)
        assert_user_error(code, err, *names)
        assert leftovers(out_dir) == []
    code, _, err = run_main(["synth", "--images", str(photos), "--out", str(out_dir), *SYNTH], capsys)
    assert_user_error(code, err, out_dir, "folder")


def test_cache_builds_a_patch_cache(photos, tmp_path, capsys):
    out = tmp_path / "cache.npz"
    code, stdout, _ = run_main(["cache", "--images", str(photos), "--out", str(out), "--patch", "9",
                                "--patches-per-photo", "3", "--downscale", "1"], capsys)
    assert code == 0 and "6 patches of 4x9x9 from 2 photos" in stdout
    assert load_patch_cache(out)["raw"].shape == (6, 4, 9, 9)
    code, _, err = run_main(["cache", "--images", str(photos), "--out", str(tmp_path / "tiny.npz"), "--patch", "8"],
                            capsys)
    assert_user_error(code, err, "--patch", "expected a whole number >= 9, got '8'")
    code, _, err = run_main(["cache", "--images", str(photos), "--out", str(tmp_path / "big.npz"), "--patch", "64",
                             "--downscale", "1"], capsys)
    assert_user_error(code, err, "no photo is large enough")
    assert not (tmp_path / "big.npz").exists()


def test_info_describes_sets_caches_and_raw(photos, tmp_path, capsys):
    run_main(["synth", "--images", str(photos), "--out", str(tmp_path / "set.npz"), *SYNTH], capsys)
    code, out, _ = run_main(["info", str(tmp_path / "set.npz")], capsys)
    assert code == 0 and "12 noisy/clean pairs of packed (4, 12, 12)" in out and "3 shot levels" in out
    run_main(["cache", "--images", str(photos), "--out", str(tmp_path / "cache.npz"), "--patch", "9",
              "--patches-per-photo", "2", "--downscale", "1"], capsys)
    code, out, _ = run_main(["info", str(tmp_path / "cache.npz")], capsys)
    assert code == 0 and "patch cache (fad-data cache): 4 patches of packed (4, 9, 9) float16" in out
    np.savez(tmp_path / "other.npz", weights=np.zeros((2, 3)))
    code, out, _ = run_main(["info", str(tmp_path / "other.npz")], capsys)
    assert "weights: (2, 3) float64" in out

    # A DNG written by the project's own writer from a SIDD-style normalised mosaic.
    src = from_mosaic(np.random.default_rng(0).uniform(0, 1, (24, 24)), "GBRG", np.zeros(4), 1.0, "mem",
                      wb=(2.0, 1.5))
    write_dng(tmp_path / "x.dng", src, src.planes)
    code, out, _ = run_main(["info", str(tmp_path / "x.dng")], capsys)
    assert code == 0
    assert "mosaic: 24x24 (width x height), CFA GBRG" in out and "white level 65535" in out and "red gain 2" in out
    assert read_raw(tmp_path / "x.dng").cfa == "GBRG"


def test_info_bad_files(tmp_path, capsys):
    (tmp_path / "junk.npz").write_bytes(b"not a zip")
    (tmp_path / "junk.dng").write_bytes(b"not a raw" * 50)
    for name in ("junk.npz", "junk.dng", "missing.dng"):
        code, _, err = run_main(["info", str(tmp_path / name)], capsys)
        assert_user_error(code, err, tmp_path / name)
    # malformed sets and caches: what training or evaluation would refuse, said as they would say it
    np.savez(tmp_path / "no_pairs.npz", **{k: np.zeros((0, 4, 8, 8) if k in ("noisy", "clean") else (0,))
                                            for k in PAIR_KEYS})
    np.savez(tmp_path / "flat_cache.npz", raw=np.zeros(()), red_gain=1, blue_gain=1, rgb_gain=1, cam2rgb=np.eye(3))
    for name, message in (("no_pairs.npz", "the set holds no pairs"),
                          ("flat_cache.npz", "raw must hold float patches of shape (N, 4, h, w)")):
        code, _, err = run_main(["info", str(tmp_path / name)], capsys)
        assert_user_error(code, err, f"{tmp_path / name}: {message}")


def fake_tool(folder, name, script):
    path = folder / name
    path.write_text("#!/bin/sh\n" + script + "\n")
    path.chmod(0o755)


def test_fetch_errors_without_apt_and_when_download_fails(tmp_path, capsys, monkeypatch):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    monkeypatch.setenv("PATH", str(bin_dir))
    code, _, err = run_main(["fetch", "--dest", str(tmp_path / "photos")], capsys)
    assert_user_error(code, err, "apt-get not found")
    fake_tool(bin_dir, "apt-get", "echo 'E: Unable to locate package' >&2; exit 100")
    fake_tool(bin_dir, "dpkg", "exit 1")
    code, _, err = run_main(["fetch", "--dest", str(tmp_path / "photos")], capsys)
    assert_user_error(code, err, "apt-get download", "Unable to locate package")
    assert not any((tmp_path / "photos").rglob("*.jpg"))


def test_fetch_keeps_the_largest_version_of_each_wallpaper(tmp_path, monkeypatch):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake_tool(bin_dir, "apt-get", 'touch "$2"_1.0_all.deb')  # apt-get download PKG, in the working folder
    images = "$3/usr/share/wallpapers/Kite/contents/images"
    fake_tool(bin_dir, "dpkg", f'mkdir -p "{images}" && printf 1 > "{images}/640x480.jpg" '
                               f'&& printf 12345 > "{images}/2560x1440.jpg" && printf 12 > "{images}/1920x1080.jpg"')
    monkeypatch.setenv("PATH", f"{bin_dir}:/usr/bin:/bin")
    found = fetch_debian_photos(tmp_path / "photos", ["plasma-workspace-wallpapers"], progress=lambda _: None)
    kept = tmp_path / "photos" / "train" / "plasma-workspace-wallpapers"
    assert found == {"train": [kept / "usr_share_wallpapers_Kite_contents_images_2560x1440.jpg"]}
    assert sorted(p.name for p in kept.parent.iterdir()) == ["plasma-workspace-wallpapers"]  # no staging left


def test_fetch_counts_photos_per_split_and_skips_what_is_there(tmp_path, capsys, monkeypatch):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("apt-get", "dpkg"):
        fake_tool(bin_dir, tool, "exit 1")  # must not be called
    monkeypatch.setenv("PATH", str(bin_dir))
    monkeypatch.setenv("FAD_CACHE", str(tmp_path / "cache"))
    for i, (pkg, spec) in enumerate(DEBIAN_PHOTOS.items()):
        folder = tmp_path / "cache" / "photos" / spec["split"] / pkg
        folder.mkdir(parents=True)
        for j in range(i + 1):
            Image.new("RGB", (4, 4)).save(folder / f"{j}.jpg")
    code, out, _ = run_main(["fetch"], capsys)  # default destination: $FAD_CACHE/photos
    assert code == 0
    splits = {spec["split"] for spec in DEBIAN_PHOTOS.values()}
    expected = {s: sum(i + 1 for i, spec in enumerate(DEBIAN_PHOTOS.values()) if spec["split"] == s) for s in splits}
    for split, n in expected.items():
        assert f"{split}: {n} photos in {tmp_path / 'cache' / 'photos' / split}" in out
    assert f"total: {sum(expected.values())} photos" in out


def test_help_explains_every_command(capsys):
    code, out, _ = run_main(["--help"], capsys)
    assert code == 0 and all(c in out for c in ("fetch", "synth", "cache", "info"))
    for command, words in {"fetch": ["apt-get download", "dpkg -x"], "synth": ["byte-identical", "--shot-noise"],
                           "cache": ["--patches-per-photo"], "info": ["SIDD", "DND"]}.items():
        code, out, _ = run_main([command, "--help"], capsys)
        assert code == 0 and all(w in " ".join(out.split()) for w in words), command


def test_an_unknown_option_is_reported_by_its_sub_command(photos, capsys):
    code, _, err = run_main(["info", str(photos / "chelsea.png"), "--bogus"], capsys)
    assert code == 2 and err.strip() == "fad-data info: error: unrecognized arguments: --bogus"
    code, _, err = run_main(["--bogus"], capsys)  # no sub-command yet: the program's own error
    assert code == 2 and err.strip().startswith("fad-data: error:")


def test_console_script_error_is_one_line(tmp_path):
    """The installed entry point end to end: a truncated DNG (LibRaw prints to C's stderr)."""
    data = dng_bytes(tmp_path / "good.dng")
    (tmp_path / "bad.dng").write_bytes(data[: len(data) // 2])
    run = subprocess.run([sys.executable, "-c", "from fad_deploy.cli.data import main; main()", "info",
                          str(tmp_path / "bad.dng")], capture_output=True, text=True, env={**os.environ})
    assert run.returncode == 2
    assert run.stderr.count("\n") == 1 and run.stderr.startswith(f"fad-data: error: {tmp_path / 'bad.dng'}: ")
    assert run.stdout == ""


def dng_bytes(path):
    src = from_mosaic(np.full((32, 32), 0.5), "RGGB", np.zeros(4), 1.0, "mem")
    write_dng(path, src, src.planes)
    return path.read_bytes()
