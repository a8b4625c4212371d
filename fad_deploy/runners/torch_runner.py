"""PyTorch backend (fp32, any input size)."""
from __future__ import annotations

import numpy as np
import torch

from ..models.registry import Checkpoint
from .base import Runner


class TorchRunner(Runner):
    backend = "torch"

    def __init__(self, checkpoint: Checkpoint, device: str = "cpu", batch: int = 16):
        self.checkpoint = checkpoint
        self.anchor = checkpoint.anchor
        self.model = checkpoint.build().to(device)
        self.device, self.batch = device, batch

    @torch.no_grad()
    def run_network(self, u: np.ndarray) -> np.ndarray:
        outs = [self.model(torch.from_numpy(np.ascontiguousarray(u[i : i + self.batch])).to(self.device)).cpu().numpy()
                for i in range(0, len(u), self.batch)]
        return np.concatenate(outs)
