import pickle

import numpy as np

from mmvgm.io import Clip, VideoInfo


def _clip() -> Clip:
    data = np.arange(2 * 4 * 5 * 3, dtype=np.uint8).reshape(2, 4, 5, 3)
    return Clip(data, padded=1, indices=[7, 7], total_frames=8, backend="pyav", path="a.mp4")


def test_clip_is_an_array_with_provenance():
    clip = _clip()
    assert isinstance(clip, np.ndarray) and clip.dtype == np.uint8 and clip.shape == (2, 4, 5, 3)
    assert (clip.padded, clip.indices.tolist(), clip.total_frames, clip.backend, clip.path) == \
        (1, [7, 7], 8, "pyav", "a.mp4")


def test_clip_survives_pickling_for_dataloader_workers():
    clip = pickle.loads(pickle.dumps(_clip()))
    assert isinstance(clip, Clip) and clip.padded == 1 and clip.indices.tolist() == [7, 7]
    np.testing.assert_array_equal(clip, _clip())


def test_arithmetic_gives_plain_arrays_and_torch_accepts_clips():
    import torch

    clip = _clip()
    assert type(clip.astype(np.float32) / 255) is np.ndarray
    assert isinstance(clip.mean(), float)
    assert torch.from_numpy(clip).shape == (2, 4, 5, 3)


def test_video_info_to_dict():
    info = VideoInfo("a.mp4", 3, 10.0, 64, 48, "h264", 0.3)
    assert info.to_dict() == {"path": "a.mp4", "frames": 3, "fps": 10.0, "width": 64, "height": 48,
                              "codec": "h264", "duration": 0.3}
