"""Training: configs, losses and the training loop (single process or torchrun DDP)."""
