"""Shared test fixtures."""
from __future__ import annotations

import pytest
import torch


@pytest.fixture
def one_thread():
    """Run a test on one torch thread: the two cores are shared with background training,
    where more threads only add contention (a tiny VGG pass: 1.2 s on 2 threads, 0.13 s on 1)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
