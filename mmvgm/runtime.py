"""Device and precision choice, seeding, and the provenance recorded in every output."""
from __future__ import annotations

import hashlib
import os
import platform
import random
import sys
from importlib import metadata
from pathlib import Path
from typing import Mapping, Optional

import numpy as np
import torch

from mmvgm.errors import InputError

_TRACKED_PACKAGES = (
    "mmvgm", "torch", "torchvision", "transformers", "diffusers", "timm", "accelerate",
    "pytorchvideo", "numpy", "scikit-learn", "opencv-python-headless", "av",
)


def pick_device(preference: Optional[str] = None) -> torch.device:
    """``None``/``"auto"``: CUDA when present, else CPU. Otherwise the named device."""
    if preference in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(preference)
    except RuntimeError:
        raise InputError(f"unknown device '{preference}' (use cpu, cuda, cuda:N or auto)") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise InputError(f"device '{preference}' requested but CUDA is not available")
    if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
        raise InputError(f"device '{preference}' requested but only {torch.cuda.device_count()} CUDA "
                         f"device(s) are visible (cuda:0 to cuda:{torch.cuda.device_count() - 1})")
    return device


def autocast_dtype(device: torch.device) -> Optional[torch.dtype]:
    """bf16 on CUDA devices that support it, else no autocast."""
    if device.type == "cuda" and torch.cuda.is_bf16_supported():
        return torch.bfloat16
    return None


def usable_cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


#: A bound on the memory of many-core hosts: each worker holds its own decoders and clips. 14 to 16
#: processes were the most measured (16-core H100 machine); more were not.
MAX_DEFAULT_DECODE_WORKERS = 16


def default_decode_workers(env: Optional[Mapping[str, str]] = None) -> int:
    """Decoding processes for a scan: this process's share of the usable cores (split between
    the ranks on this machine under torchrun / accelerate, ``LOCAL_WORLD_SIZE``) less two, for
    the process feeding the model and its pin-memory thread; at least 2, at most 16.

    Decoding is what limits a GPU scan: on a 16-core H100 machine one worker decoded about 40
    VideoMAE-base clips/s (16 x 224 from 320 x 240 H.264) while the model scored 590, so the
    2 workers that suit a 2-core machine would leave the GPU idle most of the time.
    """
    env = os.environ if env is None else env
    ranks = env.get("LOCAL_WORLD_SIZE", "").strip()
    share = usable_cores() // max(1, int(ranks)) if ranks.isdigit() else usable_cores()
    return max(2, min(share - 2, MAX_DEFAULT_DECODE_WORKERS))


WORKER_START_ENV = "MMVGM_WORKER_START"
WORKER_START_METHODS = ("fork", "forkserver", "spawn")
#: Imported once in the fork server, so that each worker it forks starts with them loaded.
_WORKER_PRELOAD = ("torch", "numpy", "cv2", "av", "mmvgm.inference", "mmvgm.data.datasets")


def worker_start_method() -> Optional[str]:
    """How decoding DataLoader workers start: ``$MMVGM_WORKER_START`` (fork, forkserver or
    spawn), else ``None``, Python's default (fork on Linux before Python 3.14).

    ``forkserver`` forks each worker from a small server process instead of from this one,
    which may hold a CUDA context, a model and threads that hold locks; forking those is slow
    and, with threads, unsafe. The price is start-up: each worker imports the main module again.
    Measured on 2 cores (``bench_scan.py --start-method``), the first batch came after 1.30 s
    from a fork server and after 0.14 s forked. The default stays Python's.
    """
    value = os.environ.get(WORKER_START_ENV, "").strip().lower()
    if not value:
        return None
    if value not in WORKER_START_METHODS:
        raise InputError(f"{WORKER_START_ENV}={value!r}: use one of {', '.join(WORKER_START_METHODS)}")
    return value


def prepare_decoding_workers() -> Optional[str]:
    """Ready this process to start decoding DataLoader workers; returns their start method
    (the DataLoader's ``multiprocessing_context``, see :func:`worker_start_method`).

    The decoders are imported here, so that forked workers inherit them instead of each
    importing cv2 and av on its first file. A chosen fork server starts in the background with
    torch, the decoders and mmvgm imported in it: call this before loading a model, so that
    its imports overlap with the load.
    """
    from mmvgm.io.backends import preload_decoders

    preload_decoders()
    method = worker_start_method()
    if method == "forkserver":
        import multiprocessing
        from importlib.util import find_spec
        from multiprocessing import forkserver

        preload = [name for name in _WORKER_PRELOAD if find_spec(name.split(".")[0]) is not None]
        multiprocessing.get_context("forkserver").set_forkserver_preload(preload)
        forkserver.ensure_running()
    return method


def forget_inherited_executor_threads() -> None:
    """Runs in every child forked from a process that imported this module (every decoding or
    training worker). A child forked from a ``ThreadPoolExecutor`` thread (a service calling
    ``predict_batch`` from one) inherits the executor's list of its threads, the forked one
    included; at exit Python joins them, fails on that one ("cannot join current thread") and
    the child ends with code 1, which torch reports in the parent as a crashed worker. None of
    those threads exists in the child."""
    executor_threads = sys.modules.get("concurrent.futures.thread")
    if executor_threads is not None and hasattr(executor_threads, "_threads_queues"):
        executor_threads._threads_queues.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=forget_inherited_executor_threads)


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


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)


def package_versions() -> dict:
    """Versions of the packages that decide results; recorded in every metrics file and checkpoint."""
    versions = {"python": platform.python_version()}
    for name in _TRACKED_PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return versions


def file_sha256(path: Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(chunk), b""):
            digest.update(block)
    return digest.hexdigest()
