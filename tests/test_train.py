"""Training: configs, the learning-rate schedule, tiny end-to-end runs, exact resume, DDP."""
from __future__ import annotations

import csv
import json
import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from fad_deploy.cli.train import main, parser
from fad_deploy.data.dataset import CacheConfig, build_patch_cache
from fad_deploy.data.photos import skimage_photo
from fad_deploy.errors import FadError
from fad_deploy.models.registry import Checkpoint, build, load_checkpoint, model_config
from fad_deploy.train.config import ScheduleConfig, TrainConfig, load_config, presets
from fad_deploy.train.trainer import Trainer, lr_at, photos_cache

TINY_MODEL = "model.config={widths: [8, 8, 16], expansions: [1, 1, 1]}"
FAD_TRAIN = Path(sys.executable).with_name("fad-train")
pytestmark = pytest.mark.usefixtures("one_thread")


# ---- config ------------------------------------------------------------------------------


def test_a_photo_folder_gets_a_cache_of_its_own_photos(tmp_path):
    """Another folder of the same name, or a photo added since, must not reuse a cache."""
    for folder, names in (("a/ph", ["x"]), ("b/ph", ["x", "y"])):
        (tmp_path / folder).mkdir(parents=True)
        for name in names:
            Image.new("RGB", (8, 8)).save(tmp_path / folder / f"{name}.png")
    one = [tmp_path / "a/ph/x.png"]
    both = [tmp_path / "b/ph/x.png", tmp_path / "b/ph/y.png"]
    assert photos_cache(tmp_path / "a/ph", one) == photos_cache(tmp_path / "a/ph", one)
    assert photos_cache(tmp_path / "a/ph", one).name.startswith("patches-ph-")
    assert photos_cache(tmp_path / "a/ph", one) != photos_cache(tmp_path / "b/ph", both)
    assert photos_cache(tmp_path / "b/ph", both[:1]) != photos_cache(tmp_path / "b/ph", both)
    latin1 = tmp_path / "b/ph" / os.fsdecode(b"caf\xe9.png")  # a name that is not UTF-8
    Image.new("RGB", (8, 8)).save(latin1)
    assert photos_cache(tmp_path / "b/ph", [latin1]).name.startswith("patches-ph-")


def test_presets_load():
    assert {"teacher", "fan-student", "fan-kd", "charbonnier"} <= set(presets())
    for name in presets():
        cfg = load_config(name)
        assert isinstance(cfg, TrainConfig) and cfg.schedule.steps > 0
    assert load_config("teacher").model.arch == "teacher"
    student = load_config("fan-student").loss
    assert student.distillation > 0 and student.feature_matching > 0 and student.teacher == "teacher"


def test_yaml_file_and_overrides(tmp_path):
    path = tmp_path / "mine.yaml"
    path.write_text("name: mine\nmodel: {arch: unet-plain}\nschedule: {steps: 10, lr: 0.01, warmup: 2}\n")
    cfg = load_config(str(path), ["schedule.lr=1e-3", "data.shot_range=[1e-3, 0.01]", TINY_MODEL,
                                  "loss.distillation=1", "seed=3"])
    assert (cfg.name, cfg.model.arch, cfg.schedule.steps, cfg.seed) == ("mine", "unet-plain", 10, 3)
    assert cfg.schedule.lr == 1e-3 and isinstance(cfg.schedule.lr, float)  # YAML 1.1 reads 1e-3 as a string
    assert cfg.data.shot_range == (1e-3, 0.01)
    assert cfg.model.config == {"widths": [8, 8, 16], "expansions": [1, 1, 1]}
    assert cfg.loss.distillation == 1.0
    assert cfg.data.batch == TrainConfig().data.batch  # untouched settings keep their defaults


