"""Video decoders behind one small interface, in a registry (``opencv``, ``pyav``).

A ``FrameReader`` opens a file (refusing a header larger than the pixel budget), then
``read(wanted)`` decodes forward from the first frame, converting to RGB only the frames
asked for, and stops after the last one. It reports the decoded count when the stream
ended first, which is how short, truncated or lying files are measured, and ``stop_reason()``
says whether a decoder error ended it (a damaged file) or the stream itself did. A decoder
error on more than one thread is decoded again on one, so that where decoding stops never
depends on the thread count.

PyAV also offers ``read_seeking(wanted, timeline)``: jump to the keyframe at or before a
wanted frame instead of decoding from the first frame, using the packet ``Timeline`` from
``demux_info`` to name each decoded frame by its timestamp. ``demux_info`` can count the
packets through an open ``PyAVReader``, which then decodes from the same open file.
"""
from __future__ import annotations

import os
import threading
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Callable, ClassVar, Dict, Iterable, List, Optional, Sequence, Tuple, Type

import numpy as np

from mmvgm.errors import DecodeError, InputError, MMVGMError
from mmvgm.io.limits import check_frames, check_pixels, resolve_max_frames
from mmvgm.runtime.threads import decoder_threads  # one decoder's threads: the thread policy's

#: The order ``backend="auto"`` tries, where torchcodec cannot run. PyAV first: it opens more
#: files, it seeks, and it decodes from the container that already counted the packets, so a
#: file is opened once instead of twice; on short files that second open is a large share of a
#: clip's cost. OpenCV decodes each frame slightly faster, which only tells on reads from the
#: start of hundreds of frames. (Figures: ``benchmarks/README.md``.)
AUTO_ORDER = ("pyav", "opencv")


def auto_order(threads: Optional[int] = None) -> Tuple[str, ...]:
    """``AUTO_ORDER``, led by torchcodec where this process loaded it and a reader decodes on
    one thread (a decoding worker's default, ``decoder_threads``). There it counts the packets
    in C++ as it opens a file, which is most of a short clip's cost in PyAV; on more threads
    PyAV leads, because FFmpeg's frame threading, which PyAV turns on, gains there and
    torchcodec's threads do not (``bench_io.py``). Only where loaded: importing it costs more
    than a short scan saves, so the process that starts the workers decides
    (:func:`preload_decoders`)."""
    from mmvgm.io import torchcodec_reader

    threads = decoder_threads() if threads is None else threads
    lead = ("torchcodec",) if threads == 1 and torchcodec_reader.loaded() else ()
    return lead + AUTO_ORDER

BACKENDS: Dict[str, Type["FrameReader"]] = {}

NO_VIDEO_STREAM = "no video stream (an audio-only file?)"


def register_backend(name: str) -> Callable[[Type["FrameReader"]], Type["FrameReader"]]:
    def add(cls: Type["FrameReader"]) -> Type["FrameReader"]:
        cls.name = name
        BACKENDS[name] = cls
        return cls
    return add


_cv2_module = None


def _cv2():
    """cv2, with FFmpeg's and OpenCV's own console chatter off (our errors say it in one
    line). Users who set OPENCV_FFMPEG_LOGLEVEL / OPENCV_LOG_LEVEL keep their choice."""
    global _cv2_module
    if _cv2_module is None:
        os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")  # AV_LOG_QUIET
        import cv2

        if "OPENCV_LOG_LEVEL" not in os.environ:
            cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_ERROR)
        _cv2_module = cv2
    return _cv2_module


def preload_decoders(torchcodec: bool = True) -> None:
    """Import the decoder libraries now, in this process.

    Call it before starting DataLoader workers: forked workers inherit the imports instead of
    each importing cv2 and av on its first file, which delays the first batch of every worker.
    ``torchcodec``: import it too, so that ``auto`` leads with it in one-thread readers (the
    workers); leave it out for work too short to earn its import back
    (``runtime.workers.torchcodec_pays``). A missing library is simply skipped.
    """
    try:
        _cv2()
    except ImportError:
        pass
    try:
        import av  # noqa: F401
    except ImportError:
        pass
    from mmvgm.io import torchcodec_reader

    if torchcodec and torchcodec_reader.available():
        try:
            torchcodec_reader._decoders()
        except MMVGMError:
            pass  # auto leaves it out from now on


