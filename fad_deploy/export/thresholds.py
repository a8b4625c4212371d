"""The bounds validation holds every export to (no heavy imports: the CLI shows them)."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Thresholds:
    parity_int8_db: float = 45.0  # int8 export vs PyTorch's fake-quant network
    parity_float_db: float = 60.0  # float export vs PyTorch fp32
    parity_int16_db: float = 45.0  # 16x8 export (int8 weights, int16 activations) vs its PyTorch network
    max_drop_db: float = 0.10  # denoising PSNR of tflite-int8 (or -int16) below PyTorch fp32, mean over the levels
    max_level_drop_db: float = 0.20  # the same at any one noise level
