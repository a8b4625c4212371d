"""What int8 means here, chosen to match TFLite's integer kernels so that the TensorFlow
rebuild can reproduce PyTorch's fake-quant model exactly:

- weights: per-output-channel symmetric int8 on TFLite's narrow grid [-127 s, 127 s] (its
  quantization spec; integer kernels and NNAPI/NPU delegates rely on -128 never occurring);
- activations: per-tensor affine 8-bit, every op output on its own scale except ops that
  TFLite runs in one scale (ReLU/ReLU6 after a non-conv, average pool, pixel shuffle,
  concat): those share their input's quantizer (PyTorch's native backend rules);
- conv + ReLU and conv + ReLU6 are fused (as TFLite fuses the activation into CONV_2D),
  so the quantizer sits after the activation and no int8 level is spent below zero;
- plain :class:`FakeQuantize` modules (the fused default does not export to ONNX QDQ).
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.ao.nn import intrinsic as nni
from torch.ao.nn import qat as nnqat
from torch.ao.quantization import (FakeQuantize, MinMaxObserver, MovingAverageMinMaxObserver,
                                   MovingAveragePerChannelMinMaxObserver, PerChannelMinMaxObserver, QConfig,
                                   QConfigMapping)
from torch.ao.quantization.backend_config import BackendConfig, BackendPatternConfig, get_native_backend_config
from torch.ao.quantization.backend_config.backend_config import ObservationType

from .learned import LearnedFakeQuantize

ACT_QMIN, ACT_QMAX = 0, 255  # quint8 here; TFLite's int8 is the same grid shifted by 128
ACT_INT8_SHIFT = -128  # quint8 zero point + this = TFLite int8 zero point
WEIGHT_QMIN, WEIGHT_QMAX = -127, 127  # int8 checkpoints made before the narrow grid stored -128


class ConvReLU62d(nni._FusedModule):
    """Conv2d followed by ReLU6, fused (the float module FX fusion produces)."""

    def __init__(self, conv: nn.Conv2d, relu6: nn.ReLU6):
        super().__init__(conv, relu6)


class QATConvReLU62d(nnqat.Conv2d, nni._FusedModule):
    """QAT version: ReLU6 of a conv with fake-quantized weights."""

    _FLOAT_MODULE = ConvReLU62d
    _FLOAT_CONV_MODULE = nn.Conv2d
    _FLOAT_RELU_MODULE = nn.ReLU6

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu6(self._conv_forward(x, self.weight_fake_quant(self.weight), self.bias))

    @classmethod
    def from_float(cls, mod, use_precomputed_fake_quant=False):
        return super().from_float(mod, use_precomputed_fake_quant)


def backend_config() -> BackendConfig:
    """PyTorch's native backend rules plus conv + ReLU6 fusion."""
    config = get_native_backend_config()
    dtype_configs = next(c for c in config.configs if c.pattern is nn.Conv2d).dtype_configs
    config.set_backend_pattern_config(
        BackendPatternConfig((nn.Conv2d, nn.ReLU6))
        .set_dtype_configs(dtype_configs)
        .set_fuser_method(lambda is_qat, conv, relu6: ConvReLU62d(conv, relu6))
        .set_fused_module(ConvReLU62d))
    config.set_backend_pattern_config(
        BackendPatternConfig(ConvReLU62d)
        .set_observation_type(ObservationType.OUTPUT_USE_DIFFERENT_OBSERVER_AS_INPUT)
        .set_dtype_configs(dtype_configs)
        .set_root_module(nn.Conv2d)
        .set_qat_module(QATConvReLU62d))
    config.set_backend_pattern_config(
        BackendPatternConfig(QATConvReLU62d)
        .set_observation_type(ObservationType.OUTPUT_USE_DIFFERENT_OBSERVER_AS_INPUT)
        .set_dtype_configs(dtype_configs)
        .set_root_module(nn.Conv2d))
    return config


def qconfig_mapping(calibrate_only: bool = False, learned_ranges: bool = False,
                    weight_qmin: int = WEIGHT_QMIN) -> QConfigMapping:
    """Moving-average observers for QAT (``learned_ranges``: activation scales trained, see
    :mod:`.learned`); plain min/max over the calibration set for PTQ."""
    act_observer = MinMaxObserver if calibrate_only else MovingAverageMinMaxObserver
    weight_observer = PerChannelMinMaxObserver if calibrate_only else MovingAveragePerChannelMinMaxObserver
    act_quantizer = LearnedFakeQuantize if learned_ranges else FakeQuantize
    activation = act_quantizer.with_args(observer=act_observer, quant_min=ACT_QMIN, quant_max=ACT_QMAX,
                                         dtype=torch.quint8, qscheme=torch.per_tensor_affine)
    weight = FakeQuantize.with_args(observer=weight_observer, quant_min=weight_qmin, quant_max=WEIGHT_QMAX,
                                    dtype=torch.qint8, qscheme=torch.per_channel_symmetric, ch_axis=0)
    return QConfigMapping().set_global(QConfig(activation=activation, weight=weight))