def _url(path: Path) -> str:
    # "file:" stops FFmpeg reading "a:b.mp4" as protocol "a".
    return "file:" + str(path.resolve())


class DecodingStopped(DecodeError):
    """The decoder failed at frame ``frame`` (counting from 0) of a stream of ``frames``: a damaged
    file, not a short one. Padding the frames before it would score a clip of one frame repeated,
    whose verdict then depends on where the decoder gave up."""

    def __init__(self, frame: int, frames: int, reason: str, path: Path) -> None:
        super().__init__(f"decoding stopped at frame {frame} of {frames}: the decoder failed there "
                         f"({reason})", path)
        self.frame, self.frames = frame, frames


class FrameBatch(dict):
    """``{index: frame}`` read as one array: the frames are the rows of ``array``, in the
    order of the (ascending) indices. ``read_clip`` takes a clip that is all of it as that
    array, instead of a stacked copy of its rows."""

    def __init__(self, indices: Sequence[int], array: np.ndarray) -> None:
        super().__init__(zip(indices, array))
        self.array = array


class FrameReader:
    """One open video. Subclasses set ``width``, ``height``, ``fps``, ``codec`` in ``__init__``,
    decode with ``self.threads`` threads and reopen on ``_restart()``."""

    name: ClassVar[str] = ""
    #: Whether ``count`` decodes every frame, as ``probe(exact=True)`` needs.
    counts_by_decoding: ClassVar[bool] = True
    width: int = 0
    height: int = 0
    fps: Optional[float] = None
    codec: str = "unknown"

    def __init__(self, path: Path, max_pixels: int, threads: Optional[int] = None) -> None:
        self.path = path
        self.max_pixels = max_pixels
        #: Decoder threads (0: the library's choice); ``None`` asks the thread policy.
        self.threads = decoder_threads() if threads is None else threads
        self._decoded = 0
        self._failure: Optional[str] = None

    def frames(self) -> Iterable[Tuple[Callable[[], np.ndarray], Tuple[int, int]]]:
        """Yield, for each decoded frame, (a function giving its RGB array, (width, height))."""
        raise NotImplementedError

    def _restart(self) -> None:
        """Reopen the file, to decode from the first frame with ``self.threads`` threads."""
        raise NotImplementedError

    def close(self) -> None:
        pass

    def __enter__(self) -> "FrameReader":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def read(self, wanted: Iterable[int]) -> Tuple[Dict[int, np.ndarray], Optional[int]]:
        """Decode up to max(wanted); return ({index: RGB frame}, decoded count if the stream
        ended before the last wanted frame, else None)."""
        wanted = set(int(i) for i in wanted)
        got, ended = self._read_once(wanted)
        if ended is not None and self._again_on_one_thread():
            got, ended = self._read_once(wanted)
        self._refuse_undecodable()
        return got, ended

    def _read_once(self, wanted: set) -> Tuple[Dict[int, np.ndarray], Optional[int]]:
        last = max(wanted)
        got: Dict[int, np.ndarray] = {}
        for index, (retrieve, size) in enumerate(self._safe_frames()):
            if index == 0:
                check_pixels(*size, self.max_pixels, self.path)
            if index in wanted:
                got[index] = retrieve()
            if index >= last:
                return got, None
        return got, self._decoded

    def read_seeking(self, wanted: Iterable[int],
                     timeline: "Timeline") -> Optional[Dict[int, np.ndarray]]:
        """Like ``read``, seeking past frames that are not wanted. ``None`` (and the reader
        back at the first frame) when that is not possible or not exact: call ``read``."""
        return None

    def count(self, max_frames: int, packets: Optional[int] = None) -> int:
        """Decode every frame (no colour conversion) and count them, within the frame budget.
        ``packets``: the demuxed count, where known; only a count short of it can have been cut
        by a decoder error."""
        count = self._count_once(max_frames)
        if (packets is None or count < packets) and self._again_on_one_thread():
            count = self._count_once(max_frames)
        self._refuse_undecodable()
        return count

    def _count_once(self, max_frames: int) -> int:
        count = 0
        for count, (_, size) in enumerate(self._safe_frames(), start=1):
            if count == 1:
                check_pixels(*size, self.max_pixels, self.path)
            check_frames(count, max_frames, self.path)
        return count

    def stop_reason(self) -> Optional[str]:
        """Why the last ``read`` or ``count`` ended early: the decoder's error, or ``None``
        where the stream ended (a short or truncated file)."""
        return self._failure

    def _again_on_one_thread(self) -> bool:
        """After a decode ended early: restart on one thread, and say so, if a decoder error on
        more than one ended it.

        Frame threading can report a decoder error ahead of frames that decode on one thread
        (a Theora stream lost its first frame so), so where decoding stops would depend on the
        thread count; on one thread it stops at the same frame every time.
        """
        if self.threads == 1 or self.stop_reason() is None:
            return False
        self.threads = 1
        self._restart()
        return True

    def _refuse_undecodable(self) -> None:
        if self._decoded == 0 and self._failure is not None:
            raise DecodeError(f"{self.name} cannot decode it ({self._failure})", self.path)

    def _safe_frames(self):
        """``frames()``, where a decoder error ends the stream (truncated files yield what they
        hold); ``self._decoded`` is the count when it ends, ``self._failure`` the error."""
        self._decoded, self._failure = 0, None
        try:
            for item in self.frames():
                yield item
                self._decoded += 1
        except MMVGMError:
            raise
        except Exception as exc:  # noqa: BLE001 - decoder libraries raise many types
            # FFmpeg's own words, without PyAV's errno and the name of the call that failed
            self._failure = getattr(exc, "strerror", None) or _short(exc)


