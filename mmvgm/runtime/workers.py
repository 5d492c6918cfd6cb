"""Decoding worker processes: how many a scan starts and how they start."""
from __future__ import annotations

import os
from typing import Mapping, Optional

from mmvgm.errors import InputError


def usable_cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


#: A bound on the memory of many-core hosts: each worker holds its own decoders and clips. No
#: more than this many were ever measured to help (benchmarks/README.md, bench_scan).
MAX_DEFAULT_DECODE_WORKERS = 16


def default_decode_workers(env: Optional[Mapping[str, str]] = None) -> int:
    """Decoding processes for a scan: this process's share of the usable cores (split between
    the ranks on this machine under torchrun / accelerate, ``LOCAL_WORLD_SIZE``) less two, for
    the process feeding the model and its pin-memory thread; at least 2, at most 16.

    Decoding is what limits a GPU scan: one worker decodes far fewer clips per second than a GPU
    scores, so the 2 workers that suit a small machine would leave a GPU idle most of the time.
    """
    env = os.environ if env is None else env
    ranks = env.get("LOCAL_WORLD_SIZE", "").strip()
    share = usable_cores() // max(1, int(ranks)) if ranks.isdigit() else usable_cores()
    return max(2, min(share - 2, MAX_DEFAULT_DECODE_WORKERS))


WORKER_START_ENV = "MMVGM_WORKER_START"
WORKER_START_METHODS = ("fork", "forkserver", "spawn")
#: Imported once in the fork server, so that each worker it forks starts with them loaded; the
#: transforms too, which a worker needs to unpickle its decoding (the predictor's dataset holds a
#: ``VideoTransform``) and which ``mmvgm.predict.predictor`` imports only when it builds one.
_WORKER_PRELOAD = ("torch", "numpy", "cv2", "av", "mmvgm.predict.predictor", "mmvgm.data.dataset",
                   "mmvgm.data.transforms")
#: Imported in the fork server as well when its workers are to read with torchcodec.
_TORCHCODEC_PRELOAD = ("mmvgm.io.torchcodec_preload",)

#: Files per decoding worker from which they read with torchcodec (:func:`torchcodec_pays`);
#: the figures behind it are in ``benchmarks/README.md`` (the ``bench_scan.py`` table).
TORCHCODEC_MIN_FILES_PER_WORKER = 500


def worker_start_method() -> Optional[str]:
    """How decoding workers start: ``$MMVGM_WORKER_START`` (fork, forkserver or
    spawn), else ``None``, Python's default (fork on Linux before Python 3.14).

    ``forkserver`` forks each worker from a small server process instead of from this one,
    which may hold a CUDA context, a model and threads that hold locks; forking those is slow
    and, with threads, unsafe. The price is start-up: each worker imports the main module again,
    so the first batch comes markedly later than from forked workers (``bench_scan.py
    --start-method``). The default stays Python's.
    """
    value = os.environ.get(WORKER_START_ENV, "").strip().lower()
    if not value:
        return None
    if value not in WORKER_START_METHODS:
        raise InputError(f"{WORKER_START_ENV}={value!r}: use one of {', '.join(WORKER_START_METHODS)}")
    return value


def torchcodec_pays(expected_files: Optional[int], workers: int) -> bool:
    """Whether ``workers`` decoding workers should read with torchcodec, for ``expected_files``
    files (``None``: long-lived work of unknown length, such as a service, which earns it back).

    Importing torchcodec costs seconds once per process (it imports ``torch._dynamo``); per file
    it saves a worker part of PyAV's time, more on long files. Below
    :data:`TORCHCODEC_MIN_FILES_PER_WORKER` files per worker, PyAV finishes sooner.
    """
    if expected_files is None:
        return True
    return expected_files >= TORCHCODEC_MIN_FILES_PER_WORKER * max(1, workers)


def prepare_decoding_workers(torchcodec: bool = True) -> Optional[str]:
    """Ready this process to start decoding workers; returns their start method (a
    ``multiprocessing`` context name, or None for the default; see :func:`worker_start_method`).

    The decoders are imported here, so that forked workers inherit them instead of each
    importing cv2 and av on its first file; ``torchcodec`` too when asked (see
    :func:`torchcodec_pays`), which is what makes the workers read with it. A fork server
    (chosen, or the start method off the main thread) starts first, importing torch, the
    decoders and mmvgm on the other cores while this process goes on: call this before loading
    a model, so that its imports overlap with the load. Its workers get torchcodec from it,
    so this process then skips that import: its own reads use several threads, hence PyAV.
    """
    from mmvgm.io.backends import preload_decoders

    method = worker_start_method()
    if start_method_here(method) == "forkserver":
        from multiprocessing import forkserver

        preload_fork_server(torchcodec=torchcodec)
        forkserver.ensure_running()
        preload_decoders(torchcodec=False)
    else:
        preload_decoders(torchcodec=torchcodec)
    return method


def preload_fork_server(torchcodec: bool = True) -> None:
    """Have the fork server, when it starts, import torch, the decoders and mmvgm once, so that
    each worker it forks starts with them loaded (a worker importing torch itself takes seconds);
    torchcodec's decoders too with ``torchcodec`` (where they load), so that its workers read with
    them. Python starts one fork server per process: the first workers' choice holds for later
    ones."""
    import multiprocessing
    from importlib.util import find_spec

    from mmvgm.io import torchcodec_reader

    names = _WORKER_PRELOAD + (_TORCHCODEC_PRELOAD if torchcodec and torchcodec_reader.available() else ())
    preload = [name for name in names if find_spec(name.split(".")[0]) is not None]
    multiprocessing.get_context("forkserver").set_forkserver_preload(preload)


def start_method_here(method: Optional[str]) -> Optional[str]:
    """The start method for decoding workers started now, from this thread: ``method`` (see
    :func:`worker_start_method`), except that Python's default fork becomes ``forkserver``
    off the main thread.

    Forked from a ``ThreadPoolExecutor`` thread (a service scoring from one), a worker inherits
    the executor's registry of its threads, the forked one included; at exit Python joins them,
    cannot join the current thread, and the worker ends with code 1. A fork server's children
    come from its only thread. Workers started from the main thread do not have the problem
    (it is in no executor's registry). An explicit ``MMVGM_WORKER_START=fork`` is obeyed.
    """
    import multiprocessing
    import threading

    if method is not None or threading.current_thread() is threading.main_thread():
        return method
    # Python's default: the one set, else the first supported (asking the context would fix it).
    default = multiprocessing.get_start_method(allow_none=True) or multiprocessing.get_all_start_methods()[0]
    return "forkserver" if default == "fork" else method
