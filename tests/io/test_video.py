"""read_clip / probe over every container, both backends, every sampling mode and bad input."""
from __future__ import annotations

import shutil
import struct
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from mmvgm.errors import DecodeError, InputError, LimitError
from mmvgm.io import probe, read_clip
from mmvgm.io import backends as backends_module
from mmvgm.io import video as video_module
from tests.io.conftest import HEIGHT, N_FRAMES, WIDTH, gif_with_claimed_size
from tests.media import FORMATS, encode_av, frame_index, make_frames, write_video

BACKENDS = ["opencv", "pyav"]
CODECS = {"mp4-h264": "h264", "mp4-mpeg4": "mpeg4", "mkv-h264": "h264", "webm-vp8": "vp8",
          "webm-vp9": "vp9", "avi-mjpeg": "mjpeg", "avi-xvid": "mpeg4", "mov-h264": "h264",
          "flv": "flv", "gif": "gif"}


def indices_of(clip) -> list:
    return [frame_index(frame) for frame in clip]


# ---- every container, both backends -------------------------------------------------------

@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("fmt", list(FORMATS))
def test_every_container_reads_with_both_backends(videos, fmt, backend):
    clip = read_clip(videos[fmt], num_frames=6, sampling="uniform", backend=backend)
    assert clip.shape == (6, HEIGHT, WIDTH, 3) and clip.dtype == np.uint8
    assert clip.backend == backend and clip.padded == 0 and clip.total_frames == N_FRAMES
    expected = np.round(np.linspace(0, N_FRAMES - 1, 6)).astype(int).tolist()
    assert clip.indices.tolist() == expected
    assert indices_of(clip) == expected


@pytest.mark.parametrize("fmt", list(FORMATS))
def test_probe_counts_frames_in_every_container(videos, fmt):
    info = probe(videos[fmt])
    assert (info.frames, info.width, info.height, info.codec) == (N_FRAMES, WIDTH, HEIGHT, CODECS[fmt])
    assert info.fps == pytest.approx(10.0)
    assert info.duration == pytest.approx(N_FRAMES / 10.0, abs=0.05)
    assert info.to_dict()["path"] == str(videos[fmt])


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("fmt", ["avi-mjpeg", "mp4-h264", "gif"])
def test_rgb_channel_order(tmp_path, backend, fmt):
    red = make_frames(3, 32, 48, color=(200, 0, 0))
    path = write_video(tmp_path / "red", red, fmt)
    clip = read_clip(path, 3, backend=backend)
    means = clip.reshape(-1, 3).mean(axis=0)
    assert means[0] > means[1] + 100 and means[0] > means[2] + 100


# ---- sampling ----------------------------------------------------------------------------

@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("sampling, start, n, expected", [
    ("consecutive", 0, 4, [0, 1, 2, 3]),
    ("consecutive", 5, 4, [5, 6, 7, 8]),
    ("uniform", 0, 5, [0, 5, 10, 14, 19]),
    ("uniform", 10, 4, [10, 13, 16, 19]),
    ("stride:3", 1, 5, [1, 4, 7, 10, 13]),
    ("stride:4", 0, 5, [0, 4, 8, 12, 16]),
])
def test_sampling_returns_the_right_frames(mp4, backend, sampling, start, n, expected):
    clip = read_clip(mp4, num_frames=n, sampling=sampling, start=start, backend=backend)
    assert clip.indices.tolist() == expected
    assert indices_of(clip) == expected
    assert clip.padded == 0


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("sampling, start, n, real, padded", [
    ("consecutive", 15, 8, [15, 16, 17, 18, 19], 3),
    ("uniform", 0, 24, list(range(20)), 4),
    ("stride:6", 2, 5, [2, 8, 14], 2),
])
def test_short_videos_are_padded_with_the_last_frame(mp4, backend, sampling, start, n, real, padded):
    clip = read_clip(mp4, num_frames=n, sampling=sampling, start=start, backend=backend)
    assert len(clip) == n and clip.padded == padded
    assert clip.indices.tolist() == real + [real[-1]] * padded
    assert indices_of(clip[:len(real)]) == real
    for row in range(len(real), n):
        np.testing.assert_array_equal(clip[row], clip[len(real) - 1])