@pytest.mark.parametrize("overrides, message", [
    (["schedule.bogus=1"], "unknown setting schedule.bogus"),
    (["optimizer.lr=1"], "unknown setting optimizer "),
    (["schedule.lr"], "must look like key.sub=value"),
    (["name.sub=1"], "name is not a group of settings"),
    (["schedule.lr=[1"], "not valid YAML"),
    (["schedule.steps=many"], "schedule.steps.*whole number.*'many'"),
    (["schedule.lr=fast"], "schedule.lr.*number"),
    (["schedule.keep_best=maybe"], "schedule.keep_best.*true or false"),
    (["schedule.ema=1"], r"schedule.ema.*in \[0, 1\).*1"),
    (["loss.level_weighting=flat"], "loss.level_weighting.*one of anchor, relative.*'flat'"),
    (["data.shot_range=[0.01, 0.001]"], "shot_range.*low < high"),
    (["model=fan"], "model: expected a mapping"),
])
def test_bad_overrides(overrides, message):
    with pytest.raises(FadError, match=message):
        load_config("charbonnier", overrides)


def test_overrides_may_follow_the_options(capsys):
    from fad_deploy.cli.train import main

    with pytest.raises(SystemExit) as e:  # the override after --threads reaches the config, which refuses it
        main(["charbonnier", "--threads", "1", "schedule.steps=0"])
    assert e.value.code == 2
    assert "setting schedule.steps: expected a whole number >= 1, got 0" in capsys.readouterr().err


