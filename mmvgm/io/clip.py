"""``Clip``: the uint8 (T, H, W, 3) RGB array every video reader returns, with provenance."""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Optional

import numpy as np

_ATTRS = ("padded", "indices", "total_frames", "backend", "path")


class Clip(np.ndarray):
    """A numpy array (T, H, W, 3) uint8 RGB with what the reader knows about it.

    - ``padded``: how many trailing rows repeat the last real frame (short videos).
    - ``indices``: source frame index of each row (padded rows repeat the last index).
    - ``total_frames``: frames in the video, counted from the demuxed packets and corrected by
      decoding whenever decoding reached the end (never taken from header metadata).
    - ``backend``: the decoder that produced it (``opencv``, ``pyav`` or ``frames``).
    - ``path``: the source file or frame directory.

    It behaves like any ndarray (``torch.from_numpy(np.asarray(clip))`` works) and keeps its
    attributes through pickling (DataLoader workers).
    """

    padded: int
    indices: np.ndarray
    total_frames: Optional[int]
    backend: Optional[str]
    path: Optional[str]

    def __new__(cls, frames: np.ndarray, *, padded: int = 0, indices: Optional[np.ndarray] = None,
                total_frames: Optional[int] = None, backend: Optional[str] = None,
                path: Optional[str] = None) -> "Clip":
        obj = np.asarray(frames).view(cls)
        obj.padded = int(padded)
        obj.indices = (np.arange(len(obj)) if indices is None
                       else np.asarray(indices, dtype=np.int64))
        obj.total_frames = total_frames
        obj.backend = backend
        obj.path = path
        return obj

    def __array_finalize__(self, obj: Any) -> None:
        if obj is None:
            return
        self.padded = getattr(obj, "padded", 0)
        self.indices = getattr(obj, "indices", None)
        self.total_frames = getattr(obj, "total_frames", None)
        self.backend = getattr(obj, "backend", None)
        self.path = getattr(obj, "path", None)

    def __array_wrap__(self, array, context=None, return_scalar=False):
        # Arithmetic and reductions give plain arrays/scalars: provenance describes read frames.
        if return_scalar:
            return array[()]
        return array.view(np.ndarray) if isinstance(array, np.ndarray) else array

    def __reduce__(self):
        constructor, args, state = super().__reduce__()
        return constructor, args, (state, {name: getattr(self, name) for name in _ATTRS})

    def __setstate__(self, state) -> None:
        array_state, attrs = state
        super().__setstate__(array_state)
        for name, value in attrs.items():
            setattr(self, name, value)


@dataclass(frozen=True)
class VideoInfo:
    """What ``probe`` reports. ``frames`` is counted (packets or decoding), never read from
    the header; ``fps`` and ``duration`` are ``None`` where unknown (frame directories)."""

    path: str
    frames: int
    fps: Optional[float]
    width: int
    height: int
    codec: str
    duration: Optional[float]

    def to_dict(self) -> dict:
        return asdict(self)
