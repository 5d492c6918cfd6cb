"""Budgets that bound the work and memory one input may cost, checked before decoding.

``max_pixels`` caps one frame (width x height) and ``max_frames`` caps the length of a
video. Every reader takes both as keyword arguments; ``None`` means the module default,
which :func:`set_default_limits` changes for the whole process (e.g. a scanning service).
"""
from __future__ import annotations

from typing import Optional

from mmvgm.errors import InputError, LimitError, PathLike

#: 8K UHD (7680 x 4320): one RGB frame is ~100 MB.
DEFAULT_MAX_PIXELS = 7680 * 4320
#: About 55 minutes at 30 fps.
DEFAULT_MAX_FRAMES = 100_000

_defaults = {"max_pixels": DEFAULT_MAX_PIXELS, "max_frames": DEFAULT_MAX_FRAMES}


def set_default_limits(max_pixels: Optional[int] = None, max_frames: Optional[int] = None) -> dict:
    """Change the process-wide defaults; returns the previous ones (to restore them later)."""
    previous = dict(_defaults)
    for key, value in (("max_pixels", max_pixels), ("max_frames", max_frames)):
        if value is not None:
            _defaults[key] = _positive(key, value)
    return previous


def default_limits() -> dict:
    return dict(_defaults)


def resolve_max_pixels(value: Optional[int]) -> int:
    return _defaults["max_pixels"] if value is None else _positive("max_pixels", value)


def resolve_max_frames(value: Optional[int]) -> int:
    return _defaults["max_frames"] if value is None else _positive("max_frames", value)


def check_pixels(width: int, height: int, max_pixels: int, path: Optional[PathLike] = None) -> None:
    """Refuse a frame whose declared or decoded size exceeds the budget (0 = unknown, allowed)."""
    if width > 0 and height > 0 and width * height > max_pixels:
        raise LimitError(
            f"frame size {width}x{height} ({width * height / 1e6:.1f} MP) exceeds the pixel budget "
            f"of {max_pixels / 1e6:.1f} MP (raise max_pixels to allow it)", path)


def check_frames(count: int, max_frames: int, path: Optional[PathLike] = None) -> None:
    if count > max_frames:
        raise LimitError(f"video has more than {max_frames} frames, the frame budget "
                         f"(raise max_frames to allow it)", path)


def _positive(name: str, value: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise InputError(f"{name} must be a positive integer, got {value!r}")
    return value