def test_bad_config_files(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("schedule: [steps: 1\n")
    with pytest.raises(FadError, match=f"{bad}: not valid YAML"):
        load_config(str(bad))
    unknown = tmp_path / "unknown.yaml"
    unknown.write_text("schedule: {stepz: 3}\n")
    with pytest.raises(FadError, match=f"{unknown}: unknown setting schedule.stepz \\(known in schedule."):
        load_config(str(unknown))
    (tmp_path / "empty.yaml").write_text("# nothing yet\n")
    with pytest.warns(UserWarning, match="empty.yaml: holds no settings: every one takes its default"):
        assert load_config(str(tmp_path / "empty.yaml")) == TrainConfig()
    with pytest.raises(FadError, match="missing.yaml: cannot read config"):
        load_config(str(tmp_path / "missing.yaml"))
    (tmp_path / "model.pt").write_bytes(b"PK\x03\x04\x80\xff binary")  # a checkpoint given as the config
    with pytest.raises(FadError, match="model.pt: not a YAML config"):
        load_config(str(tmp_path / "model.pt"))
    with pytest.raises(FadError, match="'nosuch' is neither a config file nor a preset.*teacher"):
        load_config("nosuch")


def test_lr_schedule_warmup_then_cosine():
    sch = ScheduleConfig(steps=110, lr=1e-3, min_lr=1e-5, warmup=10)
    assert lr_at(0, sch) == pytest.approx(1e-4)
    assert lr_at(9, sch) == pytest.approx(1e-3)
    assert lr_at(10, sch) == pytest.approx(1e-3)
    assert lr_at(60, sch) == pytest.approx((1e-3 + 1e-5) / 2)
    assert lr_at(110, sch) == pytest.approx(1e-5)
    assert lr_at(500, sch) == pytest.approx(1e-5)  # stays at the floor
    lrs = [lr_at(s, sch) for s in range(10, 111)]
    assert all(a >= b for a, b in zip(lrs, lrs[1:]))


# ---- tiny runs -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def cache(tmp_path_factory) -> Path:
    """A tiny patch cache from one scikit-image photo (8 unprocessed 24x24 packed patches)."""
    folder = tmp_path_factory.mktemp("photos")
    photo = folder / "chelsea.png"
    Image.fromarray((skimage_photo("chelsea") * 255).round().astype(np.uint8)).save(photo)
    build_patch_cache([photo], folder / "patches.npz",
                      CacheConfig(patch=24, patches_per_photo=8, downscale=1, max_side=512))
    return folder / "patches.npz"


def tiny_overrides(out: Path, cache: Path, steps: int = 4, batch: int = 2, *extra: str) -> list[str]:
    return [f"out={out}", f"data.cache={cache}", "data.crop=16", f"data.batch={batch}", TINY_MODEL,
            f"schedule.steps={steps}", "schedule.warmup=2", "schedule.val_every=2", "schedule.log_every=1",
            "name=tiny", *extra]


def train(out: Path, cache: Path, *extra: str, steps: int = 4, batch: int = 2, resume: bool = True) -> Trainer:
    trainer = Trainer(load_config("charbonnier", tiny_overrides(out, cache, steps, batch, *extra)), command="test")
    trainer.fit(resume=resume)
    return trainer


def read_log(path: Path) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_tiny_cli_run_writes_run_folder_and_card(tmp_path, cache, capsys):
    out, ship = tmp_path / "run", tmp_path / "models" / "tiny.pt"
    main(["charbonnier", *tiny_overrides(out, cache), "--threads", "1", "--ship", str(ship)])
    assert "tiny: 4 steps" in capsys.readouterr().out
    assert {"log.csv", "config.json", "last.pt", "model.pt"} <= {p.name for p in out.iterdir()}
    assert not [p for p in out.iterdir() if p.name.startswith(".")]  # no temporaries left
    rows = read_log(out / "log.csv")
    assert [r["step"] for r in rows] == ["2", "4"]
    assert all(np.isfinite(float(r["loss_total"])) and np.isfinite(float(r["val_raw_psnr"])) for r in rows)
    assert json.loads((out / "config.json").read_text())["schedule"]["steps"] == 4
    ckpt = load_checkpoint(out / "model.pt")
    assert (ckpt.name, ckpt.arch, ckpt.config["widths"]) == ("tiny", "fan", [8, 8, 16])
    card = ckpt.card
    assert card["command"].startswith("fad-train charbonnier out=")  # the command that was run
    assert (card["steps"], card["samples_seen"], card["world_size"]) == (4, 8, 1)
    assert card["data"]["patch_cache"] == "patches.npz" and card["data"]["patches"] == 8
    assert card["validation_raw_psnr"] == pytest.approx(float(rows[-1]["val_raw_psnr"]), abs=1e-3)
    assert card["training_time_s"] >= 0 and card["teacher"] is None
    shipped = load_checkpoint(ship)
    assert all(torch.equal(shipped.state_dict[k], v) for k, v in ckpt.state_dict.items())


class Killed(Exception):
    pass


def train_killed_at_step_3(out: Path, cache: Path, monkeypatch, *extra: str) -> None:
    """A run whose process dies in step 3: step 2 was checkpointed, step 3 is lost."""
    real_batch = Trainer.batch

    def batch_then_die(self, step):
        if step == 3:
            raise Killed
        return real_batch(self, step)

    monkeypatch.setattr(Trainer, "batch", batch_then_die)
    with pytest.raises(Killed):
        train(out, cache, *extra)
    monkeypatch.setattr(Trainer, "batch", real_batch)


def test_exact_resume_after_a_kill(tmp_path, cache, monkeypatch):
    straight = train(tmp_path / "straight", cache)
    train_killed_at_step_3(tmp_path / "killed", cache, monkeypatch)
    assert torch.load(tmp_path / "killed" / "last.pt", weights_only=True)["step"] == 2

    resumed = train(tmp_path / "killed", cache)  # the same command again
    assert resumed.step == 4
    for k, v in straight.model.state_dict().items():
        assert torch.equal(v, resumed.model.state_dict()[k]), k
    a, b = read_log(tmp_path / "straight" / "log.csv"), read_log(tmp_path / "killed" / "log.csv")
    assert [r["step"] for r in b] == ["2", "4"]
    assert [r["loss_total"] for r in a] == [r["loss_total"] for r in b]


def test_worker_processes_make_the_same_batches(tmp_path, cache):
    here = train(tmp_path / "here", cache)
    ahead = Trainer(load_config("charbonnier", tiny_overrides(tmp_path / "ahead", cache)), command="test", workers=2)
    ahead.fit()
    assert ahead.step == 4
    for k, v in here.model.state_dict().items():
        assert torch.equal(v, ahead.model.state_dict()[k]), k
    assert read_log(tmp_path / "here" / "log.csv")[-1]["loss_total"] == read_log(tmp_path / "ahead" / "log.csv")[-1]["loss_total"]


def test_batches_made_on_the_device_resume_exactly(tmp_path, cache, monkeypatch):
    extra = ("data.synthesis=device", "data.read_band=2.3")
    straight = train(tmp_path / "straight", cache, *extra)
    train_killed_at_step_3(tmp_path / "killed", cache, monkeypatch, *extra)
    resumed = train(tmp_path / "killed", cache, *extra)
    for k, v in straight.model.state_dict().items():
        assert torch.equal(v, resumed.model.state_dict()[k]), k
    numpy_made = train(tmp_path / "numpy", cache)
    assert read_log(tmp_path / "numpy" / "log.csv")[0]["loss_total"] != read_log(tmp_path / "straight" / "log.csv")[0]["loss_total"]
    assert numpy_made.step == straight.step == 4


def test_channels_last_trains_the_same_network(tmp_path, cache):
    nchw = train(tmp_path / "nchw", cache)
    nhwc = Trainer(load_config("charbonnier", tiny_overrides(tmp_path / "nhwc", cache)), command="test",
                   channels_last=True)
    nhwc.fit()
    for k, v in nchw.model.state_dict().items():
        torch.testing.assert_close(nhwc.model.state_dict()[k], v, atol=1e-4, rtol=1e-3)


def test_an_until_that_stops_nothing_is_told(tmp_path, cache):
    trainer = Trainer(load_config("charbonnier", tiny_overrides(tmp_path / "run", cache, steps=2)), command="test")
    with pytest.warns(UserWarning, match="--until 100: the schedule ends at step 2: it trains to its end"):
        trainer.fit(until=100)
    again = Trainer(load_config("charbonnier", tiny_overrides(tmp_path / "run", cache, steps=2)), command="test")
    with pytest.warns(UserWarning, match="--until 1: the run is at step 2 already: nothing to train before it"):
        again.fit(until=1)


def keep_best_trainer(out: Path, cache: Path) -> Trainer:
    return Trainer(load_config("charbonnier", tiny_overrides(out, cache, 4, 2, "schedule.keep_best=true")),
                   command="test")


def test_keep_best_ships_the_best_validation_weights_across_a_resume(tmp_path, cache, monkeypatch):
    scores = {0: 5.0, 2: 7.0, 4: 6.0}  # validation PSNR by step: step 2 is the best
    monkeypatch.setattr(Trainer, "validate", lambda self: scores[self.step])
    at_step_2 = Trainer(load_config("charbonnier", tiny_overrides(tmp_path / "ref", cache)), command="test")
    at_step_2.fit(until=2)

    train_killed_at_step_3(tmp_path / "best", cache, monkeypatch, "schedule.keep_best=true")
    trainer = keep_best_trainer(tmp_path / "best", cache)
    ckpt = trainer.fit()  # resumes from step 2
    assert trainer.step == 4
    assert (ckpt.card["kept_best_of_step"], ckpt.card["validation_raw_psnr"]) == (2, 7.0)
    for k, v in at_step_2.model.state_dict().items():
        assert torch.equal(ckpt.state_dict[k], v), k

    scores[0] = 9.0  # the initial weights win: the fine-tune is not shipped
    trainer = keep_best_trainer(tmp_path / "init-best", cache)
    initial = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    kept = trainer.fit()
    assert kept.card["kept_best_of_step"] == 0
    for k, v in initial.items():
        assert torch.equal(kept.state_dict[k], v), k
    assert any(not torch.equal(trainer.model.state_dict()[k], v) for k, v in initial.items())  # it did train


def test_ema_ships_the_averaged_weights_and_resumes_them_exactly(tmp_path, cache, monkeypatch):
    last = {}
    real_step = torch.optim.Adam.step

    def step_and_keep(self, *args, **kwargs):  # the weights after each step, to average by hand
        out = real_step(self, *args, **kwargs)
        last[len(last)] = [p.detach().clone() for p in self.param_groups[0]["params"]]
        return out

    monkeypatch.setattr(torch.optim.Adam, "step", step_and_keep)
    plain = train(tmp_path / "plain", cache)
    weights = dict(last)
    last.clear()
    averaged = Trainer(load_config("charbonnier", tiny_overrides(tmp_path / "ema", cache, 4, 2, "schedule.ema=0.5")),
                       command="test")
    expected = [p.detach().clone() for p in averaged.model.parameters()]
    averaged.fit()
    for step, ws in weights.items():  # the same run, so the same weights at every step
        assert all(torch.equal(a, b) for a, b in zip(ws, last[step]))
    for step in range(4):
        decay = min(0.5, (1 + step) / (10 + step))
        expected = [decay * e + (1 - decay) * w for e, w in zip(expected, weights[step])]
    ckpt = load_checkpoint(tmp_path / "ema" / "model.pt")
    names = [k for k, _ in averaged.model.named_parameters()]
    for name, e in zip(names, expected):
        torch.testing.assert_close(ckpt.state_dict[name], e)
    assert any(not torch.equal(ckpt.state_dict[k], v) for k, v in plain.model.state_dict().items())

    monkeypatch.setattr(torch.optim.Adam, "step", real_step)
    straight = train(tmp_path / "straight", cache, "schedule.ema=0.9")
    train_killed_at_step_3(tmp_path / "killed", cache, monkeypatch, "schedule.ema=0.9")
    resumed = train(tmp_path / "killed", cache, "schedule.ema=0.9")
    for k, v in straight.shipped.state_dict().items():
        assert torch.equal(v, resumed.shipped.state_dict()[k]), k


def test_a_sub_range_run_validates_inside_its_range(tmp_path, cache):
    full = Trainer(load_config("charbonnier", tiny_overrides(tmp_path / "a", cache)), command="test")
    sub_range = tiny_overrides(tmp_path / "b", cache, 4, 2, "data.shot_range=[0.001, 0.004]")
    sub = Trainer(load_config("charbonnier", sub_range), command="test")
    assert full.val["shot"].min() < 0.001 and full.val["shot"].max() > 0.004
    assert len(np.unique(sub.val["shot"])) == 4 and ((0.001 < sub.val["shot"]) & (sub.val["shot"] < 0.004)).all()


def test_run_folder_with_a_different_config(tmp_path, cache):
    out = tmp_path / "run"
    train(out, cache, steps=2)
    with pytest.raises(FadError, match=f"{out / 'last.pt'}: .* other settings \\(schedule.lr\\)"):
        train(out, cache, "schedule.lr=0.01", steps=2)
    shutil.copytree(out, tmp_path / "copy")  # a copied run folder resumes: where it lives is no setting
    assert train(tmp_path / "copy", cache, steps=2).step == 2
    fresh = train(out, cache, "schedule.lr=0.01", steps=2, resume=False)  # --fresh starts over
    assert fresh.step == 2
    assert [r["step"] for r in read_log(out / "log.csv")] == ["2"]  # the old run's rows are gone
    (out / "last.pt").write_bytes(b"junk")
    with pytest.raises(FadError, match="last.pt: cannot read.*--fresh"):
        train(out, cache, "schedule.lr=0.01", steps=2)


def test_distillation_and_feature_matching(tmp_path, cache):
    torch.manual_seed(1)
    teacher = build("teacher", {"widths": [8, 16], "convs_per_level": 1})
    before = {k: v.clone() for k, v in teacher.state_dict().items()}
    path = tmp_path / "teacher.pt"
    Checkpoint("tiny-teacher", "teacher", model_config(teacher), teacher.state_dict(), (1e-4, 1e-3)).save(path)
    trainer = train(tmp_path / "kd", cache, "loss.distillation=1.0", "loss.feature_matching=0.5",
                    f"loss.teacher={path}", steps=2)
    row = read_log(tmp_path / "kd" / "log.csv")[-1]
    charb, kd, fm = (float(row[f"loss_{k}"]) for k in ("charbonnier", "distillation", "feature_matching"))
    assert kd > 0 and fm > 0
    assert float(row["loss_total"]) == pytest.approx(charb + kd + 0.5 * fm, abs=1e-5)
    assert load_checkpoint(tmp_path / "kd" / "model.pt").card["teacher"] == "tiny-teacher"
    assert all(torch.equal(trainer.teacher.state_dict()[k], v) for k, v in before.items())  # frozen


def test_relative_level_weighting_scales_errors_by_the_noise_std(tmp_path, cache):
    """At 4x the anchor's shot level "relative" doubles the errors "anchor" sees."""
    losses = {}
    for weighting in ("anchor", "relative"):
        torch.manual_seed(0)
        trainer = Trainer(load_config("charbonnier", tiny_overrides(tmp_path / weighting, cache, 2, 2,
                                                                     f"loss.level_weighting={weighting}")))
        batch = trainer.batch(0)
        batch["shot"] = torch.full_like(batch["shot"], 4 * trainer.anchor.shot)
        losses[weighting] = trainer.losses(batch)["charbonnier"].item()
    assert losses["relative"] == pytest.approx(2 * losses["anchor"], rel=1e-4)


def test_loss_setups_that_cannot_work(tmp_path, cache):
    with pytest.raises(FadError, match="vgg_weights"):
        train(tmp_path / "rgb", cache, "loss.rgb_perceptual=1.0")
    with pytest.raises(FadError, match="loss.vgg_weights=vgg16.pth: the weights of loss.rgb_perceptual, which is 0"):
        train(tmp_path / "rgb", cache, "loss.vgg_weights=vgg16.pth")
    student = tmp_path / "student.pt"
    fan = build("fan", {"widths": [8, 8], "expansions": [1, 1]})
    Checkpoint("s", "fan", model_config(fan), fan.state_dict()).save(student)
    with pytest.raises(FadError, match="multi-scale features"):
        train(tmp_path / "fm", cache, "loss.feature_matching=1.0", f"loss.teacher={student}")
    with pytest.raises(FadError, match="does not fit network 'fan'"):  # init from different widths
        train(tmp_path / "init", cache, f"model.init={student}")
    with pytest.raises(FadError, match="model.narrow cuts the checkpoint of model.init: set model.init"):
        train(tmp_path / "narrow", cache, "model.narrow=true")
    with pytest.raises(FadError, match="cannot narrow a FAN into one with other widths"):
        train(tmp_path / "narrow", cache, f"model.init={student}", "model.narrow=true")


def test_narrow_starts_from_the_wider_checkpoint_cut_to_the_configured_blocks(tmp_path, cache):
    wide = build("fan", {"widths": [8, 8, 16], "expansions": [1, 1, 1]})
    path = tmp_path / "wide.pt"
    Checkpoint("wide", "fan", model_config(wide), wide.state_dict()).save(path)
    trainer = Trainer(load_config("charbonnier", tiny_overrides(
        tmp_path / "run", cache, 2, 2, f"model.init={path}", "model.narrow=true", "model.config.hidden=[4, 4, 0]",
        "schedule.ema=0.9")))
    model = trainer.model
    assert model.enc[0].group.out_channels == 4 and model.enc[2].group.out_channels == 16
    assert all(torch.equal(model.state_dict()[k], v) for k, v in wide.state_dict().items()
               if k.startswith(("head", "enc.2", "enc_align")))
    kept = model.enc[0].expand.weight.flatten(1)  # whole rows of the wide block's expansion
    assert all((row == wide.enc[0].expand.weight.flatten(1)).all(1).any() for row in kept)
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in trainer.shipped.state_dict().items())  # the average



