"""Shared helpers for the model tests: tiny configs only, CPU, seeded."""
from __future__ import annotations

import pytest
import torch

# The four backbone kinds, each as its tiny config (8 frames, 32 px, hidden 32-256).
TINY = ["i3d_r50_tiny", "videomae_tiny", "xclip_tiny", "timm_tiny"]


@pytest.fixture(autouse=True)
def _seeded():
    torch.manual_seed(0)


def clip(batch: int = 2, frames: int = 8, channels: int = 3, size: int = 32) -> torch.Tensor:
    return torch.randn(batch, frames, channels, size, size)
