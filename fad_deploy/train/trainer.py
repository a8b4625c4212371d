"""The training loop: seeded, exactly resumable, single process or torchrun DDP.

Every batch is a pure function of (seed, step), so a run killed at any point and
resumed from its last checkpoint continues with exactly the batches it would have seen.
"""
from __future__ import annotations

import copy
import csv
import hashlib
import io
import json
import math
import os
import shlex
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from tqdm import tqdm

from ..checks import check_memory, require_output
from ..data.dataset import CacheConfig, NoisyPatches, build_patch_cache, check_crop, load_patch_cache
from ..data.device_batches import DeviceBatches
from ..data.noise import NoiseParams, anchor_at, anchor_for_range, from_anchor, to_anchor
from ..data.photos import default_cache_dir, list_photos
from ..data.synth import validation_set
from ..errors import FadError, count
from ..fileio import atomic_path, write_json, write_text
from ..isp.metrics import psnr
from ..models.fan import FAN
from ..models.narrow import narrow
from ..models.registry import Checkpoint, build, load_checkpoint, load_weights, model_config, resolve_model
from ..runners.tiling import network_align
from .config import TrainConfig, config_from_dict
from .losses import FeatureMatchingLoss, RGBPerceptualLoss, charbonnier, distillation_l1

# what model.narrow fits each narrowed block on: as many pixels as 8 batches of the CPU's training crops
NARROW_IMAGES, NARROW_CROP = 128, 64


def batch_noise(batch: dict, device=None) -> NoiseParams:
    """Per-image noise parameters shaped to broadcast over (N, 4, h, w)."""
    shape = (-1, 1, 1, 1)
    return NoiseParams(batch["shot"].to(device).view(shape), batch["read"].to(device).view(shape))


def level_weights(noise: NoiseParams, anchor: NoiseParams, weighting: str):
    """Per-image factors on anchor-space errors (see ``LossConfig.level_weighting``). Anchor
    space scales an image's errors by anchor.shot / shot while its noise std there goes as
    anchor.shot / sqrt(shot): sqrt(shot / anchor.shot) makes the errors relative to noise."""
    if weighting == "relative":
        return torch.sqrt(noise.shot / anchor.shot)
    return 1.0


def lr_at(step: int, cfg) -> float:
    """Linear warm-up then cosine decay to ``min_lr``."""
    if step < cfg.warmup:
        return cfg.lr * (step + 1) / cfg.warmup
    t = (step - cfg.warmup) / max(1, cfg.steps - cfg.warmup)
    return cfg.min_lr + 0.5 * (cfg.lr - cfg.min_lr) * (1 + math.cos(math.pi * min(1.0, t)))


def resolve_cache(cfg: TrainConfig) -> Path:
    """The patch cache to train on, built on first use (from --photos or fetched photos)."""
    if cfg.data.cache:
        return Path(cfg.data.cache)
    if cfg.data.photos:
        photos = list_photos(cfg.data.photos)
        out = photos_cache(cfg.data.photos, photos)
    else:
        out = default_cache_dir() / "patches-train.npz"
        photo_dir = default_cache_dir() / "photos" / "train"
        if not out.is_file() and not photo_dir.is_dir():
            raise FadError(f"no training photos: run `fad-data fetch` or set data.photos=DIR (looked in {photo_dir})")
        photos = list_photos(photo_dir) if not out.is_file() else []
    if not out.is_file():
        check_crop(cfg.data.crop, CacheConfig().patch)  # before minutes of unprocessing
        build_patch_cache(photos, require_output(out, "file", "the patch cache (under $FAD_CACHE)"))
    return out


def photos_cache(folder: str | os.PathLike, photos: list[Path]) -> Path:
    """Where the patch cache of a folder of photos is kept: named after the folder and keyed by its
    photos (path, size, time), so another folder of the same name, or photos added or changed
    since, get a cache of their own."""
    listing = "\n".join(f"{p.resolve()}\t{st.st_size}\t{st.st_mtime_ns}" for p in photos for st in [p.stat()])
    key = hashlib.sha256(os.fsencode(listing)).hexdigest()[:12]  # (names need not be UTF-8)
    return default_cache_dir() / f"patches-{Path(folder).resolve().name}-{key}.npz"


# training holds every feature map of the forward pass for the backward one, and about as much again
# in gradients and temporaries: this many times one forward pass's feature maps (an estimate, for the check)
TRAIN_MEMORY_FACTOR = 2


