"""Decoder thread policy: one thread per decode inside DataLoader workers."""
import numpy as np
import torch

from mmvgm.io import read_clip
from mmvgm.io.backends import decoder_threads, preload_decoders
from tests.media import make_frames, write_video


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
