from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
import torch

from mmvgm.data.dataset import Batch, ClipItem, SkipLog, VideoDataset, collate_items, make_loader
from mmvgm.data.labels import LabelSet
from mmvgm.errors import InputError
from mmvgm.io.discovery import Sample
from tests.io.conftest import needs_torchcodec
from tests.media import make_frames, write_video
from tests.data.conftest import npy_reader


# -- dataset + loader with a stand-in reader --------------------------------------------------
def _npy_dataset(tmp_path: Path, bad: int = 1) -> list:
    samples = []
    for i in range(6):
        path = tmp_path / f"c{i}.npy"
        np.save(path, np.full((4, 20, 30, 3), i * 10, np.uint8))
        samples.append(Sample(str(path), "real" if i % 2 else "fake"))
    for i in range(bad):
        path = tmp_path / f"bad{i}.npy"
        path.write_text("not a clip")
        samples.append(Sample(str(path), "fake"))
    return samples


def test_dataset_items_are_uint8_and_geometric_applied(tmp_path):
    from mmvgm.data.transforms import VideoTransform

    t = VideoTransform(resize_shortest=16, crop=16, mean=[0.5] * 3, std=[0.5] * 3)
    ds = VideoDataset(_npy_dataset(tmp_path), LabelSet.load("detect"), num_frames=4, transform=t, reader=npy_reader)
    item = ds[1]
    clip, label, path = item.pixels, item.label, item.path
    assert clip.dtype == torch.uint8 and clip.shape == (4, 3, 16, 16) and label == 0 and path.endswith("c1.npy")
    assert int(clip[0, 0, 5, 5]) == 10 and item.ok and item.padded == 0
    bad = ds[6]
    assert isinstance(bad, ClipItem) and not bad.ok and bad.error == "not a clip" and bad.pixels is None
    assert bad.label == 1  # an unreadable file keeps its label, for the report


def test_dataset_decodes_requests_by_path_for_the_decoding_workers(tmp_path):
    """A predictor's workers send ``(path, frames, sampling)``: the same dataset decodes it."""
    samples = _npy_dataset(tmp_path, bad=0)
    ds = VideoDataset(num_frames=4, reader=npy_reader)
    item = ds[(samples[2].path, 3, "consecutive")]
    assert item.ok and item.label == -1 and item.pixels.shape == (3, 3, 20, 30)
    labelled = VideoDataset(samples, {"real": 0, "fake": 1}, num_frames=3, reader=npy_reader)[2]
    assert torch.equal(item.pixels, labelled.pixels)


def test_dataset_refuses_unknown_labels(tmp_path):
    with pytest.raises(InputError, match="not one of the model's labels: real, fake"):
        VideoDataset([Sample(str(tmp_path / "x.mp4"), "lavie")], LabelSet.load("detect"))


def test_collate_stacks_the_good_and_keeps_every_item_in_order():
    good = ClipItem("a.mp4", 1, torch.zeros(2, 3, 4, 4, dtype=torch.uint8), padded=1)
    batch = collate_items([good, ClipItem("b.mp4", 0, error="truncated"), good])
    assert isinstance(batch, Batch) and batch.size == 2 and batch.clips.shape == (2, 2, 3, 4, 4)
    assert batch.labels.tolist() == [1, 1] and batch.skipped == [("b.mp4", "truncated")]
    assert batch.padded == [1, 1] and [it.path for it in batch.items] == ["a.mp4", "b.mp4", "a.mp4"]
    assert all(it.pixels is None for it in batch.items)  # the items travel without their pixels
    empty = collate_items([ClipItem("b.mp4", error="truncated")])
    assert empty.clips is None and empty.size == 0 and empty.skipped == [("b.mp4", "truncated")]
    with pytest.raises(InputError, match="different shapes"):
        collate_items([good, ClipItem("c.mp4", 0, torch.zeros(2, 3, 5, 4, dtype=torch.uint8))])


def test_skip_log_reports_each_bad_file_once_through_say():
    said = []
    log = SkipLog(say=said.append)
    assert log.update([("a", "x"), ("b", "y")]) == [("a", "x"), ("b", "y")]
    assert log.update([("a", "x")]) == []
    assert said == ["skipping unreadable file a: x", "skipping unreadable file b: y"]
    assert log.to_json() == [{"path": "a", "reason": "x"}, {"path": "b", "reason": "y"}] and len(log) == 2


def test_loader_with_workers_skips_bad_files_and_reports_each_once(tmp_path, caplog):
    samples = _npy_dataset(tmp_path, bad=2)
    ds = VideoDataset(samples, {"real": 0, "fake": 1}, num_frames=4, reader=npy_reader)
    loader = make_loader(ds, batch_size=3, shuffle=True, workers=2, seed=7)
    with caplog.at_level(logging.WARNING, logger="mmvgm.data"):
        for _ in range(2):  # two epochs: the epoch survives and nothing is reported twice
            seen = [p for batch in loader for p in batch.paths]
            assert sorted(seen) == sorted(s.path for s in samples[:6])
    assert set(loader.skip_log.bad) == {samples[6].path, samples[7].path}
    assert caplog.text.count("bad0.npy") == 1 and caplog.text.count("bad1.npy") == 1


def test_loader_order_is_seeded(tmp_path):
    ds = VideoDataset(_npy_dataset(tmp_path, bad=0), {"real": 0, "fake": 1}, num_frames=4, reader=npy_reader)
    order = lambda seed: [p for b in make_loader(ds, 2, shuffle=True, seed=seed) for p in b.paths]  # noqa: E731
    assert order(1) == order(1)
    assert order(1) != order(2) or order(1) != order(3)


_LOADERS = """
import json, sys
from mmvgm.data.dataset import VideoDataset, make_loader
from mmvgm.io.discovery import Sample
seen = []
for passes in json.loads(sys.argv[2]):
    ds = VideoDataset([Sample(sys.argv[1], None)] * 2, num_frames=4)
    assert [len(b.paths) for b in make_loader(ds, 2, workers=1, passes=passes)] == [2]
    seen.append("torchcodec.decoders" in sys.modules)
print(json.dumps(seen))
"""


@needs_torchcodec
def test_a_loader_loads_torchcodec_for_its_workers_only_for_enough_reads(tmp_path):
    """One pass over a few files (an eval of a small test set) reads with PyAV, without paying
    torchcodec's import; enough passes (training's epochs), or an unknown number, load it."""
    import json
    import subprocess
    import sys

    video = write_video(tmp_path / "v.mp4", make_frames(8))

    def imported(passes):
        proc = subprocess.run([sys.executable, "-c", _LOADERS, str(video), json.dumps(passes)], capture_output=True,
                              text=True, timeout=180, cwd=Path(__file__).resolve().parents[2])
        assert proc.returncode == 0, proc.stderr
        return json.loads(proc.stdout.strip().splitlines()[-1])

    from mmvgm.runtime.workers import TORCHCODEC_MIN_FILES_PER_WORKER as MIN

    # Two files, one worker, per process (an import stays): 2 reads, just too few, just enough.
    assert imported([1, MIN // 2 - 1, MIN // 2]) == [False, False, True]
    assert imported([None]) == [True]