def checked_network(arch: str, config: dict, crop: int, batch: int = 1, device: str = "cpu") -> torch.nn.Module:
    """The network of ``model.arch`` with ``model.config``, refused (FadError) when the config
    does not make a network that runs on a ``crop`` x ``crop`` crop (tried once on zeros, which
    draws no random numbers; torch's warnings about a broken config give way to the error),
    when ``crop`` is below the multiple it pads its input to, or (training on the CPU) when a
    batch of ``batch`` such crops in every process on this machine would not fit in memory (an
    estimate from its feature maps on a small input, first, so that a crop or batch too large is
    named as such)."""
    def tried(make):
        try:
            with warnings.catch_warnings(), torch.no_grad():
                warnings.simplefilter("ignore")
                return make()
        except (TypeError, ValueError, IndexError, ZeroDivisionError, RuntimeError) as e:
            raise FadError(f"model.config {config}: no working {arch!r} network with it ({type(e).__name__}: "
                           f"{str(e).splitlines()[0]})")

    model = tried(lambda: build(arch, config))
    multiple = network_align(model)
    if crop < multiple:
        raise FadError(f"data.crop {crop}: network {arch!r} needs crops of at least {multiple} "
                       "(the multiple it pads its input to)")
    if device == "cpu":
        per_pixel = tried(lambda: feature_bytes_per_pixel(model, multiple))
        processes = int(os.environ.get("LOCAL_WORLD_SIZE", "1"))  # torchrun's processes share this memory
        check_memory(int(TRAIN_MEMORY_FACTOR * per_pixel * batch * crop * crop * processes),
                     f"training on batches of {count(batch, 'crop')} of {crop}x{crop} (data.batch, data.crop)"
                     + (f" in {processes} processes" if processes > 1 else ""))
    tried(lambda: model(torch.zeros(1, 4, crop, crop)))
    return model


def feature_bytes_per_pixel(model: torch.nn.Module, multiple: int) -> float:
    """Bytes of the feature maps one forward pass of ``model`` writes per packed input pixel,
    counted on a small input (every leaf module's output)."""
    side = multiple * max(1, math.ceil(64 / multiple))
    written = []

    def count_output(_module, _inputs, out):
        if isinstance(out, torch.Tensor):
            written.append(out.numel() * out.element_size())

    hooks = [m.register_forward_hook(count_output) for m in model.modules() if not any(True for _ in m.children())]
    try:
        model(torch.zeros(1, 4, side, side))
    finally:
        for h in hooks:
            h.remove()
    return sum(written) / side**2


def settings(config: dict, group: str = "") -> dict:
    """A config's settings by their dotted names (``schedule.lr``), as JSON stores their values."""
    flat = {}
    for key, value in config.items():
        if isinstance(value, dict) and not group:  # a group; a dict inside one (model.config) is one setting
            flat |= settings(value, f"{key}.")
        else:
            flat[group + key] = json.loads(json.dumps(value))
    return flat


def sample_batch(data: NoisyPatches, step: int, batch: int, seed: int, world: int = 1, rank: int = 0,
                 device=None) -> dict[str, torch.Tensor]:
    """Rank ``rank``'s share of global batch ``step``: a pure function of (seed, step), each
    epoch a fresh seeded permutation of the dataset (also used by QAT fine-tuning)."""
    n = len(data)
    items = []
    for j in range(batch):
        g = (step * world + rank) * batch + j  # global sample index
        data.epoch = g // n
        perm = np.random.default_rng((seed, data.epoch)).permutation(n)
        items.append(data[int(perm[g % n])])
    return {k: torch.stack([it[k] for it in items]).to(device) for k in items[0]}


class BatchesByStep(torch.utils.data.Dataset):
    """Item ``step`` is :func:`sample_batch`'s batch ``step``, so DataLoader workers can make
    batches ahead of the training step (on a GPU the noise synthesis would otherwise be the
    bottleneck) while every batch stays a pure function of (seed, step)."""

    def __init__(self, data: NoisyPatches, batch: int, seed: int, world: int, rank: int):
        self.data, self.args = data, (batch, seed, world, rank)

    def __getitem__(self, step: int) -> dict[str, torch.Tensor]:
        return sample_batch(self.data, step, *self.args)


