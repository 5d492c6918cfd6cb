from __future__ import annotations

import logging
import shutil
from pathlib import Path

import pytest

from mmvgm.data.labels import require_all_classes
from mmvgm.data import splits as splits_module
from mmvgm.data.splits import (allocate, check_duplicates, content_hash, find_copies, split_counts, split_samples,
                               summarize)
from mmvgm.errors import InputError
from mmvgm.io.discovery import Sample, discover
from tests.data.conftest import touch_video


def _samples(counts: dict) -> list:
    return [Sample(f"/data/{label}/{i:03d}.mp4", label) for label, n in counts.items() for i in range(n)]


def test_stratified_ratios_and_every_class_everywhere():
    samples = _samples({"a": 50, "b": 20, "c": 3, "d": 10})
    splits = split_samples(samples, duplicates="off")
    table = split_counts(splits, ["a", "b", "c", "d"])
    assert table["train"] == {"a": 40, "b": 16, "c": 1, "d": 8}
    assert table["val"] == {"a": 5, "b": 2, "c": 1, "d": 1}
    assert table["test"] == {"a": 5, "b": 2, "c": 1, "d": 1}
    for name, items in splits.items():
        assert all(s.split == name for s in items)
        require_all_classes(items, ["a", "b", "c", "d"], where=name)
    flat = sorted(s.path for items in splits.values() for s in items)
    assert flat == sorted(s.path for s in samples)  # a partition: nothing lost, nothing twice
    assert "label" in summarize(splits) and "train" in summarize(splits)


def test_deterministic_independent_of_input_order_and_other_classes():
    samples = _samples({"a": 30, "b": 12})
    first = split_samples(samples, seed=2024, duplicates="off")
    again = split_samples(list(reversed(samples)), seed=2024, duplicates="off")
    assert first == again
    other_seed = split_samples(samples, seed=1, duplicates="off")
    assert first["test"] != other_seed["test"]
    with_new_class = split_samples(samples + _samples({"z": 9}), seed=2024, duplicates="off")
    assert [s for s in with_new_class["test"] if s.label == "a"] == [s for s in first["test"] if s.label == "a"]


def test_fixed_golden_split():
    # guards against silent changes of the shuffle (numpy PCG64 is stable across platforms)
    splits = split_samples(_samples({"a": 10}), ratios=(0.8, 0.2), duplicates="off")
    assert [Path(s.path).name for s in splits["val"]] == GOLDEN_VAL and splits["test"] == []


GOLDEN_VAL = ["004.mp4", "008.mp4"]  # recorded once; must never change


def test_explicit_split_honoured_rest_split_by_ratio():
    fixed = [Sample("/d/a/fixed0.mp4", "a", "test"), Sample("/d/a/fixed1.mp4", "a", "train")]
    splits = split_samples(fixed + _samples({"a": 10}), duplicates="off")
    assert Sample("/d/a/fixed0.mp4", "a", "test") in splits["test"]
    assert Sample("/d/a/fixed1.mp4", "a", "train") in splits["train"]
    assert sum(len(v) for v in splits.values()) == 12
    only_fixed = split_samples(fixed, duplicates="off")
    assert [len(only_fixed[k]) for k in ("train", "val", "test")] == [1, 0, 1]


def test_tiny_classes_warn(caplog):
    with caplog.at_level(logging.WARNING, logger="mmvgm.data"):
        splits = split_samples(_samples({"a": 2, "b": 10}), duplicates="off")
    assert split_counts(splits)["test"]["a"] == 0 and "only 2 sample(s)" in caplog.text


@pytest.mark.parametrize("n, fractions, expected", [
    (10, (0.8, 0.1, 0.1), (8, 1, 1)),
    (3, (0.8, 0.1, 0.1), (1, 1, 1)),
    (5, (0.8, 0.2, 0.0), (4, 1, 0)),
    (1, (0.8, 0.1, 0.1), (1, 0, 0)),
    (7, (0.5, 0.25, 0.25), (3, 2, 2)),  # largest remainder
    (5, (0.8, 0.1, 0.1), (3, 1, 1)),
])
def test_allocate(n, fractions, expected):
    counts = allocate(n, dict(zip(("train", "val", "test"), fractions)))
    assert tuple(counts.values()) == expected and sum(counts.values()) == n


