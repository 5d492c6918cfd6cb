from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest
import torch

from mmvgm.data.dataset import (Batch, BadSample, Sample, VideoDataset, collate_skip_bad, discover, make_loader,
                                 write_manifest)
from mmvgm.data.labels import LabelSet
from mmvgm.errors import InputError
from tests.data.conftest import npy_reader, touch_video


# -- folder layout ---------------------------------------------------------------------------
def test_folder_discovery_recursive_with_frame_dirs(folder_dataset, caplog):
    with caplog.at_level(logging.WARNING, logger="mmvgm.data"):
        samples = discover(folder_dataset)
    rel = sorted((Path(s.path).relative_to(folder_dataset).as_posix(), s.label) for s in samples)
    assert ("fake/nested/deeper/x.webm", "fake") in rel
    assert ("real/frames_a", "real") in rel
    assert not any(p.endswith((".txt", ".hidden.mp4", "thumb.jpg")) or "frame_0" in p for p, _ in rel)
    assert ("fake/nested/y.mov", "fake") in rel and not any(p.endswith("nested") for p, _ in rel)
    assert sum(1 for _, label in rel if label == "fake") == 9
    assert sum(1 for _, label in rel if label == "real") == 6
    assert samples == sorted(samples) and all(s.split is None for s in samples)
    assert "ignoring 1 image file" in caplog.text and "fake: ignoring 1 image file" in caplog.text


def test_folder_labels_checked_against_label_set(folder_dataset):
    assert len(discover(folder_dataset, labels="detect")) == 15
    touch_video(folder_dataset / "lavi" / "a.mp4")
    with pytest.raises(InputError) as err:
        discover(folder_dataset, labels="detect")
    assert "unknown label 'lavi'" in str(err.value) and "real, fake" in str(err.value)


@pytest.mark.parametrize("make, fragment", [
    (lambda root: root.mkdir(), "no label folders"),
    (lambda root: (root / "real").mkdir(parents=True), "no videos found"),
    (lambda root: None, "dataset not found"),
])
def test_folder_errors(tmp_path, make, fragment):
    root = tmp_path / "d"
    make(root)
    with pytest.raises(InputError, match=fragment):
        discover(root)


# -- manifests --------------------------------------------------------------------------------
def _videos(folder: Path, n: int = 3) -> list:
    return [touch_video(folder / f"v{i}.mp4") for i in range(n)]


def test_csv_manifest_relative_paths_and_split(tmp_path):
    _videos(tmp_path / "media")
    absolute = touch_video(tmp_path / "elsewhere" / "abs.mkv")
    manifest = tmp_path / "lists" / "m.csv"
    manifest.parent.mkdir()
    manifest.write_text("path,label,split,source\n../media/v0.mp4,real,train,x\n"
                        f"../media/v1.mp4,fake,Validation,y\n\n{absolute},fake,,z\n")
    samples = discover(manifest, labels="detect")
    by_name = {Path(s.path).name: s for s in samples}
    assert by_name["v0.mp4"] == Sample(str(tmp_path / "media" / "v0.mp4"), "real", "train")
    assert by_name["v1.mp4"].split == "val"
    assert by_name["abs.mkv"].split is None and by_name["abs.mkv"].path == str(absolute)


def test_jsonl_manifest(tmp_path):
    _videos(tmp_path)
    manifest = tmp_path / "m.jsonl"
    rows = [{"path": "v0.mp4", "label": "lavie"}, {"path": "v1.mp4", "label": "svd-xt", "split": "test"}]
    manifest.write_text("\n".join(json.dumps(r) for r in rows) + "\n\n")
    samples = discover(manifest, labels=LabelSet.load("vgmshield9"))
    assert [(Path(s.path).name, s.label, s.split) for s in samples] == [
        ("v0.mp4", "lavie", None), ("v1.mp4", "svd-xt", "test")]


@pytest.mark.parametrize("name, text, fragment", [
    ("m.csv", "path,label\nv0.mp4,lavi\n", "line 2: unknown label 'lavi' (did you mean 'lavie'?)"),
    ("m.csv", "path,lable\nv0.mp4,lavie\n", "needs a 'label' column (is 'lable' a typo?)"),
    ("m.csv", "path,label,split\nv0.mp4,lavie,holdout\n", "unknown split 'holdout'"),
    ("m.csv", "path,label\nv0.mp4,lavie\nv0.mp4,show-1\n", "listed twice with different labels"),
    ("m.csv", "path,label\nv0.mp4,\n", "line 2: empty label"),
    ("m.csv", "", "empty manifest"),
    ("m.jsonl", '{"path": "v0.mp4", "label": "lavie"}\n{oops\n', "line 2: invalid JSON"),
    ("m.jsonl", '["v0.mp4", "lavie"]\n', "expected a JSON object"),
    ("m.txt", "v0.mp4 lavie\n", "not a dataset"),
])
def test_manifest_errors_are_one_clear_line(tmp_path, name, text, fragment):
    _videos(tmp_path)
    manifest = tmp_path / name
    manifest.write_text(text)
    with pytest.raises(InputError) as err:
        discover(manifest, labels="vgmshield9")
    assert fragment in str(err.value) and "\n" not in str(err.value)


def test_manifest_missing_files_reported(tmp_path, caplog):
    _videos(tmp_path, 1)
    manifest = tmp_path / "m.csv"
    manifest.write_text("path,label\nv0.mp4,real\ngone.mp4,fake\nalso_gone.mp4,fake\n")
    with pytest.raises(InputError, match=r"2 listed file\(s\) do not exist: gone.mp4 \(line 3\)"):
        discover(manifest)
    with caplog.at_level(logging.WARNING, logger="mmvgm.data"):
        samples = discover(manifest, on_missing="warn")
    assert [Path(s.path).name for s in samples] == ["v0.mp4"] and "also_gone.mp4" in caplog.text


def test_write_manifest_round_trip(tmp_path):
    samples = [Sample(str(p), "real", "train") for p in _videos(tmp_path / "m")]
    out = write_manifest(tmp_path / "split.csv", samples, relative_to=tmp_path)
    assert out.read_text().splitlines()[1] == "m/v0.mp4,real,train"
    assert discover(out) == samples


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
    clip, label, path = ds[1]
    assert clip.dtype == torch.uint8 and clip.shape == (4, 3, 16, 16) and label == 0 and path.endswith("c1.npy")
    assert int(clip[0, 0, 5, 5]) == 10
    bad = ds[6]
    assert isinstance(bad, BadSample) and bad.reason == "not a clip"


def test_dataset_refuses_unknown_labels(tmp_path):
    with pytest.raises(InputError, match="not one of the model's labels: real, fake"):
        VideoDataset([Sample(str(tmp_path / "x.mp4"), "lavie")], LabelSet.load("detect"))


def test_collate_drops_bad_and_lists_them():
    good = (torch.zeros(2, 3, 4, 4, dtype=torch.uint8), 1, "a.mp4")
    batch = collate_skip_bad([good, BadSample("b.mp4", "truncated"), good])
    assert isinstance(batch, Batch) and batch.size == 2 and batch.clips.shape == (2, 2, 3, 4, 4)
    assert batch.labels.tolist() == [1, 1] and batch.skipped == [("b.mp4", "truncated")]
    empty = collate_skip_bad([BadSample("b.mp4", "truncated")])
    assert empty.clips is None and empty.size == 0 and empty.skipped == [("b.mp4", "truncated")]
    with pytest.raises(InputError, match="different shapes"):
        collate_skip_bad([good, (torch.zeros(2, 3, 5, 4, dtype=torch.uint8), 0, "c.mp4")])


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