class Trainer:
    def __init__(self, cfg: TrainConfig, device: str = "cpu", command: str | None = None, workers: int = 0,
                 channels_last: bool = False, compile: bool = False):
        """``workers``: processes making numpy batches ahead; ``channels_last``: the networks
        and batches in NHWC; ``compile``: the trained network through ``torch.compile``."""
        self.cfg, self.command = cfg, command or shlex.join(["fad-train", *sys.argv[1:]])
        self.workers = workers
        self.layout = torch.channels_last if channels_last else torch.contiguous_format
        self.distributed = int(os.environ.get("WORLD_SIZE", "1")) > 1
        if self.distributed and not dist.is_initialized():
            dist.init_process_group("nccl" if device.startswith("cuda") else "gloo")
        self.rank = dist.get_rank() if self.distributed else 0
        self.world = dist.get_world_size() if self.distributed else 1
        if device.startswith("cuda") and self.distributed:
            device = f"cuda:{int(os.environ.get('LOCAL_RANK', 0))}"
        self.device = torch.device(device)
        torch.backends.cudnn.benchmark = self.device.type == "cuda"  # fixed crop size: autotune once
        torch.manual_seed(cfg.seed)
        self.out = require_output(Path(cfg.out or Path("runs") / cfg.name), "folder", "run folder (out=)")
        self.anchor = anchor_at(cfg.data.anchor_shot) if cfg.data.anchor_shot else anchor_for_range(cfg.data.shot_range)

        self.model = checked_network(cfg.model.arch, cfg.model.config, cfg.data.crop,
                                     cfg.data.batch, self.device.type).to(self.device)
        if cfg.model.narrow and not cfg.model.init:
            raise FadError("model.narrow cuts the checkpoint of model.init: set model.init=CHECKPOINT")
        if cfg.model.narrow and not isinstance(self.model, FAN):
            raise FadError(f"model.narrow cuts a FAN into a narrower one: {cfg.model.arch!r} is not a FAN")
        if cfg.model.init:
            init = load_checkpoint(resolve_model(cfg.model.init))
            if init.arch != cfg.model.arch:
                raise FadError(f"model.init {cfg.model.init!r} is a {init.arch!r}, not a {cfg.model.arch!r}")
            if not cfg.model.narrow:
                load_weights(self.model, init.state_dict, f"model.init {cfg.model.init!r}")

        self.cache_path = resolve_cache(cfg)
        self.data = NoisyPatches(load_patch_cache(self.cache_path), cfg.data.crop, cfg.data.shot_range, cfg.seed,
                                 read_band=cfg.data.read_band)
        self.device_batches = DeviceBatches(self.data.cache, cfg.data.crop, cfg.data.shot_range, cfg.seed,
                                            cfg.data.read_band, self.device) if cfg.data.synthesis == "device" else None
        if cfg.model.narrow:  # before the optimizer, the weights' average and DDP take the weights
            narrow(init.build().to(self.device), self.model, self.narrow_inputs())

        self.model.to(memory_format=self.layout)
        self.net = self.model
        if self.distributed:
            self.net = torch.nn.parallel.DistributedDataParallel(self.model)
        if compile:
            self.net = torch.compile(self.net)
        self.opt = torch.optim.Adam(self.model.parameters(), lr=cfg.schedule.lr)
        # schedule.ema: the averaged weights, what validation measures and the checkpoint ships
        self.shipped = copy.deepcopy(self.model).requires_grad_(False) if cfg.schedule.ema else self.model

        self.teacher = self.teacher_anchor = None
        loss = cfg.loss
        if loss.distillation > 0 or loss.feature_matching > 0:
            ckpt = load_checkpoint(resolve_model(loss.teacher))
            self.teacher = ckpt.build().to(self.device, memory_format=self.layout).requires_grad_(False)
            self.teacher_anchor = ckpt.anchor
            self.teacher_name = ckpt.name
        self.fm_loss = FeatureMatchingLoss(self.teacher, loss.style_weight) if loss.feature_matching > 0 else None
        if loss.rgb_perceptual > 0 and not loss.vgg_weights:
            raise FadError("loss.rgb_perceptual needs ImageNet VGG16 weights you supply: set loss.vgg_weights=PATH")
        if loss.vgg_weights and not loss.rgb_perceptual > 0:
            raise FadError(f"loss.vgg_weights={loss.vgg_weights}: the weights of loss.rgb_perceptual, which is 0 in "
                           "this run: set loss.rgb_perceptual above 0 to use them, or drop the setting")
        self.rgb_loss = RGBPerceptualLoss(loss.vgg_weights, loss.style_weight).to(self.device) \
            if loss.rgb_perceptual > 0 else None
        self.val = validation_set(cfg.data.shot_range)[0]
        self.step, self.elapsed, self.history = 0, 0.0, []
        self.saved_step = None  # the step of the resume state on disk (None: none)
        self.best = None  # with schedule.keep_best: {"val", "step", "state"} of the best validation

    def narrow_inputs(self) -> torch.Tensor:
        """What model.narrow fits each narrowed block on: NARROW_IMAGES noisy training crops (at most
        NARROW_CROP pixels a side), as the network takes them (in its anchor space); the same on every rank."""
        batch = sample_batch(self.data, 0, NARROW_IMAGES, self.cfg.seed)
        noisy = to_anchor(batch["noisy"], batch_noise(batch), self.anchor)
        return noisy[..., :NARROW_CROP, :NARROW_CROP].to(self.device)

    # ---- data --------------------------------------------------------------------------
    def batch(self, step: int) -> dict[str, torch.Tensor]:
        """This rank's share of global batch ``step`` (deterministic), made on the device or here."""
        if self.device_batches is not None:
            return self.device_batches.batch(step, self.cfg.data.batch, self.world, self.rank)
        return sample_batch(self.data, step, self.cfg.data.batch, self.cfg.seed, self.world, self.rank, self.device)

    def batches(self, start: int, stop: int):
        """Batches ``start`` .. ``stop - 1``: made by :meth:`batch`, or ahead by ``workers`` processes."""
        if not self.workers:
            return (self.batch(step) for step in range(start, stop))
        loader = torch.utils.data.DataLoader(
            BatchesByStep(self.data, self.cfg.data.batch, self.cfg.seed, self.world, self.rank),
            batch_size=None, sampler=range(start, stop), num_workers=self.workers, prefetch_factor=4,
            pin_memory=self.device.type == "cuda")
        return ({k: v.to(self.device, non_blocking=True) for k, v in b.items()} for b in loader)

    # ---- one step ----------------------------------------------------------------------
    def losses(self, batch) -> dict[str, torch.Tensor]:
        cfg, noise = self.cfg.loss, batch_noise(batch)
        batch = {k: v.contiguous(memory_format=self.layout) if v.dim() == 4 else v for k, v in batch.items()}
        u = to_anchor(batch["noisy"], noise, self.anchor)
        pred_u = self.net(u)
        target_u = to_anchor(batch["clean"], noise, self.anchor)
        w = level_weights(noise, self.anchor, cfg.level_weighting)
        terms = {"charbonnier": charbonnier(w * pred_u, w * target_u)}
        if self.teacher is not None:
            to_teacher = lambda x: to_anchor(x, noise, self.teacher_anchor)  # noqa: E731
            pred_x = from_anchor(pred_u, noise, self.anchor)
            if cfg.distillation > 0:
                with torch.no_grad():
                    teacher_x = from_anchor(self.teacher(to_teacher(batch["noisy"])), noise, self.teacher_anchor)
                terms["distillation"] = distillation_l1(w * pred_u, w * to_anchor(teacher_x, noise, self.anchor))
            if self.fm_loss is not None:
                terms["feature_matching"] = self.fm_loss(to_teacher(pred_x), to_teacher(batch["clean"]))
        if self.rgb_loss is not None:
            pred_x = from_anchor(pred_u, noise, self.anchor)
            terms["rgb_perceptual"] = self.rgb_loss(pred_x, batch["clean"], batch)
        weights = {"charbonnier": cfg.charbonnier, "distillation": cfg.distillation,
                   "feature_matching": cfg.feature_matching, "rgb_perceptual": cfg.rgb_perceptual}
        terms["total"] = sum(weights[k] * v for k, v in terms.items())
        return terms

    @torch.no_grad()
    def average(self) -> None:
        """One step of the weights' moving average (schedule.ema), its decay warmed up so early
        steps do not keep the initial weights."""
        decay = min(self.cfg.schedule.ema, (1 + self.step) / (10 + self.step))
        for avg, new in zip(self.shipped.state_dict().values(), self.model.state_dict().values()):
            if avg.is_floating_point():
                avg.lerp_(new, 1 - decay)
            else:
                avg.copy_(new)

    @torch.no_grad()
    def validate(self) -> float:
        """Mean RAW PSNR on the fixed validation set (scikit-image photos at 6 noise levels over
        the full range, or 4 inside a sub-range model's range), of the weights that ship."""
        net = self.shipped.eval()
        v = self.val
        noise = NoiseParams(torch.from_numpy(v["shot"]).view(-1, 1, 1, 1), torch.from_numpy(v["read"]).view(-1, 1, 1, 1))
        scores = []
        for i in range(0, len(v["noisy"]), 16):
            sl = slice(i, i + 16)
            n_i = NoiseParams(noise.shot[sl].to(self.device), noise.read[sl].to(self.device))
            u = to_anchor(torch.from_numpy(v["noisy"][sl]).to(self.device), n_i, self.anchor)
            pred = from_anchor(net(u), n_i, self.anchor).clamp(0, 1).cpu().numpy()
            scores += [psnr(p, c) for p, c in zip(pred, v["clean"][sl])]
        self.model.train()
        return float(np.mean(scores))

    # ---- checkpoints ---------------------------------------------------------------------
    def state_path(self) -> Path:
        return self.out / "last.pt"

    def model_path(self) -> Path:
        return self.out / "model.pt"

    def save_state(self) -> None:
        blob = {"step": self.step, "elapsed": self.elapsed, "history": json.dumps(self.history),
                "model": self.model.state_dict(), "opt": self.opt.state_dict(),
                "config": json.dumps(self.cfg.to_dict()), "shipped": self.shipped.state_dict()}
        if self.best:
            blob |= {"best_val": self.best["val"], "best_step": self.best["step"], "best_model": self.best["state"]}
        with atomic_path(self.state_path()) as tmp:
            torch.save(blob, tmp)
        self.saved_step = self.step

    def load_state(self) -> bool:
        path = self.state_path()
        if not path.is_file():
            return False
        try:
            blob = torch.load(path, map_location=self.device, weights_only=True)
        except Exception as e:  # noqa: BLE001 - any unpickling failure means a bad file
            raise FadError(f"{path}: cannot read the run's state ({type(e).__name__}); start over with --fresh")
        saved = settings(config_from_dict(json.loads(blob["config"]), str(path)).to_dict())
        differ = [k for k, v in settings(self.cfg.to_dict()).items() if saved.get(k) != v and k != "out"]
        if differ:  # (where the run lives is not one: a copied run folder resumes)
            raise FadError(f"{path}: the run folder holds a run with other settings ({', '.join(differ)}); use "
                           "another out=, or --fresh to start over in it")
        self.model.load_state_dict(blob["model"])
        self.shipped.load_state_dict(blob.get("shipped", blob["model"]))  # (states of before the field: no EMA)
        self.opt.load_state_dict(blob["opt"])
        self.step, self.elapsed, self.history = blob["step"], blob["elapsed"], json.loads(blob["history"])
        self.saved_step = self.step
        if "best_model" in blob:
            self.best = {"val": blob["best_val"], "step": blob["best_step"], "state": blob["best_model"]}
        return True

    def track_best(self, val: float) -> None:
        if self.cfg.schedule.keep_best and (self.best is None or val > self.best["val"]):
            self.best = {"val": val, "step": self.step,
                         "state": {k: v.detach().clone() for k, v in self.shipped.state_dict().items()}}

    def checkpoint(self, val_psnr: float, best: dict | None = None) -> Checkpoint:
        """The current weights (their average with schedule.ema), or the ``best`` ones (keep_best)
        with the step they come from."""
        state = best["state"] if best else self.shipped.state_dict()
        card = {
            "command": self.command,
            "config": self.cfg.to_dict(),
            "data": {"patch_cache": self.cache_path.name, "patches": len(self.data.cache["raw"]),
                     "crop": self.cfg.data.crop, "shot_range": list(self.cfg.data.shot_range)},
            "teacher": getattr(self, "teacher_name", None),
            "steps": self.step,
            "scheduled_steps": self.cfg.schedule.steps,
            "samples_seen": self.step * self.cfg.data.batch * self.world,
            "training_time_s": round(self.elapsed, 1),
            "device": str(self.device) + (f" ({torch.cuda.get_device_name(self.device)})"
                                          if self.device.type == "cuda" else ""),
            "world_size": self.world,
            "validation_raw_psnr": round(best["val"] if best else val_psnr, 3),
        }
        if best:
            card["kept_best_of_step"] = best["step"]
        return Checkpoint(self.cfg.name, self.cfg.model.arch, model_config(self.model),
                          {k: v.detach().cpu() for k, v in state.items()},
                          tuple(self.cfg.data.shot_range), card, anchor_shot=self.anchor.shot)

    # ---- loop ------------------------------------------------------------------------------
    def log(self, row: dict) -> None:
        """Rewrite log.csv from the history: after a resume or --fresh it holds exactly this run's rows."""
        self.history.append(row)
        text = io.StringIO()
        w = csv.DictWriter(text, fieldnames=list(row))
        w.writeheader()
        w.writerows(self.history)
        write_text(self.out / "log.csv", text.getvalue())

    def fit(self, resume: bool = True, until: int | None = None) -> Checkpoint:
        """Train to the end of the schedule, or stop after step ``until`` (the learning-rate
        schedule is unchanged, so re-running without ``until`` continues the same run)."""
        sch = self.cfg.schedule
        stop = min(sch.steps, until) if until else sch.steps
        self.out.mkdir(parents=True, exist_ok=True)
        if resume and self.load_state() and self.rank == 0:
            print(f"resumed {self.out} at step {self.step}")
        if not resume and self.rank == 0:  # no file of the run before stays beside the new config
            for path in (self.state_path(), self.model_path(), self.out / "log.csv"):
                path.unlink(missing_ok=True)
        if until and self.rank == 0 and not self.step < until <= sch.steps:
            warnings.warn(f"--until {until}: " + (f"the run is at step {self.step} already: nothing to train before it"
                                                  if until <= self.step else
                                                  f"the schedule ends at step {sch.steps}: it trains to its end"))
        if self.rank == 0:
            write_json(self.out / "config.json", self.cfg.to_dict())
        if sch.keep_best and self.best is None and self.rank == 0:
            self.track_best(self.validate())  # the initial weights are a candidate too
        self.model.train()
        bar = tqdm(total=sch.steps, initial=self.step, desc=self.cfg.name, unit="step", disable=self.rank != 0,
                   mininterval=2.0)
        val = float("nan")
        t_last = t_start = time.time()
        seen = 0
        for batch in self.batches(self.step, stop):
            for g in self.opt.param_groups:
                g["lr"] = lr_at(self.step, sch)
            terms = self.losses(batch)
            self.opt.zero_grad(set_to_none=True)
            terms["total"].backward()
            self.opt.step()
            if self.cfg.schedule.ema:
                self.average()
            self.step += 1
            seen += self.cfg.data.batch * self.world
            now = time.time()
            self.elapsed += now - t_last
            t_last = now
            if self.step % sch.log_every == 0 or self.step == sch.steps:
                rate = seen / max(1e-9, now - t_start)
                bar.set_postfix(loss=f"{terms['total'].item():.4f}", patches_s=f"{rate:.0f}")
            if self.step % sch.val_every == 0 or self.step == stop:
                loss = terms["total"].item()
                if not math.isfinite(loss):  # NaN weights are not saved, let alone shipped
                    raise FadError(f"{self.cfg.name}: the loss is {loss} at step {self.step}: training diverged "
                                   "(try a lower schedule.lr, or check data.shot_range and the data); "
                                   f"{self.out} keeps the last finite checkpoint, if any")
                val = self.validate() if self.rank == 0 else val
                if self.rank == 0 and not math.isfinite(val):  # the update after a finite loss overflowed
                    raise FadError(f"{self.cfg.name}: validation PSNR is {val} at step {self.step}: training "
                                   f"diverged (try a lower schedule.lr); {self.out} keeps the last finite checkpoint, "
                                   "if any")
                if self.rank == 0:
                    self.track_best(val)
                    self.log({"step": self.step, "time_s": round(self.elapsed, 1), "lr": lr_at(self.step - 1, sch),
                              **{f"loss_{k}": round(v.item(), 6) for k, v in terms.items()},
                              "val_raw_psnr": round(val, 3)})
                    self.save_state()
                    self.checkpoint(val).save(self.model_path())
                    t_last = time.time()  # don't count validation and saving as training time
            bar.update(1)
        bar.close()
        if math.isnan(val) and self.rank == 0:
            val = self.validate()
        return self.checkpoint(val, self.best)
