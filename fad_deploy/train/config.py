"""Training configuration: one dataclass per concern, loadable from YAML or a preset name."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

import yaml

from ..data.noise import SHOT_RANGE
from ..errors import FadError


@dataclass
class ModelSpec:
    arch: str = "fan"
    config: dict = field(default_factory=dict)  # overrides of the network's config dataclass
    init: str | None = None  # checkpoint (name or path) to fine-tune from


@dataclass
class DataConfig:
    cache: str | None = None  # patch cache .npz; default: built from `fad-data fetch` train photos
    photos: str | None = None  # build the cache from this folder instead
    crop: int = 64  # packed crop size (a 128x128 Bayer patch)
    batch: int = 16
    shot_range: tuple[float, float] = SHOT_RANGE


@dataclass
class LossConfig:
    charbonnier: float = 1.0
    distillation: float = 0.0  # L1 to the teacher's output
    feature_matching: float = 0.0  # teacher-feature content + style
    rgb_perceptual: float = 0.0  # VGG16 on sRGB; needs vgg_weights
    style_weight: float = 1.0  # style vs content inside the two perceptual losses
    teacher: str = "teacher"  # shipped model name or checkpoint path
    vgg_weights: str | None = None


@dataclass
class ScheduleConfig:
    steps: int = 3000
    lr: float = 1e-3
    min_lr: float = 1e-5  # cosine decay floor
    warmup: int = 100
    val_every: int = 250
    log_every: int = 25


@dataclass
class TrainConfig:
    name: str = "fan"
    model: ModelSpec = field(default_factory=ModelSpec)
    data: DataConfig = field(default_factory=DataConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    seed: int = 0
    out: str | None = None  # run folder; default runs/<name>

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def _build(cls, data: dict, where: str):
    if not isinstance(data, dict):
        raise FadError(f"{where}: expected a mapping, got {type(data).__name__}")
    kwargs = {}
    names = {f.name: f for f in dataclasses.fields(cls)}
    for key, value in data.items():
        if key not in names:
            raise FadError(f"{where}: unknown setting {key!r} (known: {', '.join(names)})")
        sub = {"model": ModelSpec, "data": DataConfig, "loss": LossConfig, "schedule": ScheduleConfig}
        if cls is TrainConfig and key in sub:
            value = _build(sub[key], value, f"{where}.{key}")
        elif key == "shot_range":
            value = tuple(float(v) for v in value)
        kwargs[key] = value
    return cls(**kwargs)


def presets() -> list[str]:
    return sorted(p.name.removesuffix(".yaml") for p in resources.files("fad_deploy.train").joinpath("presets").iterdir()
                  if p.name.endswith(".yaml"))


def load_config(name_or_path: str, overrides: list[str] = ()) -> TrainConfig:
    """A preset name or a YAML file, then ``key.sub=value`` overrides (YAML-parsed values)."""
    path = Path(name_or_path)
    if path.suffix in (".yaml", ".yml") or path.exists():
        try:
            text = path.read_text()
        except OSError as e:
            raise FadError(f"{path}: cannot read config ({e.strerror})")
        where = str(path)
    elif name_or_path in presets():
        text = resources.files("fad_deploy.train").joinpath("presets", f"{name_or_path}.yaml").read_text()
        where = f"preset {name_or_path}"
    else:
        raise FadError(f"{name_or_path!r} is neither a config file nor a preset ({', '.join(presets())})")
    try:
        data = yaml.safe_load(text) or {}
    except yaml.YAMLError as e:
        raise FadError(f"{where}: not valid YAML ({str(e).splitlines()[0]})")
    for item in overrides:
        key, sep, value = item.partition("=")
        if not sep:
            raise FadError(f"override {item!r} must look like key.sub=value")
        node = data
        parts = key.split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = yaml.safe_load(value)
    return _build(TrainConfig, data, where)
