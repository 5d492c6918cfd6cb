"""Device and precision choice, seeding, and the provenance recorded in every output."""
from __future__ import annotations

import hashlib
import os
import platform
import random
from importlib import metadata
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, Optional

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


def share_cpu_with_workers(device: torch.device, workers: int) -> None:
    """On CPU, leave a core per decoding worker: compute threads spinning on every core starve
    the DataLoader workers (measured: 4-10x slower epochs). ``OMP_NUM_THREADS`` wins if set."""
    if device.type != "cpu" or workers <= 0 or os.environ.get("OMP_NUM_THREADS"):
        return
    torch.set_num_threads(max(1, min(torch.get_num_threads(), usable_cores() - workers)))


@contextmanager
def cpu_shared_with_workers(device: torch.device, workers: int) -> Iterator[None]:
    """:func:`share_cpu_with_workers` for the duration of a ``with`` block only."""
    before = torch.get_num_threads()
    share_cpu_with_workers(device, workers)
    try:
        yield
    finally:
        torch.set_num_threads(before)


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
