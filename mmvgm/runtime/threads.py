"""How a CPU training run splits the cores between the model and its decoding workers.

Measured on 2 cores with ``benchmarks/bench_train.py``, each choice wins in its own regime:

* Small models train faster when each decoding worker keeps a core of its own. videomae_tiny
  (16x64, 2 workers) ran at 150 clips/s that way, against 101 with the model's threads on
  every core. To keep up with the model, its workers need about 0.8 of a core.
* Large models train faster on every core. VideoMAE-base (8x112, 1 worker) ran at 1.3 clips/s
  on 2 threads, against 0.7 on 1. Its worker is busy 0.1% of the time.

The choice is made once, before training, from counted work and not from timings. A thread
count changes how sums are split, and so their rounding. Deciding from the config and the
data alone keeps a CPU run bit-for-bit reproducible, `--resume` included.

The counted work is the forward FLOPs of one clip, counted on the meta device (no memory, no
compute) and multiplied by 3 for the backward. It is weighed against the pixels a worker
decodes for one clip, taken from probing the first training videos.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass
import os
from typing import Any, Mapping, Optional, Sequence, Tuple

import torch

from mmvgm.runtime.workers import usable_cores

#: FLOP/s of a training step per CPU core (VideoMAE-base on the 2-core machine: ~7e10).
CPU_FLOPS_PER_CORE = 5e10
#: Decoding cost per clip: opening the file, plus per source pixel decoded and resized
#: (H.264, one thread; 80-320 px videos on the 2-core machine: 3-4 ms, ~10 ns per pixel).
DECODE_OPEN_S = 3e-3
DECODE_S_PER_PIXEL = 1e-8
#: Below this many cores of decoding load (with the model on every core), the workers get no
#: core of their own: reserving one would idle most of it.
SHARE_BELOW_CORES = 0.25
_PROBED_VIDEOS = 3


@dataclass(frozen=True)
class CpuSplit:
    """The model's compute threads, and why, for the log and the run history."""

    threads: int
    reason: str


def step_flops_per_clip(model_cfg: Mapping[str, Any], input_shape: Tuple[int, ...]) -> Optional[float]:
    """Forward + backward FLOPs of one clip of ``input_shape`` (T, C, H, W); ``None`` if the
    model cannot be counted on the meta device."""
    from torch.utils.flop_counter import FlopCounterMode

    from mmvgm.models import build_model

    cfg = copy.deepcopy(dict(model_cfg))
    if isinstance(cfg.get("backbone"), Mapping):
        cfg["backbone"] = {**cfg["backbone"], "weights": None}  # nothing to read onto the meta device
    try:
        with torch.device("meta"):
            model = build_model(cfg)
            clip = torch.empty(1, *input_shape)
        with FlopCounterMode(display=False) as counter:
            model(clip)
    except Exception:  # noqa: BLE001 - an uncountable model keeps the safe split
        return None
    return 3.0 * float(counter.get_total_flops())


def decoded_pixels_per_clip(paths: Sequence[str], num_frames: int, sampling: str) -> Optional[float]:
    """Source pixels decoded for one clip of the first probe-able video in ``paths`` (decoding
    runs from the first frame to the last sampled one); ``None`` if none of the first few probe."""
    from mmvgm.errors import MMVGMError
    from mmvgm.io import parse_sampling, probe

    for path in list(paths)[:_PROBED_VIDEOS]:
        try:
            info = probe(path)
            indices, _ = parse_sampling(sampling).plan(max(int(info.frames), 1), num_frames, 0)
        except (MMVGMError, ValueError):
            continue
        return float((int(indices.max()) + 1) * info.width * info.height)
    return None


def workers_need_cores(step_flops: float, decoded_pixels: float, cores: int) -> bool:
    """Whether decoding would take ``SHARE_BELOW_CORES`` or more of the machine while the model
    runs on all ``cores``."""
    model_s = step_flops / CPU_FLOPS_PER_CORE  # core-seconds per clip
    decode_s = DECODE_OPEN_S + decoded_pixels * DECODE_S_PER_PIXEL
    return cores * decode_s / max(model_s, 1e-12) >= SHARE_BELOW_CORES