@pytest.mark.parametrize("ratios, fragment", [
    ((0.5, 0.2, 0.2), "sum to 1"), ((1.2, -0.2), "non-negative"), ((1.0,), "(train, val)"),
    ({"train": 0.9, "holdout": 0.1}, "unknown split"), ((0.0, 1.0), "train ratio"),
    ("abc", "must be numbers"), (0.7, "must be numbers"), ({"train": "most"}, "must be numbers"),
])
def test_bad_ratios(ratios, fragment):
    with pytest.raises(InputError, match=fragment.replace("(", r"\(").replace(")", r"\)")):
        split_samples(_samples({"a": 4}), ratios=ratios)


# -- duplicates by content --------------------------------------------------------------------
@pytest.fixture
def dup_dataset(tmp_path: Path) -> Path:
    root = tmp_path / "data"
    for label in ("real", "fake"):
        for i in range(10):
            touch_video(root / label / f"{label}{i}.mp4", content=f"{label}-{i}-unique".encode())
    # a renamed copy of real0 under another label, and a copied frame directory
    shutil.copy(root / "real" / "real0.mp4", root / "fake" / "copy_of_real0.mp4")
    for d in ("f1", "f2"):
        for j in (1, 2, 10):
            touch_video(root / "real" / d / f"frame_{j}.png", content=f"frame{j}".encode())
    return root


def _force_apart(samples: list, a: str, b: str) -> list:
    return [Sample(s.path, s.label, "train" if s.path.endswith(a) else "test" if s.path.endswith(b) else s.split)
            for s in samples]


def test_duplicates_across_splits_warn_and_refuse(dup_dataset, caplog):
    samples = _force_apart(discover(dup_dataset), "/real0.mp4", "/copy_of_real0.mp4")
    samples = _force_apart(samples, "f1", "f2")
    with caplog.at_level(logging.WARNING, logger="mmvgm.data"):
        split_samples(samples, duplicates="warn")
    assert "copy_of_real0.mp4" in caplog.text and "f2" in caplog.text
    with pytest.raises(InputError, match="same content in train and test: .*real0.mp4 and .*copy_of_real0.mp4"):
        split_samples(samples, duplicates="refuse")


def test_duplicates_in_same_split_are_fine_and_distinct_content_passes(dup_dataset):
    samples = [s for s in discover(dup_dataset) if "copy_of" not in s.path and "f2" not in s.path]
    assert check_duplicates(split_samples(samples, duplicates="off"), policy="refuse") == []
    same_split = [Sample(s.path, s.label, "train") for s in discover(dup_dataset)]
    assert check_duplicates({"train": same_split}, policy="refuse") == []


def test_copies_under_two_labels_are_found_whatever_the_splits(dup_dataset, monkeypatch):
    samples = discover(dup_dataset)  # no split: copy_of_real0 (fake) and real0 (real) are one video
    copies = find_copies(samples)
    assert copies.across_splits == []
    assert [(a.label, b.label, Path(a.path).name, Path(b.path).name) for a, b in copies.across_labels] == \
        [("fake", "real", "copy_of_real0.mp4", "real0.mp4")]
    apart = find_copies(_force_apart(samples, "/real0.mp4", "/copy_of_real0.mp4"))
    assert len(apart.across_splits) == 1 and len(apart.across_labels) == 1
    hashed = []
    monkeypatch.setattr(splits_module, "content_hash", lambda p: hashed.append(p) or p)
    assert find_copies(samples, labels=False) == ([], [])  # one split and no labels asked: nothing to hash
    assert hashed == []
    find_copies(samples)
    names = {Path(p).name for p in hashed}  # sizes that collide under two labels; not f1/f2 (one label)
    assert {"real0.mp4", "copy_of_real0.mp4"} <= names and not names & {"f1", "f2"}


def test_content_hash_of_frame_dirs_ignores_names_but_not_order(tmp_path):
    a, b, c = tmp_path / "a", tmp_path / "b", tmp_path / "c"
    for j in (1, 2, 10):
        touch_video(a / f"frame_{j}.png", content=f"x{j}".encode())
        touch_video(b / f"img{j:04d}.png", content=f"x{j}".encode())
        touch_video(c / f"frame_{j}.png", content=f"x{13 - j}".encode())
    assert content_hash(a) == content_hash(b) != content_hash(c)
