"""Which source frames a clip takes: ``consecutive``, ``uniform`` or ``stride:K``.

Every sampler maps (total frames, clip length, start) to one source index per output row.
Rows past the end of the video repeat the last real row (padding) and are counted.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Dict, Tuple

import numpy as np

from mmvgm.errors import InputError

class StartPastEndError(InputError):
    """``start`` is at or after the last frame: no backend can do better, so no fallback."""


SAMPLINGS_HELP = "consecutive, uniform or stride:K (K >= 1)"


@dataclass(frozen=True)
class Sampling:
    """A parsed sampling spec; ``plan(total, n, start)`` gives (indices, padded)."""

    kind: str
    stride: int = 1

    def __str__(self) -> str:
        return f"stride:{self.stride}" if self.kind == "stride" else self.kind

    @property
    def needs_total(self) -> bool:
        """Whether the chosen frames depend on the video's length (not just its start)."""
        return self.kind == "uniform"

    def plan(self, total: int, num_frames: int, start: int = 0) -> Tuple[np.ndarray, int]:
        if total < 1:
            raise ValueError("plan() needs at least one frame")
        if start >= total:
            raise StartPastEndError(f"start frame {start} is past the end of the video ({total} frames)")
        wanted = _SAMPLERS[self.kind](total, num_frames, start, self.stride)
        real = wanted[wanted < total]
        padded = num_frames - len(real)
        indices = np.concatenate([real, np.full(padded, real[-1], dtype=np.int64)])
        return indices.astype(np.int64), padded


def _consecutive(total: int, n: int, start: int, stride: int) -> np.ndarray:
    return start + np.arange(n, dtype=np.int64)


def _stride(total: int, n: int, start: int, stride: int) -> np.ndarray:
    return start + stride * np.arange(n, dtype=np.int64)


def _uniform(total: int, n: int, start: int, stride: int) -> np.ndarray:
    available = total - start
    if available <= n:  # every frame once, then padding
        return start + np.arange(n, dtype=np.int64)
    # Evenly spaced, first and last frame included; distinct because the step is >= 1.
    return np.round(np.linspace(start, total - 1, n)).astype(np.int64)


_SAMPLERS: Dict[str, Callable[[int, int, int, int], np.ndarray]] = {
    "consecutive": _consecutive,
    "uniform": _uniform,
    "stride": _stride,
}


def parse_sampling(spec: "str | Sampling") -> Sampling:
    """``"consecutive"``, ``"uniform"`` or ``"stride:K"`` -> ``Sampling``; bad specs -> InputError."""
    if isinstance(spec, Sampling):
        return spec
    text = str(spec).strip().lower()
    kind, _, arg = text.partition(":")
    if kind == "stride":
        try:
            stride = int(arg)
        except ValueError:
            stride = 0
        if stride < 1:
            raise InputError(f"bad sampling '{spec}': stride needs a positive integer, e.g. stride:2")
        return Sampling("stride", stride)
    if kind in _SAMPLERS and not arg:
        return Sampling(kind)
    raise InputError(f"unknown sampling '{spec}' (use {SAMPLINGS_HELP})")
