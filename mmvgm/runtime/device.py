"""Device and numeric precision: where a model runs and in which float format it scores."""
from __future__ import annotations

from typing import Optional

import torch

from mmvgm.errors import InputError


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


PRECISIONS = ("auto", "fp32", "bf16", "fp16")
_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def precision_dtype(precision: str, device: torch.device, fitted: Optional[str] = None) -> Optional[torch.dtype]:
    """The autocast dtype of ``precision`` on ``device`` (``None``: plain fp32).

    ``auto``, the same default for every verb (so what ``eval`` measures is what ``trace`` and
    ``scan`` give): on CUDA, ``fitted`` (the precision the checkpoint's calibration was fitted
    under) when the device runs it, else bf16 where supported; fp32 on CPU, where reduced
    precision is slower, not faster.
    """
    if precision not in PRECISIONS:
        raise InputError(f"unknown precision '{precision}' (use {', '.join(PRECISIONS)})")
    if precision == "auto":
        if device.type == "cuda" and fitted == "fp32":
            return None
        if device.type == "cuda" and fitted == "fp16":
            return torch.float16
        return autocast_dtype(device)
    if precision == "fp16" and device.type != "cuda":
        raise InputError("precision fp16 needs a CUDA device; use fp32 or bf16 on CPU")
    return _DTYPES.get(precision)


def precision_name(dtype: Optional[torch.dtype]) -> str:
    """``None`` -> ``fp32``, ``torch.bfloat16`` -> ``bf16``, ``torch.float16`` -> ``fp16``."""
    return next((name for name, d in _DTYPES.items() if d == dtype), "fp32")
