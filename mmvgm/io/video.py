"""``probe`` and ``read_clip``: one API over OpenCV, PyAV and frame directories."""
from __future__ import annotations

from pathlib import Path
from typing import Dict, Iterable, List, Optional, Sequence, Tuple

import numpy as np

from mmvgm.errors import DecodeError, InputError, LimitError, PathLike
from mmvgm.io import torchcodec_reader  # noqa: F401 - registers the "torchcodec" backend
from mmvgm.io.backends import (AUTO_ORDER, BACKENDS, NO_VIDEO_STREAM, DecodingStopped, DemuxInfo,
                               FrameBatch, FrameReader, PyAVReader, Timeline, auto_order, demux_info)
from mmvgm.io.clip import Clip, VideoInfo
from mmvgm.io.frames_dir import probe_frames, read_frames_clips
from mmvgm.io.limits import check_pixels, resolve_max_frames, resolve_max_pixels
from mmvgm.io.paths import VIDEO_EXTENSIONS, explain_undecodable, media_path
from mmvgm.io.sampling import Sampling, StartPastEndError, parse_sampling


def read_clip(path: PathLike, num_frames: int = 16, sampling: "str | Sampling" = "consecutive",
              start: int = 0, backend: str = "auto", max_pixels: Optional[int] = None,
              max_frames: Optional[int] = None) -> Clip:
    """Read ``num_frames`` frames of a video (or a directory of frames) as uint8 (T, H, W, 3) RGB.

    ``sampling``: ``consecutive`` (frames ``start, start+1, ...``), ``uniform`` (evenly spaced
    over ``[start, end]``, first and last included) or ``stride:K`` (every K-th from ``start``).
    A video too short for the request is padded by repeating its last sampled frame;
    ``clip.padded`` says how many rows are padding and ``clip.indices`` which source frame
    each row is. A damaged one is not padded: when the decoder fails before the frames the
    clip needs, in a stream that holds more frames, that is a ``DecodeError`` ("decoding
    stopped at frame K of N"), whatever the backend or the number of decoder threads.

    ``backend``: ``auto`` tries PyAV, then OpenCV when PyAV fails; ``opencv`` or ``pyav``
    use only that decoder. Frame directories are read with Pillow whatever the backend.
    PyAV seeks to the keyframe at or before a late ``start`` (or a far sampled frame) when
    the packets' timestamps name every frame exactly, and decodes from the first frame
    otherwise; the frames are the same either way (OpenCV always decodes from the first
    frame), except that on a damaged file the decoder's concealment of broken frames can
    differ after a seek. PyAV decodes from the container that counted the packets: one open
    per file.

    Budgets (``None`` = the module defaults, see ``mmvgm.io.limits``): a frame larger than
    ``max_pixels`` (checked on the header before decoding) or a video longer than
    ``max_frames`` (counted from demuxed packets, before decoding) raises LimitError.
    Frame counts come from the packet stream and decoding, never from header metadata.

    Example::

        clip = read_clip("clip.mp4", num_frames=16, sampling="uniform")
        clip.shape, clip.padded, clip.indices
    """
    return _read_clips(path, num_frames, sampling, [_non_negative_int("start", start)], backend,
                       max_pixels, max_frames)[0]


def read_clips(path: PathLike, num_frames: int, starts: Iterable[int],
               sampling: "str | Sampling" = "consecutive", backend: str = "auto",
               max_pixels: Optional[int] = None, max_frames: Optional[int] = None) -> List[Clip]:
    """``[read_clip(path, num_frames, sampling, start=s, ...) for s in starts]`` in one pass.

    The video is demuxed once and decoded once, forward, over every clip's frames (seeking
    between clips where that skips frames), instead of from its first frame for each clip.

    Example::

        clips = read_clips("long.mp4", 16, starts=[0, 300, 600])
    """
    try:
        starts = [] if isinstance(starts, (str, bytes)) else list(starts)
    except TypeError:
        starts = []
    if not starts:
        raise InputError("starts must be a non-empty list of frame numbers")
    return _read_clips(path, num_frames, sampling, [_non_negative_int("start", s) for s in starts],
                       backend, max_pixels, max_frames)


