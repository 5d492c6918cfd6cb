"""The ``torchcodec`` backend: the same frames and counts as PyAV, and PyAV wherever it cannot run."""
from __future__ import annotations

import numpy as np
import pytest

from mmvgm.errors import InputError, LimitError
from mmvgm.io import backends as backends_module
from mmvgm.io import read_clip, read_clips
from mmvgm.io import torchcodec_reader
from mmvgm.io.backends import AUTO_ORDER, auto_order
from tests.io.conftest import HEIGHT, N_FRAMES, WIDTH, needs_torchcodec
from tests.media import FORMATS

READS = [("consecutive", 0, 8), ("consecutive", 7, 8), ("uniform", 0, 6), ("stride:3", 2, 5),
         ("consecutive", 0, N_FRAMES + 4)]


@needs_torchcodec
@pytest.mark.parametrize("fmt", list(FORMATS))
def test_frames_counts_and_padding_equal_pyav(videos, fmt):
    for sampling, start, n in READS:
        ours = read_clip(videos[fmt], n, sampling, start=start, backend="torchcodec")
        theirs = read_clip(videos[fmt], n, sampling, start=start, backend="pyav")
        assert ours.backend == "torchcodec"
        assert np.array_equal(np.asarray(ours), np.asarray(theirs)), (fmt, sampling, start)
        assert ours.indices.tolist() == theirs.indices.tolist() and ours.padded == theirs.padded
        assert ours.total_frames == theirs.total_frames == N_FRAMES


@needs_torchcodec
def test_auto_reads_with_torchcodec_without_opening_the_file_in_pyav(mp4, monkeypatch):
    monkeypatch.setenv("MMVGM_DECODE_THREADS", "1")  # a decoding worker's setting
    opened = []
    real = backends_module._open_av
    monkeypatch.setattr(backends_module, "_open_av", lambda path: opened.append(path) or real(path))
    assert auto_order()[0] == "torchcodec"
    clip = read_clip(mp4, 5, "uniform")
    assert clip.backend == "torchcodec" and opened == []
    windows = read_clips(mp4, 4, starts=[0, 8, 16])
    assert [w.indices.tolist() for w in windows] == [[0, 1, 2, 3], [8, 9, 10, 11], [16, 17, 18, 19]]


@needs_torchcodec
def test_a_clip_may_be_the_decoders_batch_but_no_other_clips(mp4):
    """A lone clip is torchcodec's own batch (not copied again); clips of one read_clips call
    never share frames, even where they are the same frames."""
    first, second = read_clips(mp4, 4, starts=[0, 0], backend="torchcodec")
    assert np.array_equal(first, second) and not np.shares_memory(first, second)
    clip = read_clip(mp4, 4, "uniform", backend="torchcodec")
    expected = read_clip(mp4, 4, "uniform", backend="pyav")
    assert clip.flags.c_contiguous and clip.flags.writeable and np.array_equal(clip, expected)


@needs_torchcodec
def test_rotation_is_applied(tmp_path):
    import av

    from tests.media import make_frames

    path = tmp_path / "rotated.mp4"
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=10)
        stream.width, stream.height, stream.pix_fmt = 48, 32, "yuv420p"
        stream.set_display_rotation(90)
        for frame in make_frames(3, 32, 48):
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    ours, theirs = read_clip(path, 3, backend="torchcodec"), read_clip(path, 3, backend="pyav")
    assert ours.shape == theirs.shape == (3, 48, 32, 3) and np.array_equal(np.asarray(ours), np.asarray(theirs))


@needs_torchcodec
def test_budgets_hold(mp4):
    with pytest.raises(LimitError, match="pixel budget"):
        read_clip(mp4, 2, backend="torchcodec", max_pixels=WIDTH * HEIGHT - 1)
    with pytest.raises(LimitError, match="frame budget"):
        read_clip(mp4, 2, backend="torchcodec", max_frames=N_FRAMES - 1)


@needs_torchcodec
def test_a_truncated_file_reads_as_pyav_reads_it(tmp_path, videos):
    path = tmp_path / "cut.mkv"
    full = videos["mkv-h264"].read_bytes()
    path.write_bytes(full[:len(full) // 2])
    auto, pyav = read_clip(path, 4, "uniform"), read_clip(path, 4, "uniform", backend="pyav")
    assert np.array_equal(np.asarray(auto), np.asarray(pyav)) and auto.total_frames == pyav.total_frames


@needs_torchcodec
def test_on_several_decoder_threads_auto_starts_with_pyav(mp4, monkeypatch):
    monkeypatch.setenv("MMVGM_DECODE_THREADS", "0")  # the library's choice: a lone reader's default
    assert auto_order() == AUTO_ORDER and read_clip(mp4, 3).backend == "pyav"
    assert auto_order(threads=1)[0] == "torchcodec"


def test_without_its_libraries_auto_is_pyav_then_opencv(mp4, monkeypatch):
    monkeypatch.setattr(torchcodec_reader, "_broken", "torchcodec cannot load FFmpeg's libraries "
                        f"(apt-get install {torchcodec_reader.FFMPEG_PACKAGES})")
    assert auto_order(threads=1) == AUTO_ORDER == ("pyav", "opencv")
    assert read_clip(mp4, 3).backend == "pyav"
    with pytest.raises(InputError, match="apt-get install libavcodec59") as err:
        read_clip(mp4, 3, backend="torchcodec")  # named: an error, never silently another decoder
    assert "\n" not in str(err.value)


@needs_torchcodec
def test_auto_leads_with_torchcodec_only_where_this_process_loaded_it(mp4, monkeypatch):
    """Installed is not enough: its import costs seconds, which the process starting the
    workers decides to pay (``preload_decoders(torchcodec=...)``)."""
    import sys

    monkeypatch.setenv("MMVGM_DECODE_THREADS", "1")  # a decoding worker's setting
    monkeypatch.setattr(torchcodec_reader, "_module", None)
    monkeypatch.delitem(sys.modules, "torchcodec.decoders")
    assert torchcodec_reader.available() and not torchcodec_reader.loaded()
    assert auto_order() == AUTO_ORDER and read_clip(mp4, 3).backend == "pyav"
    backends_module.preload_decoders(torchcodec=False)
    assert not torchcodec_reader.loaded()
    backends_module.preload_decoders(torchcodec=True)
    assert torchcodec_reader.loaded() and auto_order()[0] == "torchcodec"
    assert read_clip(mp4, 3).backend == "torchcodec"