def plan_cpu_split(device: torch.device, workers: int, model_cfg: Mapping[str, Any],
                   input_shape: Tuple[int, ...], paths: Sequence[str], sampling: str) -> Optional[CpuSplit]:
    """The compute threads for a CPU training loop fed by ``workers`` decoding processes.

    ``None`` (threads left alone) off CPU, without workers, or when ``OMP_NUM_THREADS`` is set.
    When the work cannot be counted, each worker keeps a core of its own, as the small-model
    regime needs. That is the safe side: being wrong there costs the most.
    """
    if not may_set_cpu_threads(device, workers):
        return None
    cores, threads = usable_cores(), torch.get_num_threads()
    reserved = threads_leaving_worker_cores(workers)
    flops = step_flops_per_clip(model_cfg, input_shape)
    pixels = decoded_pixels_per_clip(paths, input_shape[0], sampling)
    if flops is None or pixels is None:
        why = "the work per clip could not be counted"
    elif workers_need_cores(flops, pixels, cores):
        why = "decoding is a large share of the work"
    else:
        return CpuSplit(threads, f"CPU: the model keeps all {threads} thread(s); decoding is a small share "
                                 f"of the work ({flops / 1e9:.1f} GFLOP per clip against {pixels / 1e6:.1f} "
                                 "Mpixel decoded)")
    return CpuSplit(reserved, f"CPU: {reserved} compute thread(s), a core left to each of {workers} "
                              f"decoding worker(s): {why}")


def may_set_cpu_threads(device: torch.device, workers: int) -> bool:
    """Whether a loop on ``device`` fed by ``workers`` decoding processes may choose torch's
    compute threads: only a CPU loop with workers, and never over ``OMP_NUM_THREADS``."""
    return device.type == "cpu" and workers > 0 and not os.environ.get("OMP_NUM_THREADS")


def threads_leaving_worker_cores(workers: int) -> int:
    """Compute threads that leave a core to each of ``workers`` decoding processes (at least 1)."""
    return max(1, min(torch.get_num_threads(), usable_cores() - workers))


def share_cpu_with_workers(device: torch.device, workers: int) -> None:
    """On CPU, leave a core per decoding worker: compute threads spinning on every core starve
    the DataLoader workers (measured: 4-10x slower epochs). ``OMP_NUM_THREADS`` wins if set."""
    if may_set_cpu_threads(device, workers):
        torch.set_num_threads(threads_leaving_worker_cores(workers))


class CpuThreadsByLoad:
    """Compute threads for a CPU loop fed by decoding workers, chosen from what the loop waits on.

    A slow model keeps the workers ahead: it should have every core. A fast model leaves the
    loop waiting for decoded clips: its compute threads, spinning on every core, then slow the
    workers down, so a core per worker is left to them (:func:`share_cpu_with_workers`).
    Every ``window`` batches (the first, whose wait is worker start-up, aside): more waiting
    than computing leaves cores to the workers; computing ``margin`` times longer than waiting
    takes them back. Measured on 2 cores (``bench_scan.py``): 1.7x more files/s for a tiny
    model, 1.5x for VideoMAE-base, than the opposite choice. Threads are restored on exit;
    CUDA loops and ``OMP_NUM_THREADS`` are left alone.
    """

    def __init__(self, device: torch.device, workers: int, window: int = 4, margin: float = 2.0) -> None:
        self.active = may_set_cpu_threads(device, workers)
        self.device, self.workers, self.window, self.margin = device, workers, window, margin
        self.waited = self.computed = 0.0
        self.batches = 0
        self.shared: Optional[bool] = None
        self._before = torch.get_num_threads()

    def __enter__(self) -> "CpuThreadsByLoad":
        return self

    def __exit__(self, *exc: object) -> None:
        torch.set_num_threads(self._before)

    def record(self, waited: float, computed: float) -> None:
        """One batch: seconds spent waiting for its data, seconds spent computing it."""
        self.batches += 1
        if not self.active or self.batches == 1:
            return
        self.waited += waited
        self.computed += computed
        if (self.batches - 1) % self.window:
            return
        if self.waited > self.computed and self.shared is not True:
            self.shared = True
            share_cpu_with_workers(self.device, self.workers)
        elif self.computed > self.margin * self.waited and self.shared is not False:
            self.shared = False
            torch.set_num_threads(self._before)
        self.waited = self.computed = 0.0
