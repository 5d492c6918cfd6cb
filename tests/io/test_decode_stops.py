"""A decoder that fails mid-stream is a damaged file, not a short one: one DecodeError naming the
frame, for every backend, decoder thread count and verb; a genuinely short video is still padded."""
from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner

from mmvgm.cli import cli
from mmvgm.errors import DecodeError
from mmvgm.io import backends as backends_module
from mmvgm.io import probe, read_clip, read_clips
from tests.media import frame_index, make_frames, write_damaged_video, write_video

N, K = 20, 3  # packets in the stream; the first frame that fails to decode
HEIGHT, WIDTH = 48, 96
BACKENDS = ["auto", "pyav", "opencv"]
THREADS = ["0", "1"]  # MMVGM_DECODE_THREADS: the library's choice (in-process default), one (workers)
STOPPED = f"decoding stopped at frame {K} of {N}: the decoder failed there"
MESSAGE = f"{STOPPED} (Invalid data found when processing input)"  # FFmpeg's words for every codec


@pytest.fixture(scope="module")
def frames() -> np.ndarray:
    return make_frames(N, HEIGHT, WIDTH)


@pytest.fixture(scope="module")
def damaged(tmp_path_factory, frames) -> dict:
    """{format: a video of N packets whose decoding fails at frame K} (VP8, MPEG-4, H.264)."""
    folder = tmp_path_factory.mktemp("damaged")
    return {fmt: write_damaged_video(folder / fmt, frames, K, fmt)
            for fmt in ("webm-vp8", "mp4-mpeg4", "mkv-h264")}


@pytest.fixture(scope="module")
def short(tmp_path_factory, frames):
    """A clean 5-frame video: shorter than the clips read from it."""
    return write_video(tmp_path_factory.mktemp("short") / "short", frames[:5], "webm-vp8")


def _stopped(call, path):
    with pytest.raises(DecodeError, match=STOPPED) as caught:
        call()
    assert caught.value.path == str(path) and "\n" not in str(caught.value)
    return caught.value.message


@pytest.mark.parametrize("threads", THREADS)
@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("fmt", ["webm-vp8", "mp4-mpeg4", "mkv-h264"])
def test_a_stream_that_stops_decoding_is_an_error_naming_the_frame(damaged, monkeypatch, fmt,
                                                                   backend, threads):
    monkeypatch.setenv("MMVGM_DECODE_THREADS", threads)
    path = damaged[fmt]
    messages = {_stopped(lambda: read_clip(path, 8, sampling, start=start, backend=backend), path)
                for sampling, start in (("consecutive", 0), ("uniform", 0), ("stride:2", 1),
                                        ("consecutive", 12))}
    messages.add(_stopped(lambda: read_clips(path, 4, [0, 10], backend=backend), path))
    assert messages == {MESSAGE}  # the same words whatever the read


@pytest.mark.parametrize("threads", THREADS)
@pytest.mark.parametrize("backend", BACKENDS)
def test_frames_before_the_damage_still_read(damaged, monkeypatch, backend, threads):
    monkeypatch.setenv("MMVGM_DECODE_THREADS", threads)
    clip = read_clip(damaged["webm-vp8"], K, backend=backend)
    assert clip.padded == 0 and [frame_index(f) for f in clip] == list(range(K))


@pytest.mark.parametrize("threads", THREADS)
@pytest.mark.parametrize("backend", BACKENDS)
def test_a_genuinely_short_video_is_still_padded(short, monkeypatch, backend, threads):
    monkeypatch.setenv("MMVGM_DECODE_THREADS", threads)
    clip = read_clip(short, 8, backend=backend)
    assert clip.padded == 3 and clip.indices.tolist() == [0, 1, 2, 3, 4, 4, 4, 4]
    assert clip.total_frames == 5
    assert read_clip(short, 8, "uniform", backend=backend).padded == 3
    assert probe(short, exact=True).frames == 5


def test_frame_threading_that_loses_frames_gives_the_same_error(damaged, monkeypatch):
    """On several threads FFmpeg reported a Theora stream's error ahead of its first frame (so
    'no decodable video frames'), on one thread after it (so one frame padded to a clip)."""
    real = backends_module.PyAVReader.frames

    def frames(self):
        if self.stream.codec_context.thread_count != 1:
            raise RuntimeError("simulated: frame threads report the error first")
        yield from real(self)
    monkeypatch.setattr(backends_module.PyAVReader, "frames", frames)
    path = damaged["webm-vp8"]
    for threads in THREADS:
        monkeypatch.setenv("MMVGM_DECODE_THREADS", threads)
        for backend in ("auto", "pyav"):
            _stopped(lambda: read_clip(path, 8, backend=backend), path)
        assert read_clip(path, K, backend="pyav").padded == 0  # on one thread those frames decode
        assert probe(path).frames == N


