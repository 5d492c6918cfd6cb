"""VideoDataset over real files decoded by mmvgm.io.read_clip, through a 2-worker DataLoader."""
from __future__ import annotations

import logging
from pathlib import Path

import pytest
import torch

from mmvgm.data.dataset import VideoDataset, make_loader
from mmvgm.data.labels import LabelSet
from mmvgm.data.splits import split_samples
from mmvgm.data.transforms import VideoTransform
from mmvgm.io.discovery import discover
from tests.media import frame_index, make_frames, write_frame_dir, write_video


@pytest.fixture(scope="module")
def media_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("media")
    write_video(root / "real" / "a", make_frames(12, 48, 64, seed=1), "mp4-h264")
    write_video(root / "real" / "b", make_frames(5, 60, 80, seed=2), "avi-mjpeg")  # short: padded
    write_frame_dir(root / "real" / "c", make_frames(9, 48, 64, seed=3))
    write_video(root / "fake" / "d", make_frames(10, 64, 48, seed=4), "webm-vp9")  # portrait
    write_video(root / "fake" / "e", make_frames(10, 48, 64, seed=5), "gif")
    (root / "fake" / "truncated.mp4").write_bytes((root / "real" / "a.mp4").read_bytes()[:300])
    (root / "fake" / "text.mp4").write_text("this is not a video\n")
    (root / "real" / "empty.mkv").write_bytes(b"")
    return root


def test_loader_decodes_real_media_and_skips_bad_ones(media_root, caplog):
    samples = discover(media_root, labels="detect")
    assert len(samples) == 8
    transform = VideoTransform(resize_shortest=32, crop=32, mean=[0.5] * 3, std=[0.5] * 3)
    ds = VideoDataset(samples, LabelSet.load("detect"), num_frames=8, sampling="consecutive", transform=transform)
    loader = make_loader(ds, batch_size=3, shuffle=True, workers=2, seed=2024)
    with caplog.at_level(logging.WARNING, logger="mmvgm.data"):
        for _ in range(2):
            got = {}
            for batch in loader:
                if batch.clips is not None:
                    assert batch.clips.dtype == torch.uint8 and batch.clips.shape[1:] == (8, 3, 32, 32)
                for clip, label, path in zip(batch.clips if batch.clips is not None else [], batch.labels,
                                             batch.paths):
                    got[Path(path).name] = (clip, int(label))
            assert set(got) == {"a.mp4", "b.avi", "c", "d.webm", "e.gif"}
    assert {Path(p).name for p in loader.skip_log.bad} == {"truncated.mp4", "text.mp4", "empty.mkv"}
    for name in ("truncated.mp4", "text.mp4", "empty.mkv"):
        assert caplog.text.count(name) == 1, name  # reported once over two epochs and two workers
    assert "0 bytes" in loader.skip_log.bad[str(media_root / "real" / "empty.mkv")]
    assert got["a.mp4"][1] == 0 and got["d.webm"][1] == 1
    # normalisation happens batched after loading, on whatever device the model uses
    batch = next(iter(make_loader(VideoDataset(samples[:2], {"real": 0, "fake": 1}, num_frames=8,
                                               transform=transform), batch_size=2)))
    pixels = transform.normalize(batch.clips)
    assert pixels.dtype == torch.float32 and -1.0 - 1e-5 <= pixels.min() and pixels.max() <= 1.0 + 1e-5


def test_dataset_uses_the_sampling_it_is_given(media_root):
    path = media_root / "real" / "c"
    samples = [s for s in discover(media_root) if s.path == str(path)]
    ds = VideoDataset(samples, {"real": 0, "fake": 1}, num_frames=3, sampling="stride:4")
    clip = ds[0].pixels
    assert clip.shape == (3, 3, 48, 64)  # no transform: (T,C,H,W) at source size
    assert [frame_index(f.permute(1, 2, 0).numpy()) for f in clip] == [0, 4, 8]


def test_split_of_a_real_folder_is_deterministic(media_root):
    samples = [s for s in discover(media_root)]
    assert split_samples(samples, seed=3) == split_samples(samples, seed=3)
