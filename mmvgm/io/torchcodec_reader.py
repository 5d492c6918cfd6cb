"""The ``torchcodec`` backend: PyTorch's own FFmpeg decoder.

Opening a file scans its packets in C++ (torchcodec's exact seek mode), which gives the frame
count from the packets, as mmvgm requires, at a fraction of the cost of a packet loop in
Python; ``get_frames_at`` then decodes only the frames a clip needs, seeking where that skips
frames. Frames are RGB through FFmpeg's own conversion, rotation metadata applied, so they
equal PyAV's.

``auto`` tries it first where a reader decodes on one thread (decoding workers) in a process that
loaded it (``loaded()``: where the workers' starter asked for it, through
``runtime.workers.prepare_decoding_workers``, as long work does: the service, a long training, a large
scan); a reader that may use more threads starts with PyAV, whose frame threading torchcodec's
threads do not match.

Anything unusual goes to the next backend rather than being handled twice: a file torchcodec
cannot open, a count it cannot give, or a decoder error on any frame raises ``InputError`` and
``read_clip``'s ``auto`` order moves on to PyAV, which measures damaged files exactly
(``DecodingStopped``). Where torchcodec or FFmpeg's shared libraries are missing, ``auto``
leaves it out (``available()``).
"""
from __future__ import annotations

import importlib.util
import sys
import warnings
from bisect import bisect_left
from pathlib import Path
from typing import Dict, Iterable, Optional, Tuple

import numpy as np

from mmvgm.errors import InputError
from mmvgm.io.backends import DemuxInfo, FrameBatch, FrameReader, _short, register_backend
from mmvgm.io.limits import check_frames, check_pixels

FFMPEG_PACKAGES = "libavcodec59 libavformat59 libavutil57 libswscale6 libswresample4 libavdevice59 libavfilter8"
_broken: Optional[str] = None  # why torchcodec cannot run in this process, once found out
_module = None  # torchcodec.decoders, once imported: every open asks for it


def available() -> bool:
    """torchcodec is installed and, as far as this process knows, its libraries load."""
    if _broken is not None:
        return False
    return _module is not None or importlib.util.find_spec("torchcodec") is not None


def loaded() -> bool:
    """torchcodec's decoders are imported in this process (or in the parent or fork server it
    was forked from), and work: only then does ``auto`` lead with them (``backends.auto_order``).
    Their import costs seconds, since it imports ``torch._dynamo``; the process starting the
    workers has it paid where the work is long (``runtime.workers.prepare_decoding_workers``)."""
    return _broken is None and (_module is not None or "torchcodec.decoders" in sys.modules)


def _decoders():
    global _broken, _module
    if _broken is not None:
        raise InputError(_broken)
    if _module is not None:
        # Not the import statement again: its catch_warnings resets the warning filters,
        # a cost paid on every open of a short file.
        return _module
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            from torchcodec import decoders
    except Exception as exc:  # noqa: BLE001 - ImportError, or an OSError from its libraries
        _broken = f"torchcodec cannot be imported ({_short(exc)})"
        raise InputError(_broken) from None
    _module = decoders
    return decoders


@register_backend("torchcodec")
class TorchCodecReader(FrameReader):
    counts_by_decoding = False  # measuring damaged files by decoding is PyAV's work

    def __init__(self, path: Path, max_pixels: int, threads: Optional[int] = None) -> None:
        super().__init__(path, max_pixels, threads)
        self.decoder = _open(path, self.threads)
        meta = self.decoder.metadata
        self.width, self.height = int(meta.width or 0), int(meta.height or 0)
        self.fps = meta.average_fps
        self.codec = meta.codec or "unknown"
        check_pixels(self.width, self.height, max_pixels, path)
        self.num_frames = meta.num_frames_from_content

    def demux(self, max_frames: Optional[int] = None) -> DemuxInfo:
        """The count from the packets torchcodec scanned when it opened the file."""
        if not self.num_frames:
            raise InputError("torchcodec counted no frames", self.path)
        if max_frames is not None:
            check_frames(self.num_frames, max_frames, self.path)
        meta = self.decoder.metadata
        duration = meta.duration_seconds
        return DemuxInfo(int(self.num_frames), self.fps, self.width, self.height, self.codec,
                         None if duration is None else round(float(duration), 6), timeline=None)

    def read(self, wanted: Iterable[int]) -> Tuple[Dict[int, np.ndarray], Optional[int]]:
        wanted = sorted(set(map(int, wanted)))
        total = int(self.num_frames or 0)
        inside = wanted[:bisect_left(wanted, total)]
        ended = total if wanted and wanted[-1] >= total else None
        if not inside:
            return {}, ended
        try:
            batch = self.decoder.get_frames_at(inside).data.numpy()
        except Exception as exc:  # noqa: BLE001 - a damaged frame: PyAV measures where it stops
            raise InputError(f"torchcodec stopped ({_short(exc)})", self.path) from None
        # Its rows, views of one contiguous array, are the frames: a clip that is the whole
        # batch is not copied again.
        return FrameBatch(inside, np.ascontiguousarray(batch)), ended

    def frames(self):
        # Counting by decoding is for files whose packets could not be counted: PyAV's job.
        raise InputError("torchcodec reads only files whose packets it counted", self.path)

    def _restart(self) -> None:
        self.decoder = _open(self.path, self.threads)

    def close(self) -> None:
        self.decoder = None


def _open(path: Path, threads: int):
    global _broken
    decoders = _decoders()
    try:
        return decoders.VideoDecoder(str(path), dimension_order="NHWC", seek_mode="exact",
                                     num_ffmpeg_threads=threads)
    except RuntimeError as exc:
        if "libtorchcodec" in str(exc):  # FFmpeg's shared libraries are missing: say it once
            _broken = f"torchcodec cannot load FFmpeg's libraries (apt-get install {FFMPEG_PACKAGES})"
            raise InputError(_broken) from None
        raise InputError(f"torchcodec cannot open it ({_short(exc)})", path) from None
    except Exception as exc:  # noqa: BLE001 - torchcodec raises ValueError and others on bad input
        raise InputError(f"torchcodec cannot open it ({_short(exc)})", path) from None
