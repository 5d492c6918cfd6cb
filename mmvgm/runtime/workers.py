"""Decoding worker processes: how many a scan starts and how they start."""
from __future__ import annotations

import os
import sys
from typing import Mapping, Optional

from mmvgm.errors import InputError


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
_WORKER_PRELOAD = ("torch", "numpy", "cv2", "av", "mmvgm.predict.predictor", "mmvgm.data.dataset")


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
