"""Training configuration: one dataclass per concern, loadable from YAML or a preset name.

Every setting is checked against its annotation when a config is built, number ranges
included (``Annotated[int, positive_int]``, see :mod:`fad_deploy.checks`)."""
from __future__ import annotations

import dataclasses
import math
import typing
import warnings
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Annotated

import yaml

from ..checks import (non_negative_float, non_negative_int, positive_float, positive_int, random_seed, run_name,
                      unit_fraction)
from ..data.noise import SHOT_RANGE
from ..errors import FadError, fold


@dataclass
class ModelSpec:
    arch: str = "fan"
    config: dict = field(default_factory=dict)  # overrides of the network's config dataclass
    init: str | None = None  # checkpoint (name or path) to fine-tune from
    # model.init is a FAN with wider ARNet blocks (more hidden channels, other group widths): cut it to this
    # network's widths, keeping the groups that carry most of each block's output (fad_deploy.models.narrow)
    narrow: bool = False


@dataclass
class DataConfig:
    cache: str | None = None  # patch cache .npz; default: built from `fad-data fetch` train photos
    photos: str | None = None  # build the cache from this folder instead
    crop: Annotated[int, positive_int] = 64  # packed crop size (a 128x128 Bayer patch)
    batch: Annotated[int, positive_int] = 16
    shot_range: tuple[float, float] = SHOT_RANGE
    # k-sigma anchor shot level; default: the geometric centre of shot_range. Noise-subrange
    # fine-tunes keep their parent's anchor so the network's input scale doesn't move.
    anchor_shot: Annotated[float, positive_float] | None = None
    # Read noise around UPI's line (log b = 2.18 log a + 1.2): 0 samples its Gaussian scatter (sd
    # 0.26 in ln b); > 0 samples ln b uniformly within this many units of the line (2.3: 0.1x-10x).
    read_band: Annotated[float, non_negative_float] = 0.0
    # Where batches are made: "numpy" per image on the CPU (optionally in --workers processes),
    # "device" a whole batch at once with torch on the training device (a GPU: see
    # fad_deploy.data.device_batches); the same distribution, other random numbers.
    synthesis: typing.Literal["numpy", "device"] = "numpy"


@dataclass
class LossConfig:
    charbonnier: Annotated[float, non_negative_float] = 1.0
    distillation: Annotated[float, non_negative_float] = 0.0  # L1 to the teacher's output
    feature_matching: Annotated[float, non_negative_float] = 0.0  # teacher-feature content + style
    rgb_perceptual: Annotated[float, non_negative_float] = 0.0  # VGG16 on sRGB; needs vgg_weights
    style_weight: Annotated[float, non_negative_float] = 1.0  # style vs content inside the two perceptual losses
    teacher: str = "teacher"  # shipped model name or checkpoint path
    vgg_weights: str | None = None
    # How the Charbonnier and distillation terms weigh noise levels. "anchor": errors as they
    # are in anchor space, which scales an image's errors by anchor_shot / shot, so low-noise
    # images dominate. "relative": each image's errors also times sqrt(shot / anchor_shot),
    # i.e. relative to its own noise std, so every level counts alike, as in a mean PSNR.
    level_weighting: typing.Literal["anchor", "relative"] = "anchor"


@dataclass
class ScheduleConfig:
    steps: Annotated[int, positive_int] = 3000
    lr: Annotated[float, positive_float] = 1e-3
    min_lr: Annotated[float, non_negative_float] = 1e-5  # cosine decay floor
    warmup: Annotated[int, non_negative_int] = 100  # linear learning-rate warm-up steps
    val_every: Annotated[int, positive_int] = 250  # validate, write a log.csv row and the resume state
    log_every: Annotated[int, positive_int] = 25  # refresh the progress bar's loss and patches/s
    # Ship the weights with the best validation PSNR, the initial ones included, instead of
    # the last (for fine-tunes, e.g. the sub-range models: never ship a fine-tune that made
    # the model worse on validation).
    keep_best: bool = False
    # > 0: validate, keep and ship an exponential moving average of the weights with this decay per step
    # (its warm-up: at most (1 + step) / (10 + step)), not the last weights; 0: the last weights
    ema: Annotated[float, unit_fraction] = 0.0


