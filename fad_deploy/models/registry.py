"""Network names -> constructors, and safe checkpoints (tensors + plain data, no pickled code)."""
from __future__ import annotations

import dataclasses
import glob
import io
import os
import sys
from pathlib import Path

import torch
import torch.nn as nn

from ..data.noise import SHOT_RANGE, NoiseParams, anchor_at, anchor_for_range
from ..errors import FadError, fold
from ..fileio import write_bytes
from .cycleisp import CycleISPConfig, CycleISPLite
from .fan import FAN, FANConfig
from .pmrid import PMRID, PMRIDConfig
from .unet import UNet, UNetConfig

# name -> (class, config class, config overrides). Table 1 ablations are FAN configs.
ARCHITECTURES = {
    "fan": (FAN, FANConfig, {}),
    "fan-noskip": (FAN, FANConfig, {"skips": False}),
    "unet-plain": (FAN, FANConfig, {"feature_align": False}),
    "unet-wavelet": (FAN, FANConfig, {"feature_align": False, "sampling": "haar"}),
    "teacher": (UNet, UNetConfig, {}),
    # UPI-Raw-Lite (Table 5): one conv per level, widths x 0.3 of UPI's 32..512.
    "upi-lite": (UNet, UNetConfig, {"widths": (10, 19, 38, 77, 154), "convs_per_level": 1}),
    "cycleisp-lite": (CycleISPLite, CycleISPConfig, {}),  # Table 5
    "pmrid": (PMRID, PMRIDConfig, {}),  # PMRID-architecture speed baseline (issue 18)
}
CHECKPOINT_FORMAT = "fad-deploy-checkpoint/1"


def build(arch: str, config: dict | None = None) -> nn.Module:
    if arch not in ARCHITECTURES:
        raise FadError(f"unknown network {arch!r}: choose from {', '.join(ARCHITECTURES)}")
    cls, cfg_cls, defaults = ARCHITECTURES[arch]
    merged = {**defaults, **(config or {})}
    fields = {f.name for f in dataclasses.fields(cfg_cls)}
    unknown = set(merged) - fields
    if unknown:
        raise FadError(f"network {arch!r} has no setting(s) {', '.join(sorted(unknown))}")
    merged = {k: tuple(v) if isinstance(v, list) else v for k, v in merged.items()}
    model = cls(cfg_cls(**merged))
    model.arch = arch
    return model


def model_config(model: nn.Module) -> dict:
    return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(model.config).items()}


@dataclasses.dataclass
class Checkpoint:
    """A trained network plus what is needed to use it: its noise range and anchor."""

    name: str
    arch: str
    config: dict
    state_dict: dict
    shot_range: tuple[float, float] = SHOT_RANGE
    card: dict = dataclasses.field(default_factory=dict)  # command, data, time, metrics
    extra: dict = dataclasses.field(default_factory=dict)  # e.g. quantization ranges
    anchor_shot: float | None = None  # k-sigma anchor; None: centre of shot_range

    @property
    def anchor(self) -> NoiseParams:
        return anchor_at(self.anchor_shot) if self.anchor_shot else anchor_for_range(self.shot_range)

    def build(self) -> nn.Module:
        model = build(self.arch, self.config)
        load_weights(model, self.state_dict, f"checkpoint {self.name!r}")
        return model.eval()

    def save(self, path: str | os.PathLike, half: bool = False) -> None:
        """Write atomically; ``half`` stores weights in fp16 (for the large teacher)."""
        state = {k: (v.half() if half and v.is_floating_point() else v) for k, v in self.state_dict.items()}
        blob = {
            "format": CHECKPOINT_FORMAT,
            "name": self.name,
            "arch": self.arch,
            "config": self.config,
            "shot_range": list(self.shot_range),
            "anchor_shot": self.anchor_shot,
            "card": self.card,
            "extra": self.extra,
            "state_dict": state,
        }
        buffer = io.BytesIO()  # torch.save names the zip's records after a file's name: a stream keeps
        torch.save(canonical(blob), buffer)  # them fixed, so equal checkpoints are equal bytes wherever written
        write_bytes(path, buffer.getvalue())