@register_backend("opencv")
class OpenCVReader(FrameReader):
    def __init__(self, path: Path, max_pixels: int, threads: Optional[int] = None) -> None:
        cv2 = _cv2()
        super().__init__(path, max_pixels, threads)
        self._cv2 = cv2
        self._judged: Optional[Tuple[Optional[str]]] = None  # (stop_reason(),) once asked
        self.cap = self._capture()
        self.width = int(self.cap.get(cv2.CAP_PROP_FRAME_WIDTH))
        self.height = int(self.cap.get(cv2.CAP_PROP_FRAME_HEIGHT))
        fps = self.cap.get(cv2.CAP_PROP_FPS)
        self.fps = float(fps) if fps and fps > 0 else None
        fourcc = int(self.cap.get(cv2.CAP_PROP_FOURCC))
        self.codec = "".join(chr((fourcc >> (8 * i)) & 0xFF) for i in range(4)).strip("\x00 ").lower()
        try:
            check_pixels(self.width, self.height, max_pixels, path)
        except MMVGMError:
            self.cap.release()
            raise

    def _capture(self):
        cv2 = self._cv2
        params = [cv2.CAP_PROP_N_THREADS, self.threads] if self.threads else []
        cap = cv2.VideoCapture(_url(self.path), cv2.CAP_FFMPEG, params)
        if not cap.isOpened():
            cap.release()
            raise DecodeError("OpenCV cannot open it", self.path)
        return cap

    def frames(self):
        cap, cv2 = self.cap, self._cv2

        def retrieve() -> np.ndarray:
            ok, bgr = cap.retrieve()
            if not ok or bgr is None:
                raise DecodeError("OpenCV could not retrieve a decoded frame", self.path)
            if bgr.ndim == 2:
                return cv2.cvtColor(bgr, cv2.COLOR_GRAY2RGB)
            return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)

        while cap.grab():  # grab() decodes; retrieve() converts only frames we keep
            yield retrieve, (self.width, self.height)

    def stop_reason(self) -> Optional[str]:
        # grab() answers False at the end of the stream and on a decoder error alike, so ask
        # FFmpeg's decoder through PyAV, on one thread, whether the stream decodes to its end.
        if self._judged is None:
            self._judged = (decoder_error(self.path, self.max_pixels),)
        return self._judged[0]

    def _restart(self) -> None:
        self.cap.release()
        self.cap = self._capture()

    def close(self) -> None:
        self.cap.release()