@dataclass
class TrainConfig:
    name: Annotated[str, run_name] = "fan"
    model: ModelSpec = field(default_factory=ModelSpec)
    data: DataConfig = field(default_factory=DataConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    seed: Annotated[int, random_seed] = 0
    out: str | None = None  # run folder; default runs/<name>

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


_KIND_NAMES = {float: "a number", int: "a whole number", str: "a string", dict: "a mapping", bool: "true or false"}


def _number(value) -> float | None:
    """A YAML number, or a string YAML 1.1 leaves unparsed such as ``1e-3``; else None."""
    if isinstance(value, bool):
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def _typed(value, kind, where: str):
    """Check ``value`` against a field's annotation (float, int, str, dict, optional, range,
    and the :class:`fad_deploy.checks.Number` of an ``Annotated`` one)."""
    args = typing.get_args(kind)
    if type(None) in args:
        if value is None:
            return None
        kind = next(a for a in args if a is not type(None))
    if typing.get_origin(kind) is Annotated:
        base, number = typing.get_args(kind)
        try:
            return number.check(_typed(value, base, where))
        except ValueError as e:
            raise FadError(f"{where}: {e}")
    if typing.get_origin(kind) is typing.Literal:
        if value in args:
            return value
        raise FadError(f"{where}: expected one of {', '.join(map(str, args))}, got {value!r}")
    if kind is float and _number(value) is not None:
        return _number(value)
    if kind is int and isinstance(value, int) and not isinstance(value, bool):
        return value
    if kind is str and isinstance(value, (str, int, float)) and not isinstance(value, bool):
        return str(value)
    if kind is dict and isinstance(value, dict):
        return value
    if kind is bool and isinstance(value, bool):
        return value
    if typing.get_origin(kind) is tuple:  # a (low, high) noise range
        low, high = (_number(v) for v in value) if isinstance(value, (list, tuple)) and len(value) == 2 else (0, 0)
        if low is not None and high is not None and 0 < low < high and math.isfinite(high):
            return (low, high)
        raise FadError(f"{where}: expected [low, high] with 0 < low < high, both finite, got {value!r}")
    raise FadError(f"{where}: expected {_KIND_NAMES.get(kind, kind)}, got {value!r}")


def _build(cls, data: dict, where: str, group: str = ""):
    """``cls`` from the mapping ``data`` read from ``where``; ``group``: its settings' group ("schedule.")."""
    if not isinstance(data, dict):
        raise FadError(f"{where}: {group.rstrip('.') + ': ' if group else ''}expected a mapping, got "
                       f"{type(data).__name__}")
    kwargs = {}
    names = {f.name: f for f in dataclasses.fields(cls)}
    hints = typing.get_type_hints(cls, include_extras=True)
    for key, value in data.items():
        if key not in names:
            raise FadError(f"{where}: unknown setting {group}{key} (known in {group.rstrip('.') or 'the config'}: "
                           f"{fold(names, str(key))})")
        sub = {"model": ModelSpec, "data": DataConfig, "loss": LossConfig, "schedule": ScheduleConfig}
        if cls is TrainConfig and key in sub:
            value = _build(sub[key], value, where, f"{key}.")
        else:
            value = _typed(value, hints[key], f"{where}: setting {group}{key}")
        kwargs[key] = value
    return cls(**kwargs)


def presets() -> list[str]:
    return sorted(p.name.removesuffix(".yaml") for p in resources.files("fad_deploy.train").joinpath("presets").iterdir()
                  if p.name.endswith(".yaml"))


def config_from_dict(data: dict, where: str = "config") -> TrainConfig:
    """A TrainConfig from its ``to_dict()`` form; settings added since then take their defaults."""
    return _build(TrainConfig, data, where)


def load_config(name_or_path: str, overrides: list[str] = ()) -> TrainConfig:
    """A preset name or a YAML file, then ``key.sub=value`` overrides (YAML-parsed values)."""
    path = Path(name_or_path)
    if path.suffix in (".yaml", ".yml") or path.is_file() or (path.exists() and name_or_path not in presets()):
        try:
            text = path.read_text()
        except OSError as e:
            raise FadError(f"{path}: cannot read config ({e.strerror})")
        except UnicodeDecodeError:
            raise FadError(f"{path}: not a YAML config (not UTF-8 text)")
        where = str(path)
    elif name_or_path in presets():
        text = resources.files("fad_deploy.train").joinpath("presets", f"{name_or_path}.yaml").read_text()
        where = f"preset {name_or_path}"
    else:
        raise FadError(f"{name_or_path!r} is neither a config file nor a preset ({fold(presets(), name_or_path)})")
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise FadError(f"{where}: not valid YAML ({str(e).splitlines()[0]})")
    if data is None:
        warnings.warn(f"{where}: holds no settings: every one takes its default (a preset, such as "
                      f"{presets()[0]}, is a start)")
        data = {}
    if not isinstance(data, dict):  # before the overrides, which would report a group that is not one
        raise FadError(f"{where}: expected a mapping, got {type(data).__name__}")
    for item in overrides:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise FadError(f"override {item!r} must look like key.sub=value")
        node = data
        parts = key.split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {}) if isinstance(node, dict) else None
        if not isinstance(node, dict):
            raise FadError(f"override {item!r}: {key.rsplit('.', 1)[0]} is not a group of settings")
        try:
            node[parts[-1]] = yaml.safe_load(value)
        except yaml.YAMLError as e:
            raise FadError(f"override {item!r}: value is not valid YAML ({str(e).splitlines()[0]})")
    cfg = _build(TrainConfig, data, where)
    if cfg.schedule.warmup > cfg.schedule.steps:  # a short trial run: told, not refused
        warnings.warn(f"{where}: schedule.warmup {cfg.schedule.warmup} is longer than schedule.steps "
                      f"{cfg.schedule.steps}: the learning rate never reaches schedule.lr (set schedule.warmup)")
    return cfg
