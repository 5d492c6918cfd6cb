import shutil

import numpy as np
import pytest

from mmvgm.errors import DecodeError, LimitError
import mmvgm.io.frames_dir
from mmvgm.io import probe, read_clip, read_clips
from mmvgm.io.frames_dir import list_frames, natural_key
from tests.io.conftest import HEIGHT, N_FRAMES, WIDTH, png_with_claimed_size
from tests.media import frame_index, write_frame_dir


def test_natural_sort():
    names = ["frame_10.png", "frame_2.png", "frame_1.png", "Frame_3.png"]
    assert sorted(names, key=natural_key) == ["frame_1.png", "frame_2.png", "Frame_3.png",
                                              "frame_10.png"]


@pytest.mark.parametrize("sampling, expected", [("consecutive", [8, 9, 10, 11]),
                                                ("stride:3", [8, 11, 14, 17])])
def test_frame_directory_in_natural_order(frame_dir, sampling, expected):
    clip = read_clip(frame_dir, 4, sampling, start=8)
    assert [frame_index(f) for f in clip] == expected  # frame_10 after frame_9, not after frame_1


def test_read_clips_reads_each_frame_image_once(frame_dir, monkeypatch):
    reads = []
    real = mmvgm.io.frames_dir.read_image
    monkeypatch.setattr(mmvgm.io.frames_dir, "read_image",
                        lambda path, **kw: reads.append(path) or real(path, **kw))
    clips = read_clips(frame_dir, 4, starts=[0, 2, 3])
    assert [[frame_index(f) for f in clip] for clip in clips] == [[0, 1, 2, 3], [2, 3, 4, 5], [3, 4, 5, 6]]
    assert [c.indices.tolist() for c in clips] == [[0, 1, 2, 3], [2, 3, 4, 5], [3, 4, 5, 6]]
    assert len(reads) == len(set(reads)) == 7


def test_jpg_frames_and_hidden_files(tmp_path, frames):
    folder = write_frame_dir(tmp_path / "jpgs", frames[:12], ext="jpg")
    (folder / ".DS_Store").write_bytes(b"\x00\x01junk")
    (folder / "._frame_1.jpg").write_bytes(b"\x00\x05AppleDouble")
    (folder / "notes.txt").write_text("not a frame")
    assert len(list_frames(folder)) == 12
    clip = read_clip(folder, 16)
    assert clip.shape == (16, HEIGHT, WIDTH, 3) and clip.padded == 4
    assert [frame_index(f) for f in clip[:12]] == list(range(12))
    info = probe(folder)
    assert (info.frames, info.width, info.height, info.fps, info.codec) == (12, WIDTH, HEIGHT, None,
                                                                         "jpeg frames")


def test_frame_of_another_size_is_refused(tmp_path, frames):
    folder = write_frame_dir(tmp_path / "mixed", frames[:3])
    import cv2

    cv2.imwrite(str(folder / "frame_2.png"), np.zeros((10, 10, 3), np.uint8))
    with pytest.raises(DecodeError, match="differs from the first"):
        read_clip(folder, 3)


def test_corrupt_frame_names_the_file(tmp_path, frames):
    folder = write_frame_dir(tmp_path / "bad", frames[:3])
    (folder / "frame_2.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    with pytest.raises(DecodeError) as caught:
        read_clip(folder, 3)
    assert caught.value.path.endswith("frame_2.png")


@pytest.mark.parametrize("side, match", [(12000, "12000x12000"), (20000, "400.0 MP")])
def test_huge_frame_is_refused_before_decoding(tmp_path, frame_dir, monkeypatch, side, match):
    folder = tmp_path / "huge"
    folder.mkdir()
    png_with_claimed_size(frame_dir / "frame_1.png", folder / "frame_1.png", side, side)
    shutil.copy(frame_dir / "frame_2.png", folder / "frame_2.png")

    from PIL import ImageFile

    def no_decoding(self, *args, **kwargs):
        raise AssertionError("pixels were decoded before the size check")

    monkeypatch.setattr(ImageFile.ImageFile, "load", no_decoding)
    with pytest.raises(LimitError, match=match):
        read_clip(folder, 2)
    with pytest.raises(LimitError, match=match):
        probe(folder)


def test_frame_budget_counts_files(frame_dir):
    with pytest.raises(LimitError, match="frame budget"):
        read_clip(frame_dir, 2, max_frames=N_FRAMES - 1)
