"""``mmvgm demo``: the whole path on synthetic media, offline and small enough for a CPU.

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
from typing import Any, Callable, Dict, List, Optional

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
To train a real detector/tracer (DATA/real/*.mp4 plus DATA/<generator>/*.mp4, generators listed in a label file):
  mmvgm train --backbone videomae --task joint --data DATA/ --labels my_generators.yaml \\
      --weights ~/weights/videomae-base --out runs/mine       # checkpoint: runs/mine/best
  mmvgm eval --checkpoint runs/mine/best --data DATA/ --split test
  mmvgm scan uploads/ --checkpoint runs/mine/best --out results.jsonl"""


# --------------------------------------------------------------------------- synthetic media

def _smooth_noise(rng: np.random.Generator, height: int, width: int, cells: int) -> np.ndarray:
    """Low-frequency RGB texture in [0, 1]: bilinear upsampling of a coarse random grid."""
    import cv2

    coarse = rng.random((cells, cells, 3)).astype(np.float32)
    return cv2.resize(coarse, (width, height), interpolation=cv2.INTER_CUBIC).clip(0, 1)


def _real(rng: np.random.Generator, n: int, h: int, w: int) -> np.ndarray:
    texture = _smooth_noise(rng, h * 2, w * 2, 6)
    gray = texture.mean(axis=2, keepdims=True)
    scene = (0.35 * texture + 0.65 * gray) * 0.7 + 0.15  # muted, natural-looking colours
    dx, dy = rng.uniform(-1.5, 1.5, size=2)
    x0, y0 = rng.integers(0, w // 2), rng.integers(0, h // 2)
    frames = []
    for i in range(n):
        x = int(np.clip(x0 + dx * i, 0, w)); y = int(np.clip(y0 + dy * i, 0, h))
        frame = scene[y:y + h, x:x + w] + rng.normal(0, 0.06, (h, w, 3))  # sensor grain
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


def _real_flicker(rng: np.random.Generator, n: int, h: int, w: int) -> np.ndarray:
    """A ``real`` scene whose brightness wavers from frame to frame: the content is a real
    video's, only the temporal statistics differ (what ``mmvgm fit-real`` must catch)."""
    return _real(rng, n, h, w) * rng.normal(1.0, 0.06, size=(n, 1, 1, 1))


def _real_jitter(rng: np.random.Generator, n: int, h: int, w: int) -> np.ndarray:
    """A ``real`` scene at an irregular frame rate: frames repeated and skipped at random."""
    steps = rng.choice([0, 1, 1, 2, 3], size=n)
    steps[0] = 0
    return _real(rng, 3 * n, h, w)[np.cumsum(steps)]


GENERATORS: Dict[str, Callable[[np.random.Generator, int, int, int], np.ndarray]] = {
    "real": _real, "gen-flicker": _flicker, "gen-blocks": _blocks, "gen-smooth": _smooth,
    "real-flicker": _real_flicker, "real-jitter": _real_jitter,
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
    """The tracing label file for the demo's generators (``real`` is added by the joint task)."""
    import yaml

    from mmvgm.io.atomic import write_text_atomic

    classes = [{"name": s, "display": DISPLAY.get(s, s)} for s in sources if s != "real"]
    return write_text_atomic(path, yaml.safe_dump({"name": "demo-sources", "task": "trace",
                                                   "classes": classes}, sort_keys=False))


# --------------------------------------------------------------------------- the run

MARKER = ".mmvgm-demo"


@dataclass
class DemoResult:
    out: Path                         # the demo folder
    checkpoint: Path                  # the trained checkpoint (best on validation)
    examples: Dict[str, Path]         # one held-out video per source
    results: Dict[str, dict]          # trace record per held-out video
    data: Optional[Path]              # the training videos (kept only with keep=True)
    history: List[dict] = field(default_factory=list)
    seconds: float = 0.0
    predictor: Any = None             # the Predictor that traced the examples (from checkpoint)

    @property
    def correct(self) -> int:
        return sum(1 for source, rec in self.results.items() if _predicted(rec) == source)


def _predicted(rec: dict) -> str:
    if rec.get("verdict") == "real":
        return "real"
    source = rec.get("source")
    return source["label"] if isinstance(source, dict) else "unknown"


def _prepare_out(out: Path) -> None:
    from mmvgm.errors import InputError

    if out.exists():
        if not out.is_dir():
            raise InputError("--out must be a folder", out)
        if any(out.iterdir()) and not (out / MARKER).exists():
            raise InputError("folder exists and is not an earlier demo's; choose another --out", out)
        for name in ("checkpoint", "run", "examples", "data"):
            shutil.rmtree(out / name, ignore_errors=True)
    out.mkdir(parents=True, exist_ok=True)
    (out / MARKER).write_text("made by `mmvgm demo`; safe to delete\n", encoding="utf-8")


def run_demo(out: PathLike = "mmvgm-demo", keep: bool = False, per_source: int = 20, epochs: int = 15,
             seed: int = 0, device: Optional[str] = None, progress: bool = True,
             say: Callable[[str], None] = lambda message: None) -> DemoResult:
    """Make synthetic data, train a tiny joint model, trace one held-out video per source.

    ``out`` receives ``checkpoint/``, ``run/`` (training history, last/best), ``examples/``
    (the held-out videos) and, with ``keep``, ``data/`` (the training videos; otherwise they
    live in a temporary folder that is deleted).
    """
    from mmvgm.engine.train import train
    from mmvgm.predict.predictor import Predictor
    from mmvgm.runtime import seed_everything

    started = time.perf_counter()
    out = Path(out).expanduser()
    _prepare_out(out)
    seed_everything(seed)
    scratch = None if keep else Path(tempfile.mkdtemp(prefix="mmvgm-demo-"))
    data = out / "data" if keep else scratch / "data"
    try:
        say(f"1/3 writing {per_source} synthetic videos for each of {len(SOURCES)} sources "
            f"({', '.join(SOURCES)}) ...")
        make_dataset(data, per_source=per_source, seed=seed)
        labels = write_labels(out / "labels.yaml")
        examples = {source: write_mp4(out / "examples" / f"{source}.mp4",
                                      synthetic_frames(source, 10_000_000 + seed * 101 + i))
                    for i, source in enumerate(SOURCES)}
        say(f"2/3 training a tiny VideoMAE (joint: real/fake + source) for {epochs} epochs on CPU ...")
        result = train({
            "backbone": "videomae_tiny", "task": "joint", "data": str(data), "labels": str(labels),
            "epochs": epochs, "batch_size": 8, "lr": 5e-3, "weight_decay": 0.0, "workers": 0,
            "split": {"ratios": [0.7, 0.15, 0.15], "seed": seed, "duplicates": "warn"},
            "calibration": {"target_fpr": 0.05, "threshold": None, "open_set_percentile": 5.0},
            "seed": seed, "out": str(out / "run"), "cpu": device in (None, "cpu"),
            "progress": progress, "synthetic": True,
        })
        checkpoint = out / "checkpoint"
        shutil.copytree(result.best_dir, checkpoint)
        say("3/3 tracing held-out videos (never seen in training) ...")
        predictor = Predictor.from_checkpoint(checkpoint, device=device)
        results = {source: predictor.predict(path) for source, path in examples.items()}
    finally:
        if scratch is not None:
            shutil.rmtree(scratch, ignore_errors=True)
    return DemoResult(out=out, checkpoint=checkpoint, examples=examples, results=results,
                      data=data if keep else None, history=result.history,
                      seconds=time.perf_counter() - started, predictor=predictor)
