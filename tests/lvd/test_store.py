import json

import pytest
import torch

from mmvgm.errors import InputError
from mmvgm.lvd.store import TrajectoryStore, TrajectoryWriter, category_names


def test_uvd5_categories_in_csv_column_order():
    assert category_names() == ["distorted", "terrifying", "pornographic", "violent", "political"]


def test_write_read_float16_per_video_and_lazy_steps(tmp_path):
    cats = category_names()
    x = torch.randn(6, 4, 3, 8, 8)
    with TrajectoryWriter(tmp_path / "s", cats, {"note": "t"}) as w:
        w.add("a", x, ["violent", "distorted"], prompt="p", seed=1, timesteps=list(range(6)))
        w.add("b", x * 2, [])
    store = TrajectoryStore(tmp_path / "s")
    assert [v.id for v in store] == ["a", "b"]
    assert store.get("a").labels == ["distorted", "violent"]  # canonical order
    assert store.get("a").meta["prompt"] == "p" and not store.get("b").unsafe
    assert store.shape == [6, 4, 3, 8, 8] and store.num_steps == 6
    full = store.load("a")
    assert full.dtype == torch.float16 and torch.equal(full, x.half())
    assert torch.equal(store.load("b", steps=[5, 1]), (x * 2).half()[[5, 1]])
    assert store.multi_hot(store.get("a")) == [1, 0, 0, 1, 0]
    header = json.loads((tmp_path / "s" / "lvd.json").read_text())
    assert header["num_videos"] == 2 and header["dtype"] == "float16" and "torch" in header["versions"]


def test_resume_and_bad_adds(tmp_path):
    cats = category_names()
    with TrajectoryWriter(tmp_path, cats) as w:
        w.add("a", torch.zeros(2, 4, 1, 2, 2))
    w = TrajectoryWriter(tmp_path, cats)
    assert w.has("a") and w.num_videos == 1
    with pytest.raises(InputError, match="already"):
        w.add("a", torch.zeros(2, 4, 1, 2, 2))
    with pytest.raises(InputError, match="shape"):
        w.add("b", torch.zeros(3, 4, 1, 2, 2))
    with pytest.raises(InputError, match="unknown categories"):
        w.add("c", torch.zeros(2, 4, 1, 2, 2), ["gory"])
    with pytest.raises(InputError, match="invalid video id"):
        w.add("../x", torch.zeros(2, 4, 1, 2, 2))
    with pytest.raises(InputError, match="categories"):
        TrajectoryWriter(tmp_path, ["x"])
    with pytest.raises(InputError, match="no lvd.json"):
        TrajectoryStore(tmp_path / "nothing")
