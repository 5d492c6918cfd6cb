"""Media for the I/O tests, made once per session (every container in tests.media.FORMATS)."""
from __future__ import annotations

import functools
import struct
from pathlib import Path

import numpy as np
import pytest

from tests.media import FORMATS, make_frames, write_frame_dir, write_video

N_FRAMES = 20
HEIGHT, WIDTH = 48, 96  # wide enough that frame_index() is unique for all N_FRAMES


@pytest.fixture(scope="session")
def frames() -> np.ndarray:
    return make_frames(N_FRAMES, HEIGHT, WIDTH)


@pytest.fixture(scope="session")
def media_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("media")


@pytest.fixture(scope="session")
def videos(media_dir, frames) -> dict:
    """{format name: path} for every container the readers must handle."""
    return {fmt: write_video(media_dir / fmt, frames, fmt) for fmt in FORMATS}


@pytest.fixture(scope="session")
def mp4(videos) -> Path:
    return videos["mp4-h264"]


@pytest.fixture(scope="session")
def frame_dir(media_dir, frames) -> Path:
    return write_frame_dir(media_dir / "frames_png", frames)


def png_with_claimed_size(src: Path, dest: Path, width: int, height: int) -> Path:
    """Copy a PNG, rewriting its IHDR to claim ``width`` x ``height`` (CRC fixed)."""
    import zlib

    data = bytearray(src.read_bytes())
    assert data[12:16] == b"IHDR"
    data[16:24] = struct.pack(">II", width, height)
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])) & 0xFFFFFFFF)
    dest.write_bytes(bytes(data))
    return dest


def gif_with_claimed_size(src: Path, dest: Path, width: int, height: int) -> Path:
    """Copy a GIF, rewriting its screen and first image descriptor to ``width`` x ``height``.

    A few KB on disk; decoding one frame would allocate width*height*4 bytes.
    """
    data = bytearray(src.read_bytes())
    data[6:10] = struct.pack("<HH", width, height)
    offset = 13
    if data[10] & 0x80:  # global colour table
        offset += 3 * 2 ** ((data[10] & 7) + 1)
    while data[offset] == 0x21:  # extension blocks before the first image
        offset += 2
        while data[offset]:
            offset += data[offset] + 1
        offset += 1
    assert data[offset] == 0x2C, "image descriptor expected"
    data[offset + 5:offset + 9] = struct.pack("<HH", width, height)
    dest.write_bytes(bytes(data))
    return dest


@functools.lru_cache(maxsize=1)
def torchcodec_usable() -> bool:
    """torchcodec is installed and opens a video here, i.e. FFmpeg's shared libraries load
    (``.ci/run`` installs both)."""
    import tempfile

    from mmvgm.errors import InputError
    from mmvgm.io import torchcodec_reader

    if not torchcodec_reader.available():
        return False
    with tempfile.TemporaryDirectory() as tmp:
        path = write_video(Path(tmp) / "probe", make_frames(2, 16, 16), "mp4-h264")
        try:
            torchcodec_reader.TorchCodecReader(path, 10 ** 6).close()
        except InputError:
            return False
    return True


needs_torchcodec = pytest.mark.skipif(not torchcodec_usable(), reason="torchcodec or FFmpeg's libraries missing")


@pytest.fixture
def pyav_first(monkeypatch):
    """``auto`` as it is where torchcodec cannot run: PyAV, then OpenCV (for PyAV's own behaviour)."""
    from mmvgm.io import torchcodec_reader

    monkeypatch.setattr(torchcodec_reader, "_broken", "torchcodec left out by this test")