@pytest.mark.parametrize("backend", BACKENDS)
def test_one_frame_video_works_and_is_padded(tmp_path, backend):
    path = write_video(tmp_path / "one", make_frames(1, 32, 48), "mp4-h264")
    clip = read_clip(path, num_frames=16, backend=backend)
    assert clip.shape == (16, 32, 48, 3) and clip.padded == 15 and clip.total_frames == 1
    assert (clip == clip[0]).all()
    assert probe(path).frames == 1


def test_start_past_the_end_is_an_input_error(mp4):
    with pytest.raises(InputError, match="past the end"):
        read_clip(mp4, 4, start=N_FRAMES)


@pytest.mark.parametrize("kwargs, match", [
    ({"num_frames": 0}, "num_frames"),
    ({"start": -1}, "start"),
    ({"sampling": "random"}, "unknown sampling"),
    ({"sampling": "stride:0"}, "stride"),
    ({"backend": "ffmpeg"}, "unknown backend"),
])
def test_bad_arguments_are_input_errors(mp4, kwargs, match):
    with pytest.raises(InputError, match=match):
        read_clip(mp4, **kwargs)


# ---- frame counts come from the stream, not the header -------------------------------------

def _lie_about_avi_length(path: Path, claimed: int) -> None:
    data = bytearray(path.read_bytes())
    avih = data.index(b"avih") + 8
    data[avih + 16:avih + 20] = struct.pack("<I", claimed)   # avih.dwTotalFrames
    strh = data.index(b"strh") + 8
    data[strh + 32:strh + 36] = struct.pack("<I", claimed)   # strh.dwLength
    path.write_bytes(bytes(data))


def test_frame_count_ignores_a_lying_header(tmp_path, videos):
    import cv2

    path = tmp_path / "liar.avi"
    shutil.copy(videos["avi-mjpeg"], path)
    _lie_about_avi_length(path, 999)
    assert cv2.VideoCapture(str(path)).get(cv2.CAP_PROP_FRAME_COUNT) == 999  # the header lies
    assert probe(path).frames == N_FRAMES
    assert probe(path, exact=True).frames == N_FRAMES
    clip = read_clip(path, 5, "uniform")
    assert clip.total_frames == N_FRAMES
    assert indices_of(clip) == [0, 5, 10, 14, 19]