def test_opencv_threads_that_lose_frames_give_the_same_error(damaged, monkeypatch):
    real = backends_module.OpenCVReader.frames

    def frames(self):
        if self.cap.get(self._cv2.CAP_PROP_N_THREADS) != 1:
            return  # simulated: grab() fails at once on several threads
        yield from real(self)
    monkeypatch.setattr(backends_module.OpenCVReader, "frames", frames)
    path = damaged["webm-vp8"]
    for threads in THREADS:
        monkeypatch.setenv("MMVGM_DECODE_THREADS", threads)
        _stopped(lambda: read_clip(path, 8, backend="opencv"), path)


def test_a_stream_that_ends_cleanly_before_its_packets_is_re_planned(frames, tmp_path, monkeypatch):
    """Fewer frames than packets, without a decoder error (OpenCV cannot tell which: PyAV's
    decoder is asked): the decodable frames are the video, as before."""
    path = write_video(tmp_path / "clean", frames, "webm-vp8")
    real = backends_module.OpenCVReader.frames

    def frames_then_end(self):
        for index, item in enumerate(real(self)):
            if index == 10:
                return
            yield item
    monkeypatch.setattr(backends_module.OpenCVReader, "frames", frames_then_end)
    clip = read_clip(path, 6, "uniform", backend="opencv")
    assert clip.total_frames == 10 and clip.padded == 0
    assert [frame_index(f) for f in clip] == [0, 2, 4, 5, 7, 9]


def test_decoder_error_says_whether_ffmpeg_decodes_to_the_end(damaged, short, tmp_path):
    from mmvgm.io.backends import decoder_error

    assert decoder_error(damaged["webm-vp8"], 10 ** 8) == "Invalid data found when processing input"
    assert decoder_error(short, 10 ** 8) is None
    text = tmp_path / "notes.webm"
    text.write_text("not a video")
    assert decoder_error(text, 10 ** 8) is None  # nothing PyAV can open: no judgement


@pytest.mark.parametrize("threads", THREADS)
@pytest.mark.parametrize("backend", BACKENDS)
def test_probe_exact_names_the_frame_while_probe_counts_packets(damaged, monkeypatch, backend,
                                                                threads):
    monkeypatch.setenv("MMVGM_DECODE_THREADS", threads)
    path = damaged["webm-vp8"]
    _stopped(lambda: probe(path, backend=backend, exact=True), path)
    assert probe(path, backend=backend).frames == N  # packets: decoding only the first frame


# ---- the verbs: one line, the same words (tests/cli patterns) ----------------------------------

@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    from tests.inference_helpers import make_checkpoint

    return make_checkpoint(tmp_path_factory.mktemp("ckpt") / "joint", "joint")


def _run(*args, threads=None):
    """The CLI; ``threads``: MMVGM_DECODE_THREADS (None: the thread policy's default)."""
    return CliRunner().invoke(cli, [str(a) for a in args],
                              env={"MMVGM_CHECKPOINT": None, "MMVGM_DECODE_THREADS": threads})


@pytest.mark.parametrize("threads", THREADS)
def test_info_exact_and_trace_give_the_same_one_line_error(damaged, checkpoint, threads):
    path = damaged["webm-vp8"]
    expected = f"mmvgm: error: {path}: {MESSAGE}"
    info = _run("info", path, "--exact", threads=threads)
    assert info.exit_code == 1 and info.stderr.splitlines() == [expected]
    trace = _run("trace", path, "-c", checkpoint, "--json", threads=threads)
    assert trace.exit_code == 1 and "Traceback" not in trace.output
    record = json.loads(trace.stdout.splitlines()[0])
    assert record["path"] == str(path) and record["error"] == MESSAGE and "verdict" not in record
    errors = [line for line in trace.stderr.splitlines() if line.startswith("mmvgm: error:")]
    assert errors[0] == expected
    assert json.loads(_run("info", path, "--json", threads=threads).stdout)["frames"] == N


@pytest.mark.parametrize("workers", ["0", "1"])  # in-process: the library's threads; a worker: one
def test_scan_writes_the_same_error_line_in_process_and_in_workers(damaged, checkpoint, tmp_path,
                                                                   workers):
    path = damaged["webm-vp8"]
    out = tmp_path / "res.jsonl"
    result = _run("scan", path, "-c", checkpoint, "--out", out, "-j", workers, "-q")
    assert result.exit_code == 0, result.output
    [record] = [json.loads(line) for line in out.read_text().splitlines()]
    assert record["path"] == str(path) and record["error"] == MESSAGE
    assert "verdict" not in record and "padded" not in record