def test_no_training_photos_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("FAD_CACHE", str(tmp_path))
    cfg = load_config("charbonnier", [f"out={tmp_path / 'run'}", TINY_MODEL])
    with pytest.raises(FadError, match="fad-data fetch"):
        Trainer(cfg)


# ---- the command line --------------------------------------------------------------------------


@pytest.mark.parametrize("argv, message", [
    (["nosuch"], "'nosuch' is neither a config file nor a preset"),
    (["charbonnier", "schedule.bogus=1"], "unknown setting schedule.bogus"),
    (["charbonnier", "schedule.steps"], "must look like key.sub=value"),
    (["charbonnier", "--workers", "-1"], "argument --workers: expected a whole number >= 0, got '-1'"),
    (["charbonnier", "data.synthesis=device", "--workers", "2"], "--workers make numpy batches"),
    (["charbonnier", "data.read_band=-1"], "data.read_band: expected a finite number >= 0"),
])
def test_cli_user_errors_are_one_line(argv, message, capsys):
    with pytest.raises(SystemExit) as e:
        main(argv)
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("fad-train: error: ") and message in err and err.count("\n") == 1


def test_an_interrupted_run_says_how_to_resume_and_fresh_removes_the_old_runs_files(tmp_path, cache, capsys,
                                                                                     monkeypatch):
    from fad_deploy.fileio import sole_writer
    from fad_deploy.train.trainer import Trainer as Run

    out = tmp_path / "run"
    again = ["charbonnier", *tiny_overrides(out, cache, 8)]
    argv = [*again, "--fre"]  # --fresh, abbreviated: the command to resume must not start over
    real = Run.save_state

    def interrupted(self):
        if self.step == 4:
            raise KeyboardInterrupt  # Ctrl-C while the checkpoint of step 4 is being saved
        real(self)
    monkeypatch.setattr(Run, "save_state", interrupted)
    with pytest.raises(SystemExit) as e:
        main(argv)
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert e.value.code == 130 and err == f"interrupted; {shlex.join(['fad-train', *again])} resumes the run from " \
        "its checkpoint of step 2"  # the one on disk
    assert sorted(p.name for p in out.iterdir()) == ["config.json", "last.pt", "log.csv", "model.pt"]

    monkeypatch.setattr(Run, "validate", lambda self: (_ for _ in ()).throw(KeyboardInterrupt))  # before any
    with pytest.raises(SystemExit):
        main(argv)
    assert capsys.readouterr().err.strip().endswith("no checkpoint yet (one every 2 steps): "
                                                    f"{shlex.join(['fad-train', *again])} starts the run again")
    assert sorted(p.name for p in out.iterdir()) == ["config.json"]  # --fresh: the old run's files are gone

    (tmp_path / "link").symlink_to(out)
    with sole_writer(tmp_path / "link", "fad-train"), pytest.raises(SystemExit):  # a second run into it at once,
        main(argv)  # whatever link names it
    assert capsys.readouterr().err.strip().endswith(f"{out}: another process (fad-train, pid {os.getpid()}) is "
                                                    "writing it now; wait for it to end")


