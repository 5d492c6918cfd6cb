"""Which source frames a clip takes: ``consecutive``, ``uniform`` or ``stride:K``.

Every sampler maps (total frames, clip length, start) to one source index per output row.
Rows past the end of the video repeat the last real row (padding) and are counted.
"""
from __future__ import annotations

from dataclasses import dataclass
from bisect import bisect_left
from typing import Callable, Dict, Sequence, Tuple

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
        # Python ints until the one array at the end: a clip is a few numbers, for which
        # numpy's cost per call is most of the time, and every read plans.
        wanted = _SAMPLERS[self.kind](total, num_frames, start, self.stride)
        real = bisect_left(wanted, total)  # ascending: the real rows come first
        padded = num_frames - real
        indices = list(wanted[:real]) + [wanted[real - 1]] * padded
        return np.array(indices, dtype=np.int64), padded


def _consecutive(total: int, n: int, start: int, stride: int) -> Sequence[int]:
    return range(start, start + n)


def _stride(total: int, n: int, start: int, stride: int) -> Sequence[int]:
    return range(start, start + stride * n, stride)


def _uniform(total: int, n: int, start: int, stride: int) -> Sequence[int]:
    available = total - start
    if available <= n:  # every frame once, then padding
        return range(start, start + n)
    if n == 1:
        return [start]  # as np.linspace(start, total - 1, 1)
    # Evenly spaced, first and last frame included; distinct because the step is >= 1. The
    # float operations of np.round(np.linspace(start, total - 1, n)): i * step + start, the
    # last one exactly total - 1, rounded half to even (Python's round, as numpy's).
    step = (total - 1 - start) / (n - 1)
    return [round(i * step + start) for i in range(n - 1)] + [total - 1]


_SAMPLERS: Dict[str, Callable[[int, int, int, int], Sequence[int]]] = {
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
