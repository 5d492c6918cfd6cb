"""A directory of frame images (png/jpg/...) read as a video, in natural order."""
from __future__ import annotations

import re
from pathlib import Path
from typing import List, Sequence, Tuple

import numpy as np

from mmvgm.errors import DecodeError
from mmvgm.io.clip import Clip, VideoInfo
from mmvgm.io.image import image_size, read_image
from mmvgm.io.limits import check_frames, check_pixels
from mmvgm.io.paths import IMAGE_EXTENSIONS
from mmvgm.io.sampling import Sampling

BACKEND_NAME = "frames"


def natural_key(name: str) -> List:
    """``frame_2`` sorts before ``frame_10``."""
    return [int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", name)]


def list_frames(folder: Path) -> List[Path]:
    """Frame files in natural order; hidden files (``.DS_Store``, ``._x.png``) are ignored."""
    files = [p for p in folder.iterdir()
             if p.is_file() and not p.name.startswith(".") and p.suffix.lower() in IMAGE_EXTENSIONS]
    if not files:
        raise DecodeError(f"directory has no frame images ({', '.join(IMAGE_EXTENSIONS)})", folder)
    return sorted(files, key=lambda p: natural_key(p.name))


def _first_size(files: List[Path], max_pixels: int) -> Tuple[int, int]:
    """The first frame's size from its header, held to the pixel budget before any decoding."""
    width, height = image_size(files[0])
    check_pixels(width, height, max_pixels, files[0])
    return width, height


def probe_frames(folder: Path, max_pixels: int) -> VideoInfo:
    files = list_frames(folder)
    width, height = _first_size(files, max_pixels)
    codec = files[0].suffix.lower().lstrip(".").replace("jpg", "jpeg")
    return VideoInfo(str(folder), len(files), None, width, height, f"{codec} frames", None)


def read_frames_clips(folder: Path, num_frames: int, sampling: Sampling, starts: Sequence[int],
                      max_pixels: int, max_frames: int) -> List[Clip]:
    """One clip per start; the folder is listed once and each frame image read once."""
    files = list_frames(folder)
    check_frames(len(files), max_frames, folder)
    width, height = _first_size(files, max_pixels)
    plans = [sampling.plan(len(files), num_frames, start) for start in starts]
    unique = {}
    for index in sorted(set().union(*(indices.tolist() for indices, _ in plans))):
        frame = read_image(files[index], max_pixels=max_pixels)
        if frame.shape[:2] != (height, width):
            raise DecodeError(f"frame size {frame.shape[1]}x{frame.shape[0]} differs from the first "
                              f"frame's {width}x{height}", files[index])
        unique[index] = frame
    return [Clip(np.stack([unique[i] for i in indices.tolist()]), padded=padded, indices=indices,
                 total_frames=len(files), backend=BACKEND_NAME, path=str(folder))
            for indices, padded in plans]