def _read_clips(path: PathLike, num_frames: int, sampling: "str | Sampling", starts: List[int],
                backend: str, max_pixels: Optional[int], max_frames: Optional[int]) -> List[Clip]:
    num_frames = _positive_int("num_frames", num_frames)
    plan = parse_sampling(sampling)
    pixels, frames_budget = resolve_max_pixels(max_pixels), resolve_max_frames(max_frames)
    order = _backend_order(backend)
    path, is_dir = media_path(path, VIDEO_EXTENSIONS, "video")
    if is_dir:
        return read_frames_clips(path, num_frames, plan, starts, pixels, frames_budget)

    failures: List[str] = []
    counted: List[Optional[DemuxInfo]] = []  # PyAV's count, for a reader that cannot count
    for name in order:
        try:
            return _read_counted(BACKENDS[name], path, num_frames, plan, starts, pixels, frames_budget, counted)
        except (LimitError, StartPastEndError, DecodingStopped):
            # A damaged stream is not tried with the next decoder: it would conceal the
            # damage its own way, and a clip must not depend on which decoder ran first.
            raise
        except InputError as exc:
            failures.append(exc.message)
    raise _undecodable(path, failures)


def _read_counted(reader_cls: type, path: Path, num_frames: int, plan: Sampling, starts: List[int],
                  pixels: int, frames_budget: int, counted: List[Optional[DemuxInfo]]) -> List[Clip]:
    """Read with ``reader_cls``. A reader that counts packets (``demux``) counts them through the
    file it opened and decodes from it; another takes PyAV's count (``counted``: one count per
    file, shared by the backends ``auto`` tries)."""
    opened = None
    try:
        if hasattr(reader_cls, "demux"):
            opened = reader_cls(path, pixels)
            info = _demux_or_none(path, frames_budget, opened)
            if reader_cls is PyAVReader:
                counted.append(info)
        else:
            if not counted:
                counted.append(_demux_or_none(path, frames_budget))
            info = counted[0]
        if info is not None:
            check_pixels(info.width, info.height, pixels, path)
        return _read_with(reader_cls, path, num_frames, plan, starts, pixels, frames_budget,
                          None if info is None else info.frames, None if info is None else info.timeline,
                          opened)
    finally:
        if opened is not None:
            opened.close()


def probe(path: PathLike, backend: str = "auto", exact: bool = False,
          max_pixels: Optional[int] = None, max_frames: Optional[int] = None) -> VideoInfo:
    """Frames, fps, size, codec and duration of a video file or frame directory.

    ``frames`` is the number of video packets in the container (no decoding: fast), or with
    ``exact=True`` the number of frames that actually decode. It is never the header's
    claim. The first frame is always decoded, so a file that cannot decode is an error, and
    ``width``/``height`` are the displayed size (rotation metadata applied).
    ``duration`` spans the packets' timestamps; ``fps`` is the stream's average rate.
    With ``exact=True`` a decoder error before the last packet is a ``DecodeError`` ("decoding
    stopped at frame K of N"), as it is for ``read_clip``.
    """
    pixels, frames_budget = resolve_max_pixels(max_pixels), resolve_max_frames(max_frames)
    order = _backend_order(backend, reading=False)
    if exact and not any(BACKENDS[name].counts_by_decoding for name in order):
        raise InputError(f"{backend} counts frames from the packets only; an exact count decodes every frame: "
                         f"use {', '.join(n for n, cls in BACKENDS.items() if cls.counts_by_decoding)}")
    path, is_dir = media_path(path, VIDEO_EXTENSIONS, "video")
    if is_dir:
        return probe_frames(path, pixels)
    # Probing reads no pixels, so only an exact count is held to the frame budget.
    info = _demux_or_none(path, frames_budget if exact else None)
    if info is not None:
        check_pixels(info.width, info.height, pixels, path)
    failures: List[str] = []
    for name in order:
        try:
            with BACKENDS[name](path, pixels) as reader:
                first, _ = reader.read([0])
                if not first:
                    raise DecodeError("no decodable video frames", path)
                height, width = first[0].shape[:2]
            frames = info.frames if info is not None else None
            if exact or frames is None:
                with BACKENDS[name](path, pixels) as reader:
                    frames = reader.count(frames_budget, packets=frames)
                    _check_not_stopped(reader, frames, None if info is None else info.frames, path)
            fps = (info.fps if info is not None else None) or reader.fps
            duration = info.duration if info is not None else (frames / fps if fps else None)
            codec = info.codec if info is not None else reader.codec
            return VideoInfo(str(path), int(frames), fps, int(width), int(height), codec, duration)
        except (LimitError, DecodingStopped):
            raise
        except InputError as exc:
            failures.append(exc.message)
    raise _undecodable(path, failures)