@register_backend("pyav")
class PyAVReader(FrameReader):
    def __init__(self, path: Path, max_pixels: int, threads: Optional[int] = None) -> None:
        super().__init__(path, max_pixels, threads)
        self.container, self.stream = _open_av(path)
        self._at_start = True  # nothing demuxed or decoded yet
        ctx = self.stream.codec_context
        self.width, self.height = int(ctx.width or 0), int(ctx.height or 0)
        self.fps = _rate(self.stream)
        self.codec = ctx.name or "unknown"
        try:
            check_pixels(self.width, self.height, max_pixels, path)
        except MMVGMError:
            self.container.close()
            raise
        _set_threads(self.stream, self.threads)

    def frames(self):
        if not self._at_start:
            self._reopen()  # decoding from the first frame must not trust a seek
        self._at_start = False
        for frame in self.container.decode(self.stream):
            self._check_size(frame)
            yield (lambda f=frame: _rgb(f)), (frame.width, frame.height)

    def _check_size(self, frame) -> None:
        """Every frame must have the header's size (the first frame's, for a header without
        one): a size change mid-stream (joined streams) cannot be stacked into one clip, and
        a larger later frame would slip past the pixel budget checked on the header. OpenCV,
        tried next by ``auto``, scales every frame to the first one's size."""
        if not (self.width and self.height):
            self.width, self.height = frame.width, frame.height
        if (frame.width, frame.height) != (self.width, self.height):
            raise DecodeError(f"the frame size changes within the video ({self.width}x{self.height} to "
                              f"{frame.width}x{frame.height})", self.path)

    def demux(self, max_frames: Optional[int] = None) -> "DemuxInfo":
        """``demux_info`` of this file, read through this reader's container."""
        self._at_start = False
        return _demux(self.container, self.stream, self.path, max_frames)

    def read_seeking(self, wanted: Iterable[int],
                     timeline: "Timeline") -> Optional[Dict[int, np.ndarray]]:
        wanted_sorted = sorted(set(int(i) for i in wanted))
        if not wanted_sorted or wanted_sorted[-1] >= len(timeline.pts):
            return None
        segments = timeline.segments(wanted_sorted)
        rewind = not self._at_start  # demuxed or decoded already: frame 0 needs a seek too
        if not rewind and not any(first > 0 for first, _ in segments):
            return None  # nothing to skip: a plain read is the same work
        self._at_start = False
        wanted_set = set(wanted_sorted)
        got: Dict[int, np.ndarray] = {}
        checked = False
        try:
            for first, last in segments:
                if first > 0 or rewind:
                    rewind = False
                    self.container.seek(int(timeline.pts[first]), stream=self.stream,
                                        backward=True, any_frame=False)
                decoded = self.container.decode(self.stream)
                index = first
                for frame in decoded:
                    if frame.pts is None:
                        raise _Inexact
                    if index == first and frame.pts < timeline.pts[first]:
                        continue  # decoded on the way to the keyframe (the seek landed earlier)
                    if frame.pts != timeline.pts[index]:
                        raise _Inexact  # a gap, a reorder or a foreign timestamp
                    if not checked:
                        check_pixels(frame.width, frame.height, self.max_pixels, self.path)
                        checked = True
                    self._check_size(frame)
                    if index in wanted_set:
                        got[index] = _rgb(frame)
                    index += 1
                    if index > last:
                        break
                else:
                    raise _Inexact  # ended early: let a read from the start measure the file
        except MMVGMError:
            raise
        except Exception:  # noqa: BLE001 - _Inexact, or a decoder error after the seek
            self._reopen()
            return None
        return got

    def _reopen(self) -> None:
        self.container.close()
        self.container, self.stream = _open_av(self.path)
        _set_threads(self.stream, self.threads)
        self._at_start = True

    _restart = _reopen

    def close(self) -> None:
        self.container.close()