@pytest.mark.parametrize("backend", BACKENDS)
def test_truncated_stream_reads_what_decodes(tmp_path, videos, backend):
    full = videos["mkv-h264"].read_bytes()
    path = tmp_path / "cut.mkv"
    path.write_bytes(full[:len(full) // 2])
    decodable = probe(path, exact=True).frames
    assert 0 < decodable < N_FRAMES
    clip = read_clip(path, 4, "uniform", backend=backend)
    assert clip.total_frames == decodable and clip.padded == 0
    expected = np.round(np.linspace(0, decodable - 1, 4)).astype(int).tolist()
    assert indices_of(clip) == expected


# ---- backends: fallback and strict choice ---------------------------------------------------

class _BrokenReader(backends_module.FrameReader):
    name = "opencv"

    def __init__(self, path, max_pixels):
        raise DecodeError("simulated OpenCV failure", path)


class _EmptyReader(backends_module.FrameReader):
    name = "opencv"

    def frames(self):
        return iter(())


@pytest.mark.parametrize("broken", [_BrokenReader, _EmptyReader])
def test_auto_falls_back_to_pyav_when_opencv_fails(mp4, monkeypatch, pyav_first, broken):
    monkeypatch.setattr(backends_module, "AUTO_ORDER", ("opencv", "pyav"))
    monkeypatch.setitem(backends_module.BACKENDS, "opencv", broken)
    clip = read_clip(mp4, 4, backend="auto")
    assert clip.backend == "pyav" and indices_of(clip) == [0, 1, 2, 3]
    with pytest.raises(DecodeError):
        read_clip(mp4, 4, backend="opencv")  # a named backend is not silently replaced


def test_auto_falls_back_to_opencv_when_pyav_fails(mp4, monkeypatch, pyav_first):
    class BrokenPyAV(_BrokenReader):
        name = "pyav"

    monkeypatch.setitem(backends_module.BACKENDS, "pyav", BrokenPyAV)
    assert read_clip(mp4, 4).backend == "opencv"


def test_counts_by_decoding_when_the_demuxer_fails(mp4, monkeypatch, pyav_first):
    def no_demux(path, max_frames=None, reader=None):
        raise DecodeError("simulated demux failure", path)

    monkeypatch.setattr(video_module, "demux_info", no_demux)
    clip = read_clip(mp4, 5, "uniform")
    assert clip.total_frames == N_FRAMES and indices_of(clip) == [0, 5, 10, 14, 19]
    assert probe(mp4).frames == N_FRAMES


@pytest.mark.parametrize("fmt", ["mp4-h264", "mkv-h264", "webm-vp9", "avi-mjpeg", "flv"])
def test_auto_opens_the_file_once_to_count_and_decode(videos, monkeypatch, pyav_first, fmt):
    opened = []
    real = backends_module._open_av
    monkeypatch.setattr(backends_module, "_open_av", lambda path: opened.append(path) or real(path))
    clip = read_clip(videos[fmt], 5, "uniform")
    assert len(opened) == 1, opened
    assert clip.backend == "pyav" and clip.total_frames == N_FRAMES
    assert indices_of(clip) == np.round(np.linspace(0, N_FRAMES - 1, 5)).astype(int).tolist()
    assert np.array_equal(np.asarray(clip), np.asarray(read_clip(videos[fmt], 5, "uniform", backend="opencv")))


def test_rotation_metadata_is_applied_by_both_backends(tmp_path):
    import av

    frames = make_frames(3, 32, 48)
    path = tmp_path / "rotated.mp4"
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=10)
        stream.width, stream.height, stream.pix_fmt = 48, 32, "yuv420p"
        stream.set_display_rotation(90)
        for frame in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    by_cv = read_clip(path, 3, backend="opencv")
    by_av = read_clip(path, 3, backend="pyav")
    assert by_cv.shape == by_av.shape == (3, 48, 32, 3)
    assert np.abs(by_cv.astype(int) - by_av.astype(int)).mean() < 1
    info = probe(path)
    assert (info.width, info.height) == (32, 48)


# ---- paths --------------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["odd:name%d.mp4", "spaces and ünïcode.mp4"])
def test_awkward_file_names(tmp_path, mp4, name):
    path = tmp_path / name
    shutil.copy(mp4, path)
    assert indices_of(read_clip(path, 3)) == [0, 1, 2]


def test_video_without_a_known_extension_is_sniffed(tmp_path, mp4):
    path = tmp_path / "upload.bin"
    shutil.copy(mp4, path)
    assert read_clip(path, 2).shape == (2, HEIGHT, WIDTH, 3)


def test_frame_directory_is_a_video(frame_dir):
    clip = read_clip(frame_dir, 5, "uniform")
    assert clip.backend == "frames" and clip.total_frames == N_FRAMES
    assert indices_of(clip) == [0, 5, 10, 14, 19]
    assert probe(frame_dir).frames == N_FRAMES


# ---- bad inputs: each its own clear error ----------------------------------------------------

@pytest.fixture
def bad_inputs(tmp_path, mp4, videos):
    full = mp4.read_bytes()
    made = {
        "missing": (tmp_path / "missing.mp4", InputError, "no such file"),
        "zero bytes": (tmp_path / "empty.mp4", DecodeError, "empty file"),
        "truncated": (tmp_path / "cut.mp4", DecodeError, "truncated MP4"),
        "text renamed .mp4": (tmp_path / "notes.mp4", DecodeError, "contains text"),
        "random bytes": (tmp_path / "noise.mp4", DecodeError, "unrecognised content"),
        "unsupported extension": (tmp_path / "notes.docx", InputError, "unsupported file type"),
        "image given as video": (tmp_path / "photo.png", InputError, "use read_image"),
        "no frames in directory": (tmp_path / "nothing", DecodeError, "no frame images"),
        "huge header": (tmp_path / "huge.gif", LimitError, "16000x16000"),
        "0 decodable frames": (tmp_path / "header_only.mkv", DecodeError, "no decodable video frames"),
        "audio only": (tmp_path / "voice.mp4", DecodeError, "no video stream"),
    }
    _write_audio_only(made["audio only"][0])
    made["0 decodable frames"][0].write_bytes(videos["mkv-h264"].read_bytes()[:1000])
    made["zero bytes"][0].write_bytes(b"")
    made["truncated"][0].write_bytes(full[:len(full) // 2])
    made["text renamed .mp4"][0].write_text("this is a text file\nwith two lines\n")
    made["random bytes"][0].write_bytes(np.random.default_rng(0).bytes(4000))
    made["unsupported extension"][0].write_text("hello")
    made["image given as video"][0].write_bytes((Path(__file__).parent / "conftest.py").read_bytes())
    (tmp_path / "nothing").mkdir()
    (tmp_path / "nothing" / "readme.txt").write_text("no frames here")
    gif_with_claimed_size(videos["gif"], made["huge header"][0], 16000, 16000)
    return made


def _write_audio_only(path: Path) -> None:
    import av

    with av.open(str(path), "w") as container:
        stream = container.add_stream("aac", rate=16000)
        stream.layout = "mono"
        for i in range(5):
            frame = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="fltp",
                                               layout="mono")
            frame.sample_rate, frame.pts = 16000, i * 1024
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


@pytest.mark.parametrize("reader", [read_clip, probe])
def test_each_bad_input_has_its_own_clear_error(bad_inputs, reader):
    messages = []
    for label, (path, error, match) in bad_inputs.items():
        with pytest.raises(error, match=match) as caught:
            reader(path)
        assert caught.value.path == str(path), label
        assert "\n" not in str(caught.value)
        messages.append(caught.value.message)
    assert len(set(messages)) == len(messages), "two bad inputs share a message"


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="needs Linux /proc")
def test_huge_header_is_refused_before_allocating(videos, tmp_path):
    """16000x16000 GIF (a few KB): decoding one frame would take ~1 GB; the refusal must not."""
    path = gif_with_claimed_size(videos["gif"], tmp_path / "huge.gif", 16000, 16000)
    script = textwrap.dedent(f"""
        from mmvgm.errors import LimitError
        from mmvgm.io import read_clip, probe
        from mmvgm.io.torchcodec_reader import available, _decoders
        if available():
            _decoders()  # its import (torch) is not what is measured
        def peak():
            status = open("/proc/self/status").read()
            return int(status.split("VmHWM:")[1].split()[0]) // 1024
        before = peak()
        for reader in (read_clip, probe):
            try:
                reader({str(path)!r})
            except LimitError:
                pass
            else:
                raise SystemExit("not refused")
        # VmHWM: this process's peak RSS (ru_maxrss would include the parent's, via fork).
        print(peak() - before)
    """)
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                            cwd=Path(__file__).parents[2], timeout=60)
    assert result.returncode == 0, result.stderr
    assert int(result.stdout.strip()) < 300  # MB of growth; one decoded frame would be ~1000 MB