def _check_not_stopped(reader: FrameReader, decoded: int, total: Optional[int], path: Path) -> None:
    """Raise ``DecodingStopped`` when ``reader``'s last decode ended after ``decoded`` frames on a
    decoder error, while the stream holds ``total`` (packets), more. ``decoded`` 0 is left to
    the callers: a first frame that fails may be a decoder missing a codec, so the next decoder
    is tried."""
    if decoded and total is not None and decoded < total:
        reason = reader.stop_reason()
        if reason is not None:
            raise DecodingStopped(decoded, total, reason, path)


def _read_with(reader_cls: type, path: Path, num_frames: int, plan: Sampling, starts: Sequence[int],
               max_pixels: int, max_frames: int, total: Optional[int],
               timeline: Optional[Timeline] = None, opened: Optional[FrameReader] = None) -> List[Clip]:
    """Decode the clips with ``reader_cls``; ``opened``, a reader of it already open on ``path``,
    serves the first pass and is closed after it."""
    if total is None:  # PyAV could not demux it: count by decoding
        with opened or reader_cls(path, max_pixels) as reader:
            opened = None
            total = reader.count(max_frames)
    if total == 0:
        raise DecodeError("no decodable video frames", path)
    got: Dict[int, np.ndarray] = {}
    frames: Dict[int, np.ndarray] = {}  # the last pass's
    plans = None
    for _ in range(3):
        if plans is None:  # planned again only when the count changed: the same total, the same plan
            plans = [plan.plan(total, num_frames, start) for start in starts]
        missing = sorted(set().union(*(indices.tolist() for indices, _ in plans)) - set(got))
        if not missing:
            break
        with opened or reader_cls(path, max_pixels) as reader:
            opened = None
            frames = None if timeline is None else reader.read_seeking(missing, timeline)
            if frames is None:
                frames, ended = reader.read(missing)
                if ended is not None:
                    _check_not_stopped(reader, ended, total, path)
            else:
                ended = None
        got.update(frames)
        if ended is not None:
            timeline = None  # the packets over-counted the frames: their timestamps may too
            # Fewer frames decode than were demuxed (a truncated or damaged file): re-plan on
            # the decodable count; uniform sampling then needs a second pass.
            if ended == 0:
                raise DecodeError("no decodable video frames", path)
            total, plans = ended, None
    else:
        raise DecodeError("the decoder returned different frames on each pass", path)
    # One clip from one pass may be the decoder's batch itself (``_stacked``).
    one_pass = frames if len(plans) == 1 and len(frames) == len(got) else None
    return [Clip(_stacked(got, indices, one_pass), padded=padded, indices=indices,
                 total_frames=total, backend=reader_cls.name, path=str(path))
            for indices, padded in plans]


def _stacked(got: Dict[int, np.ndarray], indices: np.ndarray,
             one_pass: Optional[Dict[int, np.ndarray]]) -> np.ndarray:
    """The clip's frames as one (T, H, W, 3) array: a copy, unless the only pass read exactly
    these frames as one decoder batch (``FrameBatch``), which then is the clip as it is; no
    other clip shares it."""
    rows = indices.tolist()
    if isinstance(one_pass, FrameBatch) and rows == list(one_pass):
        return one_pass.array
    return np.stack([got[i] for i in rows])


def _demux_or_none(path: Path, max_frames: Optional[int],
                   reader: Optional[PyAVReader] = None) -> Optional[DemuxInfo]:
    try:
        info = demux_info(path, max_frames, reader=reader)
    except LimitError:
        raise
    except DecodeError:
        return None
    return info if info.frames > 0 else None


def _undecodable(path: Path, failures: Sequence[str]) -> DecodeError:
    if NO_VIDEO_STREAM in failures:
        return DecodeError(NO_VIDEO_STREAM, path)
    if any(f == "no decodable video frames" for f in failures):
        return DecodeError("no decodable video frames (the file holds a video stream, but no "
                           "frame decodes)", path)
    return explain_undecodable(path, "; ".join(dict.fromkeys(failures)) or "unknown reason")


def _backend_order(backend: str, reading: bool = True) -> Sequence[str]:
    """The backends to try. Probing stays with PyAV first: it counts by decoding where asked,
    which is PyAV's and OpenCV's work, and torchcodec's speed is in reading clips."""
    if backend == "auto":
        return auto_order() if reading else AUTO_ORDER
    if backend not in BACKENDS:
        raise InputError(f"unknown backend '{backend}' (use auto, {', '.join(BACKENDS)})")
    return (backend,)


def _positive_int(name: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise InputError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


def _non_negative_int(name: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
        raise InputError(f"{name} must be a non-negative integer, got {value!r}")
    return int(value)
