"""Synthetic media for tests: every clip is made here, nothing is downloaded."""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

# (container extension, writer, codec) for every format the readers must handle.
FORMATS = {
    "mp4-h264": ("mp4", "av", "libx264"),
    "mp4-mpeg4": ("mp4", "av", "mpeg4"),
    "mkv-h264": ("mkv", "av", "libx264"),
    "webm-vp8": ("webm", "av", "libvpx"),
    "webm-vp9": ("webm", "av", "libvpx-vp9"),
    "avi-mjpeg": ("avi", "cv", "MJPG"),
    "avi-xvid": ("avi", "cv", "XVID"),
    "mov-h264": ("mov", "av", "libx264"),
    "flv": ("flv", "av", "flv"),
    "gif": ("gif", "av", "gif"),
}


def make_frames(n: int, height: int = 48, width: int = 64, seed: int = 0,
                color: Sequence[int] | None = None) -> np.ndarray:
    """``n`` RGB uint8 frames; frame i carries its index as a bright bar position (easy to check).

    With ``color`` the background is that RGB colour (distinct "sources" for training tests).
    """
    rng = np.random.default_rng(seed)
    frames = np.empty((n, height, width, 3), np.uint8)
    base = rng.integers(0, 60, size=(height, width, 3), dtype=np.uint8)
    if color is not None:
        base = np.clip(base.astype(int) + np.array(color, int), 0, 255).astype(np.uint8)
    for i in range(n):
        frame = base.copy()
        x = (i * 4) % max(width - 8, 1)
        frame[:, x:x + 8] = 255
        frames[i] = frame
    return frames


def frame_index(frame: np.ndarray) -> int:
    """Recover the index written by ``make_frames`` (bar position / 4), tolerant to compression."""
    column_brightness = frame.astype(np.float32).mean(axis=(0, 2))
    x = int(np.argmax(np.convolve(column_brightness, np.ones(8), mode="valid")))
    return round(x / 4)


def write_video(path: Path, frames: np.ndarray, fmt: str = "mp4-h264", fps: int = 10) -> Path:
    """Write ``frames`` (T,H,W,3 RGB uint8) in one of ``FORMATS``; returns the path."""
    ext, writer, codec = FORMATS[fmt]
    path = Path(path)
    if path.suffix != f".{ext}":
        path = path.with_suffix(f".{ext}")
    path.parent.mkdir(parents=True, exist_ok=True)
    if writer == "av":
        _write_av(path, frames, codec, fps)
    else:
        _write_cv(path, frames, codec, fps)
    return path


def _write_av(path: Path, frames: np.ndarray, codec: str, fps: int) -> None:
    encode_av(str(path), frames, codec, fps, pix_fmt={"gif": "rgb8"}.get(codec, "yuv420p"))


def encode_av(target, frames: np.ndarray, codec: str = "libx264", fps: int = 10, pix_fmt: str = "yuv420p",
              container_format: str | None = None) -> None:
    """Encode ``frames`` (T,H,W,3 RGB uint8) with PyAV into ``target`` (a path, or a file object
    with ``container_format``), e.g. a 10-bit ``pix_fmt`` or an MPEG-TS stream in memory."""
    import av

    with av.open(target, mode="w", format=container_format) as container:
        stream = container.add_stream(codec, rate=fps)
        stream.width, stream.height = frames.shape[2], frames.shape[1]
        stream.pix_fmt = pix_fmt
        if codec == "libx264":
            stream.options = {"crf": "18", "preset": "ultrafast"}
        for frame in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


def _write_cv(path: Path, frames: np.ndarray, fourcc: str, fps: int) -> None:
    import cv2

    height, width = frames.shape[1:3]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*fourcc), fps, (width, height))
    if not writer.isOpened():
        raise RuntimeError(f"OpenCV cannot write {fourcc} here")
    for frame in frames:
        writer.write(np.ascontiguousarray(frame[:, :, ::-1]))
    writer.release()


def write_frame_dir(folder: Path, frames: np.ndarray, ext: str = "png") -> Path:
    """Frames as ``frame_1.png, frame_2.png, ..., frame_10.png`` (natural sort matters)."""
    import cv2

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for i, frame in enumerate(frames, start=1):
        cv2.imwrite(str(folder / f"frame_{i}.{ext}"), np.ascontiguousarray(frame[:, :, ::-1]))
    return folder


#: Packet payloads each decoder refuses (not merely conceals): an H.264 IDR slice with no
#: slice header; for VP8, MPEG-4 and FLV, bytes whose frame header is invalid.
_REFUSED_PAYLOAD = {"libx264": b"\x00\x00\x00\x01\x65\xff"}


def write_damaged_video(path: Path, frames: np.ndarray, damaged_from: int, fmt: str = "webm-vp8",
                        fps: int = 10) -> Path:
    """Write ``frames`` like ``write_video``, but with every packet from frame ``damaged_from`` on
    overwritten by bytes the decoder refuses, each packet keeping its size and timestamps.

    The container still holds ``len(frames)`` packets, while decoding (with either backend, on
    any number of threads) fails at frame ``damaged_from``: a damaged file, not a short one.
    """
    import av

    ext, writer, codec = FORMATS[fmt]
    assert writer == "av", "only PyAV-written formats can be damaged packet by packet"
    path = Path(path).with_suffix(f".{ext}")
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = _REFUSED_PAYLOAD.get(codec, b"\xff")
    written = 0
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream(codec, rate=fps)
        stream.width, stream.height = frames.shape[2], frames.shape[1]
        stream.pix_fmt = "yuv420p"
        if codec == "libx264":
            stream.options = {"crf": "18", "preset": "ultrafast", "bframes": "0"}

        def mux(packet) -> None:
            nonlocal written
            if packet.size and written >= damaged_from:
                packet = _refused_copy(packet, payload)
            written += 1 if packet.size else 0
            container.mux(packet)
        for frame in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                mux(packet)
        for packet in stream.encode():
            mux(packet)
    return path


def _refused_copy(packet, payload: bytes):
    import av

    copy = av.Packet((payload * packet.size)[:packet.size])
    copy.pts, copy.dts, copy.duration = packet.pts, packet.dts, packet.duration
    copy.time_base, copy.stream, copy.is_keyframe = packet.time_base, packet.stream, packet.is_keyframe
    return copy
