"""Fixtures for tests/data: tiny folder datasets and manifests, made on the fly."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

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


@pytest.fixture
def folder_dataset(tmp_path: Path) -> Path:
    """root/<label>/...: videos at two depths, a frame directory, junk that must be ignored."""
    root = tmp_path / "data"
    for label, n in (("real", 5), ("fake", 7)):
        for i in range(n):
            touch_video(root / label / f"clip{i}.mp4")
    touch_video(root / "fake" / "nested" / "deeper" / "x.webm")
    frames = root / "real" / "frames_a"
    for i in range(3):
        touch_video(frames / f"frame_{i}.png")
    touch_video(root / "real" / "notes.txt")
    touch_video(root / "real" / ".hidden.mp4")
    touch_video(root / "real" / "thumb.jpg")  # loose image: ignored with a warning
    touch_video(root / "fake" / "nested" / "poster.png")  # beside a video: a thumbnail, not a frame dir
    touch_video(root / "fake" / "nested" / "y.mov")
    return root
