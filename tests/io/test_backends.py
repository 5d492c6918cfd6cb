"""Decoder thread policy (one thread per decode inside DataLoader workers) and PyAV's RGB conversion."""
import numpy as np
import pytest
import torch

from mmvgm.io import read_clip
from mmvgm.io.backends import decoder_threads, preload_decoders
from tests.media import encode_av, make_frames, write_video


class _ThreadsSeenInWorker(torch.utils.data.Dataset):
    def __init__(self, path=None):
        self.path = path

    def __len__(self):
        return 2

    def __getitem__(self, index):
        if self.path is not None:  # a real decode works with the worker setting
            assert read_clip(self.path, num_frames=4).shape[0] == 4
        return decoder_threads()


def test_main_process_leaves_threads_to_the_library(monkeypatch):
    monkeypatch.delenv("MMVGM_DECODE_THREADS", raising=False)
    assert decoder_threads() == 0


def test_dataloader_workers_decode_with_one_thread(monkeypatch, tmp_path):
    monkeypatch.delenv("MMVGM_DECODE_THREADS", raising=False)
    video = write_video(tmp_path / "v.mp4", make_frames(8))
    preload_decoders()
    loader = torch.utils.data.DataLoader(_ThreadsSeenInWorker(str(video)), batch_size=None, num_workers=1)
    assert [int(t) for t in loader] == [1, 1]


def test_environment_variable_overrides(monkeypatch):
    monkeypatch.setenv("MMVGM_DECODE_THREADS", "3")
    assert decoder_threads() == 3
    monkeypatch.setenv("MMVGM_DECODE_THREADS", "many")  # not a number: ignored
    assert decoder_threads() == 0


def test_one_thread_decodes_the_same_pixels(monkeypatch, tmp_path):
    video = write_video(tmp_path / "v.mp4", make_frames(8))
    monkeypatch.setenv("MMVGM_DECODE_THREADS", "0")
    default = {b: np.asarray(read_clip(video, 4, backend=b)) for b in ("opencv", "pyav")}
    monkeypatch.setenv("MMVGM_DECODE_THREADS", "1")
    for backend, pixels in default.items():
        assert np.array_equal(np.asarray(read_clip(video, 4, backend=backend)), pixels)


def _rgb_both_ways(path):
    """Every frame through ``frame_to_rgb`` and through OpenCV."""
    import av

    from mmvgm.io.backends import _cv2, frame_to_rgb

    with av.open(str(path)) as container:
        ours = [frame_to_rgb(f) for f in container.decode(video=0)]
    cv2 = _cv2()
    capture = cv2.VideoCapture(str(path))
    theirs = []
    while True:
        ok, bgr = capture.read()
        if not ok:
            break
        theirs.append(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
    capture.release()
    return ours, theirs


@pytest.mark.parametrize("pix_fmt", ["yuv420p", "yuv444p", "yuvj420p", "yuv420p10le", "yuv422p10le"])
def test_pyav_frames_convert_to_opencvs_pixels(tmp_path, pix_fmt):
    video = tmp_path / "v.mp4"
    encode_av(str(video), make_frames(6, height=48, width=64), pix_fmt=pix_fmt)
    ours, theirs = _rgb_both_ways(video)
    assert len(ours) == len(theirs) == 6
    assert all(np.array_equal(a, b) for a, b in zip(ours, theirs))
    if pix_fmt == "yuv420p10le":  # where PyAV's own rgb24 conversion differs
        import av

        with av.open(str(video)) as container:
            plain = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
        assert any(not np.array_equal(a, b) for a, b in zip(plain, theirs))


def test_the_cached_conversion_follows_a_change_of_size(tmp_path):
    for size in ((48, 64), (32, 40)):
        video = write_video(tmp_path / f"{size[0]}.mp4", make_frames(3, height=size[0], width=size[1]))
        ours, theirs = _rgb_both_ways(video)
        assert ours[0].shape == (*size, 3) and all(np.array_equal(a, b) for a, b in zip(ours, theirs))


def _convert_in_child(path, queue):
    ours, theirs = _rgb_both_ways(path)
    queue.put(all(np.array_equal(a, b) for a, b in zip(ours, theirs)))


def test_a_forked_child_converts_and_exits_after_the_parent_converted(tmp_path):
    """The parent converted on its main thread and on a thread that is still alive (as in a
    threaded service); a forked child (a DataLoader worker) converts, then exits: nothing hangs."""
    import multiprocessing
    import threading

    video = write_video(tmp_path / "v.mp4", make_frames(4))
    _rgb_both_ways(video)
    converted, release = threading.Event(), threading.Event()

    def service_thread():
        _rgb_both_ways(video)
        converted.set()
        release.wait(120)
    helper = threading.Thread(target=service_thread, daemon=True)
    helper.start()
    try:
        assert converted.wait(60)
        ctx = multiprocessing.get_context("fork")
        queue = ctx.Queue()
        child = ctx.Process(target=_convert_in_child, args=(str(video), queue), daemon=True)
        child.start()
        child.join(60)
        if child.exitcode is None:  # hung
            child.kill()
        assert child.exitcode == 0 and queue.get(timeout=5) is True
    finally:
        release.set()
        helper.join(10)