def test_pixel_and_frame_budgets(mp4):
    with pytest.raises(LimitError, match="pixel budget"):
        read_clip(mp4, 2, max_pixels=WIDTH * HEIGHT - 1)
    assert read_clip(mp4, 2, max_pixels=WIDTH * HEIGHT).shape[0] == 2
    with pytest.raises(LimitError, match="frame budget"):
        read_clip(mp4, 2, max_frames=N_FRAMES - 1)
    assert read_clip(mp4, 2, max_frames=N_FRAMES).total_frames == N_FRAMES


def test_frame_budget_stops_counting_early(mp4, monkeypatch, pyav_first):
    """The budget is enforced while PyAV demuxes, not after reading the whole file."""
    seen = []
    original = backends_module.check_frames

    def spy(count, max_frames, path=None):
        seen.append(count)
        original(count, max_frames, path)

    monkeypatch.setattr(backends_module, "check_frames", spy)
    with pytest.raises(LimitError):
        read_clip(mp4, 2, max_frames=3)
    assert max(seen) == 4


def _mpegts(frames: np.ndarray) -> bytes:
    import io

    buffer = io.BytesIO()
    encode_av(buffer, frames, container_format="mpegts")
    return buffer.getvalue()


def test_a_size_change_mid_stream_is_read_at_the_first_size(tmp_path):
    """Two joined transport streams, 96x64 then 160x128: PyAV refuses to mix sizes in a clip
    (and a larger later frame must not pass the budget checked on the header); ``auto`` reads
    it with torchcodec or, where that cannot run, with OpenCV: both scale every frame to the
    first size."""
    path = tmp_path / "joined.ts"
    path.write_bytes(_mpegts(make_frames(10, 64, 96)) + _mpegts(make_frames(10, 128, 160, seed=3)))
    with pytest.raises(DecodeError, match="frame size changes within the video"):
        read_clip(path, 20, backend="pyav")
    for kwargs in ({}, {"start": 12}, {"start": 12, "max_pixels": 96 * 64}):
        clip = read_clip(path, 4 if kwargs else 20, **kwargs)
        assert clip.shape[1:] == (64, 96, 3) and clip.backend in ("torchcodec", "opencv")
