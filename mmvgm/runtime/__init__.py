"""Runtime: device and precision, decoding workers, CPU threads, provenance.

The names below load on first use, so that ``mmvgm.io`` can ask ``runtime.threads`` for its
decoder threads without importing torch; ``workers`` is light and loads now.
"""
from importlib import import_module
from typing import Any

from mmvgm.runtime.workers import (MAX_DEFAULT_DECODE_WORKERS, WORKER_START_ENV, WORKER_START_METHODS,
                                   default_decode_workers,
                                   prepare_decoding_workers, usable_cores, worker_start_method)

_LAZY = {
    "autocast_dtype": "device", "pick_device": "device", "PRECISIONS": "device",
    "precision_dtype": "device", "precision_name": "device",
    "file_sha256": "provenance", "package_versions": "provenance", "seed_everything": "provenance",
    "THREADS_ENV": "threads", "DECODE_THREADS_ENV": "threads", "ThreadPolicy": "threads",
    "ThreadLoop": "threads", "TrainingWork": "threads", "resolve_threads": "threads",
    "decoder_threads": "threads", "worker_torch_threads": "threads", "decoding_worker_init": "threads",
}

__all__ = [*_LAZY, "MAX_DEFAULT_DECODE_WORKERS", "WORKER_START_ENV", "WORKER_START_METHODS",
           "default_decode_workers", "prepare_decoding_workers",
           "usable_cores", "worker_start_method"]


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(import_module(f"{__name__}.{_LAZY[name]}"), name)
    globals()[name] = value
    return value


def __dir__() -> list:
    return sorted(__all__)
