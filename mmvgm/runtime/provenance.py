"""Provenance recorded in every output: package versions, file hashes, seeds."""
from __future__ import annotations

import hashlib
import platform
import random
from importlib import metadata
from pathlib import Path

import numpy as np
import torch

_TRACKED_PACKAGES = (
    "mmvgm", "torch", "torchvision", "transformers", "diffusers", "timm", "accelerate",
    "pytorchvideo", "numpy", "scikit-learn", "opencv-python-headless", "av",
)



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
