"""Helpers for tests/data (and tests/io/test_discovery.py): placeholder videos, a stand-in clip reader."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from mmvgm.errors import DecodeError


def touch_video(path: Path, content: bytes = b"") -> Path:
    """A placeholder file with a video extension (discovery never decodes)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content or path.name.encode())
    return path


def npy_reader(path: str, num_frames: int = 16, **_: object) -> np.ndarray:
    """A stand-in for read_clip reading (T,H,W,3) uint8 .npy files; picklable for workers."""
    if Path(path).read_bytes()[:6] != b"\x93NUMPY":
        raise DecodeError("not a clip", path)
    clip = np.load(path)
    return clip[:num_frames]


def label_tree(root: Path, counts) -> Path:
    """``root/<label>/<i>.mp4`` placeholders, ``counts`` = ((label, n), ...); distinct contents."""
    for label, n in counts:
        for i in range(n):
            touch_video(root / label / f"{i}.mp4", content=f"{label}{i}".encode())
    return root
