"""``mmvgm demo``: the whole path on synthetic media, offline, in about a minute on 2 CPU cores.

1. :func:`make_dataset` writes small H.264 videos from four visibly different synthetic
   "sources" (``root/<source>/*.mp4``): ``real`` (a smooth textured scene, slow camera pan,
   sensor noise) and three stand-in generators (``gen-flicker``: warm tint with frame-to-frame
   brightness flicker; ``gen-blocks``: blocky checkerboard texture drifting sideways;
   ``gen-smooth``: noise-free blurred blobs moving fast). They are *not* real generators.
2. It trains a tiny VideoMAE (joint task: real/fake head + source head) with the engine.
3. It traces a held-out video of each kind and prints the result tables.

This is a demonstration: a checkpoint trained on synthetic media says nothing about real
videos. Real use needs a checkpoint trained on real data (see :data:`TRAIN_HINT`).
"""
from __future__ import annotations

import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, List, Optional

import numpy as np

from mmvgm.errors import PathLike

SOURCES = ("real", "gen-flicker", "gen-blocks", "gen-smooth")
DISPLAY = {
    "real": "Real (synthetic stand-in)",
    "gen-flicker": "Generator A: tint + flicker (synthetic)",
    "gen-blocks": "Generator B: block texture (synthetic)",
    "gen-smooth": "Generator C: smooth fast blobs (synthetic)",
}
DISCLAIMER = ("This is a DEMONSTRATION on synthetic media: the 'sources' are made-up patterns, "
              "not real generators, and this checkpoint says nothing about real videos. "
              "Real use needs a checkpoint trained on real data.")
TRAIN_HINT = """\
To train a real detector/tracer (folder layout DATA/<label>/*.mp4, labels: real + one folder per generator):
  mmvgm train --backbone videomae --task joint --data DATA/ --out ckpt/ --weights ~/weights/videomae-base
  mmvgm eval --checkpoint ckpt/ --data DATA/ --split test
  mmvgm trace clip.mp4 --checkpoint ckpt/"""


# --------------------------------------------------------------------------- synthetic media

def _smooth_noise(rng: np.random.Generator, height: int, width: int, cells: int) -> np.ndarray:
    """Low-frequency RGB texture in [0, 1]: bilinear upsampling of a coarse random grid."""
    import cv2

    coarse = rng.random((cells, cells, 3)).astype(np.float32)
    return cv2.resize(coarse, (width, height), interpolation=cv2.INTER_CUBIC).clip(0, 1)


def _real(rng: np.random.Generator, n: int, h: int, w: int) -> np.ndarray:
    scene = _smooth_noise(rng, h * 2, w * 2, 6) * 0.7 + 0.15
    dx, dy = rng.uniform(-1.5, 1.5, size=2)
    x0, y0 = rng.integers(0, w // 2), rng.integers(0, h // 2)
    frames = []
    for i in range(n):
        x = int(np.clip(x0 + dx * i, 0, w)); y = int(np.clip(y0 + dy * i, 0, h))
        frame = scene[y:y + h, x:x + w] + rng.normal(0, 0.03, (h, w, 3))
        frames.append(frame)
    return np.stack(frames)


def _flicker(rng: np.random.Generator, n: int, h: int, w: int) -> np.ndarray:
    scene = _smooth_noise(rng, h, w, 4) * 0.5 + np.array([0.35, 0.15, 0.0], np.float32)
    gains = 1.0 + 0.35 * np.where(np.arange(n) % 2 == 0, 1.0, -1.0) * rng.uniform(0.6, 1.0)
    return np.stack([scene * g for g in gains])


def _blocks(rng: np.random.Generator, n: int, h: int, w: int) -> np.ndarray:
    block = int(rng.integers(6, 10))
    yy, xx = np.mgrid[0:h, 0:w]
    colors = rng.random((2, 3)).astype(np.float32) * 0.6 + 0.2
    speed = rng.uniform(1.0, 2.5)
    frames = []
    for i in range(n):
        checker = (((xx + int(speed * i)) // block + yy // block) % 2).astype(np.float32)[..., None]
        frames.append(colors[0] * checker + colors[1] * (1 - checker))
    return np.stack(frames)


def _smooth(rng: np.random.Generator, n: int, h: int, w: int) -> np.ndarray:
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    background = np.array(rng.random(3) * 0.3, np.float32)
    blobs = [(rng.uniform(0, w), rng.uniform(0, h), rng.uniform(-6, 6), rng.uniform(-6, 6),
              rng.random(3).astype(np.float32)) for _ in range(3)]
    frames = []
    for i in range(n):
        frame = np.broadcast_to(background, (h, w, 3)).copy()
        for bx, by, vx, vy, color in blobs:
            cx, cy = (bx + vx * i) % w, (by + vy * i) % h
            weight = np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / (2 * (w / 6) ** 2))[..., None]
            frame += weight * color
        frames.append(frame)
    return np.stack(frames)


GENERATORS: Dict[str, Callable[[np.random.Generator, int, int, int], np.ndarray]] = {
    "real": _real, "gen-flicker": _flicker, "gen-blocks": _blocks, "gen-smooth": _smooth,
}


def synthetic_frames(source: str, seed: int, frames: int = 16, height: int = 64,
                     width: int = 64) -> np.ndarray:
    """uint8 (T,H,W,3) RGB frames of one synthetic ``source`` (see the module docstring)."""
    rng = np.random.default_rng(seed)
    video = GENERATORS[source](rng, frames, height, width)
    return (np.clip(video, 0.0, 1.0) * 255).round().astype(np.uint8)


def write_mp4(path: PathLike, frames: np.ndarray, fps: int = 8) -> Path:
    """H.264 mp4 via PyAV (near-lossless, CRF 18)."""
    import av

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height = frames.shape[2], frames.shape[1]
        stream.pix_fmt = "yuv420p"
        stream.options = {"crf": "18", "preset": "ultrafast"}
        for frame in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(frame),
                                                                   format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def make_dataset(root: PathLike, per_source: int = 16, frames: int = 16, size: int = 64,
                 seed: int = 0, sources=SOURCES) -> Dict[str, List[Path]]:
    """Write ``root/<source>/<source>-NNN.mp4`` for each source; returns the paths per source."""
    root = Path(root)
    out: Dict[str, List[Path]] = {}
    for s_index, source in enumerate(sources):
        out[source] = [write_mp4(root / source / f"{source}-{i:03d}.mp4",
                                 synthetic_frames(source, seed * 100003 + s_index * 1009 + i,
                                                  frames, size, size))
                       for i in range(per_source)]
    return out


def write_labels(path: PathLike, sources=SOURCES) -> Path:
    """A label-set YAML for the demo sources (``real`` first: the joint task's negative class)."""
    import yaml

    from mmvgm.io.atomic import write_text_atomic

    classes = [{"name": s, "display": DISPLAY.get(s, s)} for s in sources]
    return write_text_atomic(path, yaml.safe_dump({"name": "demo", "task": "trace",
                                                   "classes": classes}, sort_keys=False))
