"""The int8 recipes as plain settings (no torch import, so the CLIs can show their defaults):
quantization-aware training (:class:`QATConfig`, run by :func:`.qat.quantization_aware_training`)
and calibration only (:class:`PTQConfig`)."""
from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Literal

from ..errors import FadError


@dataclass(frozen=True)
class QATConfig:
    """The QAT recipe (its defaults are what ``fad-export --qat`` runs; each field's effect is
    measured in benchmarks/results/int8_recipe.md)."""

    # measured (int8_recipe.md): 1200 -> 4800 steps of 8 more than halved fan-nsma-3's held-out drop, 9600 steps
    # of 4 (the same pixels, ~1.3x the time) cut it by another third, and 3x that halved it again
    steps: int = 28800
    lr: float = 1.5e-3  # measured best of 5e-5 ... 4e-3 (int8_recipe.md): the weights must move to fit 8 bits
    min_lr: float = 3e-5
    batch: int = 4  # measured: 4 beats 8 and 16 at the same pixels (int8_recipe.md)
    crop: int = 64  # packed; a multiple of the network's padding multiple (16 for the FAN), within the cache's patches
    observe_steps: int = 20  # observers only (no fake quant) first, so ranges start sensible
    freeze_observers_at: float = 0.75  # fraction of steps after which ranges stay fixed
    ranges: Literal["minmax", "learned"] = "learned"  # learned: LSQ scales from an MSE start (see .learned)
    scale_lr: float = 1e-2  # Adam on the learned log-scales (1e-2: 1% of a scale per step at most)
    target: Literal["clean", "float"] = "float"  # float: distil the float network's output
    level_weighting: Literal["anchor", "relative"] = "relative"  # as fad-train's loss.level_weighting
    # rmse: minimised where PSNR is maximised; drop: each image's PSNR drop against the float network
    # (needs target "float"; see fad_deploy.train.losses.psnr_drop)
    loss: Literal["charbonnier", "rmse", "drop"] = "charbonnier"
    # weight of feature-map distillation: the relative RMSE of every block's quantized feature maps against the
    # float network's, added to the output loss (0: the output alone; see .qat.FeatureTaps)
    feature_distil: float = 0.0
    seed: int = 0
    cache: str | None = None  # patch cache; default: the one fad-train uses
    base: Literal["input", "quantized"] = "quantized"  # what the residual is added to (see .qat.quantized_input)
    residual: bool = True  # quantize the residual core (False: the full network, for comparisons only)
    # "float": only the weights are fake-quantized (for a 16x8 export, whose int16 activations cost next to
    # nothing); the result is a float checkpoint whose weights lie on TFLite's int8 grid (see .qat)
    activations: Literal["int8", "float"] = "int8"
    # the weights' int8 grid: TFLite's spec wants levels [-127, 127] (-128 reproduces checkpoints made before)
    weight_qmin: Literal[-127, -128] = -127
    # the int8 input: "linear" (u itself) or "sqrt" (sqrt(max(u, 0)): one step as fine against the shot noise in
    # the shadows as in the highlights; see fad_deploy.runners.base.network_input); needs base "quantized"
    input_map: Literal["linear", "sqrt"] = "linear"
    # k > 0: the finished network takes its int8 input split in two, the input rounded down and k times the remainder
    # (8 channels, one int8 tensor), so it sees the input to 1/k of an int8 step; made after the QAT, nothing
    # retrained (see .split; at most 127 - the input's zero point); 0: one int8 input tensor. Needs base "quantized".
    # 8: the best of 4-32 measured on the shipped array (benchmarks/results/int8_split_input.md)
    input_split: int = 8
    # float steps before the QAT's (fake quant off, the same loss): a network trained on u first learns the input map
    adapt_steps: int = 0
    # later cycles after the first's steps (warm restarts), ``restarts`` of them, each continue_steps long: the
    # weights and learned ranges go on from where the cycle before left them (Adam's moments reset), lr cosine from
    # continue_lr, ranges learned again and frozen at the same fraction; the last can start from an int8 checkpoint
    # the recipe one cycle shorter made (see :meth:`previous`, .qat.quantization_aware_training)
    continue_steps: int = 0
    continue_lr: float = 5e-4
    restarts: int = 1
    # > 1: the last later cycle's clean patches brightened by a gain log-uniform in [1, last_exposure] (a longer
    # exposure, saturating at 1; see fad_deploy.data.dataset.exposed), so the ranges learned again in it cover frames
    # brighter than the training photos' (benchmarks/results/int8_brightness.md). Needs a later cycle.
    last_exposure: float = 1.0
    last_exposure_share: float = 1.0  # the share of the last cycle's patches so brightened (the others as they are)
    # t > 0: the last later cycle's per-image loss weights times (a / a_min)^t (a_min: the model's lowest shot level),
    # so the top of its sub-range, where the int8 drop is largest, weighs more (0: every level alike)
    last_level_tilt: float = 0.0

    def __post_init__(self):
        if self.input_map != "linear" and not (self.activations == "int8" and self.residual
                                               and self.base == "quantized"):
            raise FadError(f"the {self.input_map} int8 input map needs int8 activations and the residual added to "
                           "the quantized input (residual=True, base='quantized')")
        if self.input_split and not (self.activations == "int8" and self.residual and self.base == "quantized"):
            raise FadError("a split int8 input (input_split) needs int8 activations and the residual added to the "
                           "quantized input (residual=True, base='quantized'); set input_split=0")
        if self.input_split < 0 or self.input_split == 1:
            raise FadError(f"input_split must be 0 (off) or at least 2, got {self.input_split}")
        if self.continue_steps and not (self.activations == "int8" and self.ranges == "learned"):
            raise FadError("later QAT cycles (continue_steps) need int8 activations with learned ranges")
        if self.restarts < 1:
            raise FadError(f"restarts must be at least 1, got {self.restarts}")
        if not (1 <= self.last_exposure < math.inf and (self.continue_steps or self.last_exposure == 1)):
            raise FadError(f"last_exposure {self.last_exposure}: must be finite and at least 1, and above 1 only with "
                           "a later cycle (continue_steps)")
        if not 0 < self.last_exposure_share <= 1:
            raise FadError(f"last_exposure_share {self.last_exposure_share}: must be in (0, 1]")
        if not (0 <= self.last_level_tilt < math.inf and (self.continue_steps or self.last_level_tilt == 0)):
            raise FadError(f"last_level_tilt {self.last_level_tilt}: must be finite and at least 0, and above 0 only "
                           "with later cycles (continue_steps)")

    def previous(self) -> "QATConfig":
        """The recipe one cycle shorter: what made a checkpoint its last cycle can start from."""
        if self.restarts > 1:
            return replace(self, restarts=self.restarts - 1, last_exposure=1.0, last_exposure_share=1.0,
                           last_level_tilt=0.0)
        return replace(self, continue_steps=0, continue_lr=QATConfig.continue_lr, last_exposure=1.0,
                       last_exposure_share=1.0, last_level_tilt=0.0)


# Fields added to QATConfig after int8 checkpoints were made, each at the value that reproduces
# what ran before it existed: a stored recipe without the field ran so (weight-only QAT for
# 16x8 always put the weights on the narrow grid).
QAT_ADDED = {"feature_distil": 0.0, "weight_qmin": {"int8": -128, "float": -127}, "input_map": "linear",
             "adapt_steps": 0, "continue_steps": 0, "continue_lr": QATConfig.continue_lr,
             "restarts": 1, "input_split": 0, "last_exposure": 1.0,
             "last_exposure_share": 1.0, "last_level_tilt": 0.0}


def stored_qat_config(config: dict) -> dict:
    """A stored QATConfig (as a dict) completed with the fields added since it was stored."""
    activations = config.get("activations", "int8")
    return {**{k: v[activations] if isinstance(v, dict) else v for k, v in QAT_ADDED.items()}, **config}


@dataclass(frozen=True)
class PTQConfig:
    batches: int = 16
    base: Literal["input", "quantized"] = "quantized"  # as QATConfig.base
    batch: int = 8
    crop: int = 64
    seed: int = 0
    cache: str | None = None