class _Inexact(Exception):
    """A seek read would not give exactly the frames a read from the start gives."""


def _rgb(frame) -> np.ndarray:
    return _rotate(frame_to_rgb(frame), frame.rotation)


_converters = threading.local()


def frame_to_rgb(frame) -> np.ndarray:
    """A decoded PyAV frame as uint8 (H, W, 3) RGB (rotation metadata not applied), with the
    pixels OpenCV's decoder gives: swscale to BGR24 with bicubic chroma interpolation, as
    OpenCV asks for. PyAV's own ``to_ndarray(format="rgb24")`` (bilinear) is the same for
    8-bit 4:2:0 video but differs by up to 7 levels on 10-bit or 4:2:2 video; this way the
    backend ``auto`` picks never changes a clip's pixels.

    One swscale context per thread is kept and reused: ``to_ndarray`` builds and frees a new
    context for every frame, and rebuilding it dominated the conversion's cost on small frames
    (figures: ``benchmarks/README.md``). The kept context converts on one thread: a
    context with threads of its own, copied into a forked child (a DataLoader worker) and
    freed there, waits forever for threads the child does not have.
    """
    reformatter = getattr(_converters, "bgr", None)
    if reformatter is None:
        from av.video.reformatter import VideoReformatter

        reformatter = _converters.bgr = VideoReformatter()
    bgr = reformatter.reformat(frame, format="bgr24", interpolation="BICUBIC", threads=1)
    return _cv2().cvtColor(bgr.to_ndarray(), _cv2().COLOR_BGR2RGB)


def _rotate(rgb: np.ndarray, degrees) -> np.ndarray:
    """Apply the display matrix rotation (counter-clockwise degrees), as OpenCV does."""
    turns = int(round((degrees or 0) / 90)) % 4
    return np.ascontiguousarray(np.rot90(rgb, turns)) if turns else rgb


def _open_av(path: Path):
    import av

    try:
        container = av.open(_url(path))
    except Exception as exc:  # noqa: BLE001
        raise DecodeError(f"PyAV cannot open it ({_short(exc)})", path) from None
    if not container.streams.video:
        container.close()
        raise DecodeError(NO_VIDEO_STREAM, path)
    return container, container.streams.video[0]


def _set_threads(stream, threads: int) -> None:
    if threads:
        stream.codec_context.thread_count = threads
    if threads != 1:
        stream.thread_type = "AUTO"


def decoder_error(path: Path, max_pixels: int) -> Optional[str]:
    """The error that stops FFmpeg's decoder (PyAV's, on one thread) before the end of the video
    stream of ``path``; ``None`` where it decodes to the end, or PyAV is missing or cannot open
    it."""
    try:
        reader = PyAVReader(path, max_pixels, threads=1)
    except (ImportError, DecodeError):
        return None
    with reader:
        try:
            reader.count(resolve_max_frames(None))
        except InputError:
            # nothing decodes (its reason is kept), the frame size changes (no error), or the
            # file is longer than the default frame budget: a question the caller never asked
            pass
        return reader.stop_reason()


def _rate(stream) -> Optional[float]:
    rate = stream.average_rate or stream.guessed_rate or stream.base_rate
    return float(rate) if rate else None