def canonical(value):
    """``value`` with its plain data rebuilt and its strings interned, so that pickling writes the
    same bytes for equal contents however they were made: pickle refers back to an object it has
    written by identity, and equal strings made apart (say, unpickled in another process) are
    otherwise written again in full."""
    if isinstance(value, dict):
        return {canonical(k): canonical(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(canonical(v) for v in value)
    return sys.intern(value) if isinstance(value, str) else value


def load_weights(model: nn.Module, state_dict: dict, source: str) -> None:
    """Load (fp16 or fp32) weights; a mismatch with the network is a user error, not a crash."""
    try:
        model.load_state_dict({k: v.float() for k, v in state_dict.items()})
    except RuntimeError as e:
        detail = str(e).splitlines()[1].strip() if len(str(e).splitlines()) > 1 else str(e)
        raise FadError(f"{source} does not fit network {model.arch!r} with its config ({detail})")


def load_checkpoint(path: str | os.PathLike) -> Checkpoint:
    path = Path(path)
    if not path.is_file():
        raise FadError(f"{path}: checkpoint not found")
    try:
        blob = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - any unpickling failure means a bad file
        raise FadError(f"{path}: not a readable fad-deploy checkpoint (truncated or damaged? {type(e).__name__})")
    if not isinstance(blob, dict) or blob.get("format") != CHECKPOINT_FORMAT:
        raise FadError(f"{path}: not a fad-deploy checkpoint (no {CHECKPOINT_FORMAT!r} header)")
    missing = [k for k in ("name", "arch", "config", "state_dict", "shot_range") if k not in blob]
    if missing:
        raise FadError(f"{path}: incomplete fad-deploy checkpoint (missing {', '.join(missing)})")
    if blob["arch"] not in ARCHITECTURES:
        raise FadError(f"{path}: a checkpoint of an unknown network {blob['arch']!r} (this fad-deploy has "
                       f"{', '.join(ARCHITECTURES)})")
    return Checkpoint(
        name=blob["name"],
        arch=blob["arch"],
        config=blob["config"],
        state_dict=blob["state_dict"],
        shot_range=tuple(blob["shot_range"]),
        anchor_shot=blob.get("anchor_shot"),
        card=blob.get("card", {}),
        extra=blob.get("extra", {}),
    )


def models_dir() -> Path:
    """Where the shipped weights live: $FAD_MODELS (when set and not empty), else the repository's
    top-level models/."""
    return Path(os.environ.get("FAD_MODELS") or Path(__file__).resolve().parents[2] / "models")


def resolve_model(name_or_path: str) -> Path:
    """A shipped model name (e.g. ``fan-student``) or a checkpoint path -> checkpoint path."""
    p = Path(name_or_path)
    if p.suffix == ".pt" or p.exists() or p.is_absolute():
        if p.is_dir():
            raise FadError(f"{p}: is a folder, not a checkpoint file")
        if not p.is_file():
            raise FadError(f"{p}: checkpoint not found")
        return p
    # Shipped models sit in models/ and its sub-folders (ablations/, nsma/).
    candidates = sorted(models_dir().rglob(f"{glob.escape(name_or_path)}.pt"))
    if candidates:
        return min(candidates, key=lambda q: len(q.parts))
    shipped = sorted({q.stem for q in models_dir().rglob("*.pt")})
    hint = (f"shipped models: {fold(shipped, name_or_path)}" if shipped else
            f"no trained models in {models_dir()} yet" if models_dir().is_dir() else
            f"FAD_MODELS={models_dir()}: {'a file, not a folder' if models_dir().exists() else 'no such folder'}"
            if os.environ.get("FAD_MODELS") else
            f"the models folder {models_dir()} does not exist")
    raise FadError(f"unknown model {name_or_path!r} ({hint})")
