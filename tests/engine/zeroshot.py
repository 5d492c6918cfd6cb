"""Synthetic real videos and temporal fakes for the training-free detector's tests: the fakes
are the same kind of scene as the real ones, only flickering or at an irregular frame rate."""
from __future__ import annotations

from pathlib import Path
from typing import Dict, List, Sequence

from mmvgm.demo import synthetic_frames, write_mp4

KINDS = ("real", "real-flicker", "real-jitter")


def make_temporal_dataset(root: Path, counts: Dict[str, int], frames: int = 16, size: int = 32,
                          seed: int = 0) -> Dict[str, List[Path]]:
    """``root/<kind>/<kind>-NNN.mp4`` for each kind in ``counts``."""
    return {kind: [write_mp4(root / kind / f"{kind}-{i:03d}.mp4",
                             synthetic_frames(kind, seed * 1_000_003 + k * 10_007 + i, frames, size, size))
                   for i in range(n)]
            for k, (kind, n) in enumerate(counts.items())}


def paths(folder: Path) -> Sequence[Path]:
    return sorted(folder.glob("*.mp4"))