def _short(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    # PyAV appends ": 'file:/abs/path'" to FFmpeg errors; the path is printed elsewhere.
    return text.split(": 'file:")[0].split("; last error log:")[0]


@dataclass(frozen=True)
class Timeline:
    """Frame index -> presentation timestamp, and which frames are keyframes, from packets.

    ``pts[i]`` is frame ``i``'s timestamp (sorted: decoders output frames in presentation
    order); ``keyframes`` are sorted frame indices, starting with 0.
    """

    pts: np.ndarray
    keyframes: np.ndarray

    def keyframe_at_or_before(self, index: int) -> int:
        pos = int(np.searchsorted(self.keyframes, index, side="right")) - 1
        return int(self.keyframes[pos]) if pos >= 0 else 0

    def segments(self, wanted: Sequence[int]) -> List[Tuple[int, int]]:
        """(first, last) frame ranges to decode for sorted ``wanted``; each range after the
        first, and a first range not starting at 0, begins with a seek to keyframe ``first``."""
        segments: List[List[int]] = []
        position = 0  # the next frame the decoder would give without seeking
        for index in wanted:
            keyframe = self.keyframe_at_or_before(index)
            if keyframe > position:
                segments.append([keyframe, index])
            elif segments:
                segments[-1][1] = index
            else:
                segments.append([0, index])
            position = index + 1
        return [(first, last) for first, last in segments]


@dataclass
class DemuxInfo:
    frames: int
    fps: Optional[float]
    width: int
    height: int
    codec: str
    duration: Optional[float]
    #: None when the packets' timestamps cannot name frames exactly (then no seeking).
    timeline: Optional[Timeline] = None


def demux_info(path: Path, max_frames: Optional[int] = None,
               reader: Optional[PyAVReader] = None) -> DemuxInfo:
    """Header fields and the frame count from the demuxed packets (no decoding).

    Packets, not header metadata: containers routinely lie about their frame count.
    Stops and raises LimitError as soon as the count passes ``max_frames``.
    With ``reader`` (an open ``PyAVReader`` of ``path``) its container is read and left open,
    for the reader to decode from; otherwise the file is opened and closed here.
    """
    if reader is not None:
        return reader.demux(max_frames)
    container, stream = _open_av(path)
    try:
        return _demux(container, stream, path, max_frames)
    finally:
        container.close()


def _demux(container, stream, path: Path, max_frames: Optional[int]) -> DemuxInfo:
    ctx = stream.codec_context
    count, first, end, timed = 0, None, None, False
    pts: List[int] = []
    keys: List[int] = []
    exact = True  # every packet timed and flagged as an ordinary frame
    try:
        for packet in container.demux(stream):
            if not packet.size:
                continue  # the flush packet at the end
            count += 1
            if max_frames is not None:
                check_frames(count, max_frames, path)
            if packet.pts is not None:
                first = packet.pts if first is None else min(first, packet.pts)
                timed = timed or bool(packet.duration)
                stop = packet.pts + (packet.duration or 0)
                end = stop if end is None else max(end, stop)
                pts.append(packet.pts)
                if packet.is_keyframe:
                    keys.append(packet.pts)
            if packet.pts is None or packet.is_discard or packet.is_corrupt:
                exact = False
    except MMVGMError:
        raise
    except Exception:  # noqa: BLE001 - a damaged tail: keep the packets read so far
        exact = False
    fps = _rate(stream)
    duration = None
    if first is not None and end is not None and end > first and stream.time_base:
        duration = float((end - first) * Fraction(stream.time_base))
        if not timed and fps:  # packets without durations (FLV): count the last frame too
            duration += 1 / fps
    elif fps and count:
        duration = count / fps
    return DemuxInfo(count, fps, int(ctx.width or 0), int(ctx.height or 0),
                     ctx.name or "unknown", None if duration is None else round(duration, 6),
                     _timeline(pts, keys) if exact else None)


def _timeline(pts: List[int], keys: List[int]) -> Optional[Timeline]:
    """The timeline, or None where timestamps repeat or frame 0 is not a keyframe."""
    table = np.sort(np.asarray(pts, dtype=np.int64))
    if len(table) == 0 or np.any(np.diff(table) <= 0):
        return None
    keyframes = np.unique(np.searchsorted(table, np.asarray(keys, dtype=np.int64)))
    if len(keyframes) == 0 or keyframes[0] != 0:
        return None
    return Timeline(table, keyframes.astype(np.int64))
