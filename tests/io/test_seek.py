"""Late-start reads seek, and give exactly the frames that decoding from frame 0 gives."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from mmvgm.errors import InputError
from mmvgm.io import backends as backends_module
from mmvgm.io import read_clip, read_clips
from mmvgm.io import video as video_module
from mmvgm.io.backends import Timeline, auto_order, demux_info
from tests.io.conftest import torchcodec_usable
from tests.media import FORMATS, frame_index, make_frames, write_video

N = 120
GOP = 20
HEIGHT, WIDTH = 32, 512  # frame_index() is unique for 120 frames at this width
BACKENDS = ["opencv", "pyav", "auto"] + (["torchcodec"] if torchcodec_usable() else [])
# Every container, plus H.264 with B-frames (decode order differs from presentation order).
CASES = list(FORMATS) + ["mp4-h264-bframes"]
# (sampling, start, num_frames): late starts, a stride across keyframes, uniform over the
# tail, and reads that run past the end (padded).
READS = [
    ("consecutive", 57, 8),
    ("consecutive", 100, 4),
    ("stride:3", 41, 12),
    ("uniform", 70, 6),
    ("consecutive", 115, 10),
    ("stride:4", 110, 5),
]


def _write(path: Path, frames: np.ndarray, case: str) -> Path:
    """Like tests.media.write_video, but with a keyframe every GOP frames."""
    import av

    fmt = "mp4-h264" if case == "mp4-h264-bframes" else case
    ext, writer, codec = FORMATS[fmt]
    if writer != "av":  # OpenCV writers: MJPEG is all keyframes, its MPEG-4 uses a GOP of 12
        return write_video(path, frames, fmt)
    path = path.with_suffix(f".{ext}")
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream(codec, rate=10)
        stream.width, stream.height = frames.shape[2], frames.shape[1]
        stream.pix_fmt = {"gif": "rgb8"}.get(codec, "yuv420p")
        stream.codec_context.gop_size = GOP
        if codec == "libx264":
            bframes = "3" if case == "mp4-h264-bframes" else "0"
            stream.options = {"crf": "18", "preset": "ultrafast", "keyint": str(GOP),
                              "bframes": bframes}
        for frame in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


@pytest.fixture(scope="module")
def long_videos(tmp_path_factory) -> dict:
    folder = tmp_path_factory.mktemp("seek")
    frames = make_frames(N, HEIGHT, WIDTH)
    return {case: _write(folder / case, frames, case) for case in CASES}


@pytest.fixture(scope="module")
def from_zero(long_videos) -> dict:
    """{(case, backend): every frame, decoded from frame 0 without seeking}."""
    cache: dict = {}

    def get(case: str, backend: str) -> np.ndarray:
        backend = "pyav" if backend in ("auto", "torchcodec") else backend  # their frames are PyAV's
        if (case, backend) not in cache:
            cls = backends_module.BACKENDS[backend]
            with cls(long_videos[case], 10 ** 8) as reader:
                got, ended = reader.read(range(N))
            assert ended is None and len(got) == N
            cache[case, backend] = np.stack([got[i] for i in range(N)])
        return cache[case, backend]
    return get


@pytest.fixture
def seek_results(monkeypatch) -> list:
    """True/False for each PyAV read_seeking call: whether it seeked (False: fell back)."""
    results: list = []
    original = backends_module.PyAVReader.read_seeking

    def spy(self, wanted, timeline):
        got = original(self, wanted, timeline)
        results.append(got is not None)
        return got
    monkeypatch.setattr(backends_module.PyAVReader, "read_seeking", spy)
    return results


def test_test_videos_have_several_keyframes(long_videos):
    for case, path in long_videos.items():
        timeline = demux_info(path).timeline
        if case == "gif":  # FFmpeg's GIF demuxer flags only the first frame as a keyframe
            continue
        assert timeline is not None, case
        assert len(timeline.keyframes) >= 4, (case, timeline.keyframes)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("case", CASES)
def test_late_reads_equal_a_decode_from_zero(long_videos, from_zero, seek_results, case, backend):
    path, reference = long_videos[case], from_zero(case, backend)
    for sampling, start, n in READS:
        clip = read_clip(path, n, sampling, start=start, backend=backend)
        expected, padded = video_module.parse_sampling(sampling).plan(N, n, start)
        assert clip.indices.tolist() == expected.tolist(), (sampling, start)
        assert clip.padded == padded and clip.total_frames == N
        assert [frame_index(f) for f in clip] == expected.tolist(), (sampling, start)
        assert np.array_equal(np.asarray(clip), reference[expected]), (sampling, start)
    if backend == "pyav" or backend == "auto" and auto_order()[0] == "pyav":
        # PyAV decodes from the container that counted the packets, so every read seeks (to
        # frame 0 at least, for the GIF whose only keyframe is frame 0), and every seek was
        # exact: no fallback to a fresh open was needed.
        assert seek_results and all(seek_results), seek_results


@pytest.mark.parametrize("backend", BACKENDS)
def test_start_past_the_end_is_still_an_input_error(long_videos, backend):
    for start in (N, N + 500):
        with pytest.raises(InputError, match="past the end"):
            read_clip(long_videos["mp4-h264"], 4, "consecutive", start=start, backend=backend)


def test_last_frame_alone_is_padded(long_videos, from_zero):
    clip = read_clip(long_videos["mkv-h264"], 5, "consecutive", start=N - 1, backend="pyav")
    assert clip.indices.tolist() == [N - 1] * 5 and clip.padded == 4
    assert np.array_equal(np.asarray(clip), from_zero("mkv-h264", "pyav")[[N - 1] * 5])


def test_wrong_timestamps_fall_back_to_a_decode_from_zero(long_videos, from_zero, seek_results,
                                                         monkeypatch):
    """A timeline that does not match the decoded frames is noticed, not trusted."""
    real = demux_info

    def shifted(path, max_frames=None, reader=None):
        info = real(path, max_frames, reader=reader)
        timeline = info.timeline
        info.timeline = Timeline(timeline.pts + 1, timeline.keyframes)
        return info
    monkeypatch.setattr(video_module, "demux_info", shifted)
    clip = read_clip(long_videos["mp4-h264"], 8, "consecutive", start=57, backend="pyav")
    assert seek_results == [False]
    assert clip.indices.tolist() == list(range(57, 65))
    assert np.array_equal(np.asarray(clip), from_zero("mp4-h264", "pyav")[57:65])


def test_untrustworthy_timestamps_give_no_timeline():
    assert backends_module._timeline([0, 1, 1, 2], [0]) is None  # repeated
    assert backends_module._timeline([0, 1, 2], [1]) is None  # frame 0 not a keyframe
    timeline = backends_module._timeline([20, 0, 10, 30], [0, 20])  # B-frame order
    assert timeline.pts.tolist() == [0, 10, 20, 30] and timeline.keyframes.tolist() == [0, 2]


def test_segments_seek_only_past_the_decoder_position():
    timeline = Timeline(np.arange(100), np.array([0, 20, 40, 60, 80]))
    assert timeline.segments([5, 6, 7]) == [(0, 7)]
    assert timeline.segments([45, 46]) == [(40, 46)]
    assert timeline.segments([3, 25, 30, 95]) == [(0, 3), (20, 30), (80, 95)]
    assert timeline.segments([19, 21]) == [(0, 21)]  # already at keyframe 20: no seek


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("sampling", ["consecutive", "stride:2"])
def test_read_clips_equals_one_read_clip_per_start(long_videos, backend, sampling):
    path, starts = long_videos["mkv-h264"], [0, 33, 70, 112]
    clips = read_clips(path, 6, starts, sampling, backend=backend)
    assert len(clips) == len(starts)
    for start, clip in zip(starts, clips):
        alone = read_clip(path, 6, sampling, start=start, backend=backend)
        assert clip.indices.tolist() == alone.indices.tolist() and clip.padded == alone.padded
        assert np.array_equal(np.asarray(clip), np.asarray(alone))


def test_read_clips_decodes_once(long_videos, monkeypatch):
    opened: list = []
    original = backends_module.PyAVReader.__init__

    def counting(self, *args, **kwargs):
        opened.append(1)
        original(self, *args, **kwargs)
    monkeypatch.setattr(backends_module.PyAVReader, "__init__", counting)
    read_clips(long_videos["mp4-h264"], 4, [10, 50, 90], backend="pyav")
    assert len(opened) == 1


@pytest.mark.parametrize("starts", [[], "12", [3, -1], None])
def test_read_clips_bad_starts(long_videos, starts):
    with pytest.raises(InputError):
        read_clips(long_videos["mp4-h264"], 4, starts)