def test_console_script_bad_preset(tmp_path):
    proc = subprocess.run([str(FAD_TRAIN), "nosuch"], capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.startswith("fad-train: error: 'nosuch' is neither") and proc.stderr.count("\n") == 1


def test_help_reads_well(monkeypatch):
    monkeypatch.setenv("COLUMNS", "80")
    text = parser().format_help()
    for needle in ("preset name or YAML config file", "key.sub=value", "torchrun --nproc_per_node",
                   "--fresh", "--ship", ", ".join(presets())):
        assert needle in text
    assert "fad-\n" not in text and max(map(len, text.splitlines())) <= 90


# ---- torchrun DDP ---------------------------------------------------------------------------------


def test_ddp_two_processes_on_cpu_split_the_batch(tmp_path, cache):
    out = tmp_path / "ddp"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", str(FAD_TRAIN),
           "charbonnier", *tiny_overrides(out, cache, 2, 1), "--threads", "1"]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=tmp_path, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    ddp = load_checkpoint(out / "model.pt")
    assert (ddp.card["world_size"], ddp.card["samples_seen"]) == (2, 4)

    # Ranks 0 and 1 take samples 2s and 2s+1 of global step s: one process with batch 2 sees the
    # same samples and averages the same gradients; rank 0's samples alone give other weights.
    both = train(tmp_path / "single2", cache, steps=2, batch=2).model.state_dict()
    rank0 = train(tmp_path / "single1", cache, steps=2, batch=1).model.state_dict()
    diff = lambda a: max((a[k] - ddp.state_dict[k]).abs().max().item() for k in a)  # noqa: E731
    assert diff(both) < 1e-5
    assert diff(rank0) > 1e-4


def test_a_diverged_run_stops_without_saving_nan_weights(tmp_path, cache):
    """A shot range far below the noise model's made the loss NaN at once: the run had saved and
    shipped a NaN checkpoint with exit 0."""
    cfg = load_config("charbonnier", tiny_overrides(tmp_path / "nan", cache, 2, 2, "data.shot_range=[1e-30,1e-29]"))
    with pytest.raises(FadError, match="the loss is nan at step 2: training diverged"):
        Trainer(cfg, command="test").fit()
    assert not (tmp_path / "nan" / "model.pt").exists()


def test_a_warmup_longer_than_the_run_is_told():
    with pytest.warns(UserWarning, match="schedule.warmup 100 is longer than schedule.steps 5: the learning rate never"):
        load_config("charbonnier", ["schedule.steps=5"])
