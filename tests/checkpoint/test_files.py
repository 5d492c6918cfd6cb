import json

import numpy as np
import pytest
import torch
from torch import nn

from mmvgm.checkpoint.files import (CONFIG_NAME, WEIGHTS_NAME, load_checkpoint, load_train_state,
                                     pack_state, read_meta, save_checkpoint, unpack_state)
from mmvgm.checkpoint.meta import FORMAT_VERSION, CheckpointMeta
from mmvgm.errors import CheckpointError


class Toy(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.lin = nn.Linear(cfg["d"], 3)
        self.head = self.lin  # tied/shared parameters must still save

    def forward(self, x):
        return self.lin(x)


def toy_builder(cfg):
    return Toy(cfg)


def toy_meta(d, **changes):
    return CheckpointMeta(model_cfg={"d": d}, task="trace", labels=["a", "b", "c"], preprocess={}, **changes)


def test_round_trip_identical_outputs(tmp_path):
    torch.manual_seed(0)
    model = Toy({"d": 5})
    meta = toy_meta(5, calibration={"temperature": 1.5, "threshold": 0.3, "open_set_threshold": None})
    save_checkpoint(tmp_path / "ck", model, meta)
    loaded, meta2 = load_checkpoint(tmp_path / "ck", builder=toy_builder)
    x = torch.randn(4, 5)
    assert torch.equal(model(x), loaded(x))
    assert meta2.calibration.temperature == 1.5 and meta2.format_version == FORMAT_VERSION
    assert meta2 == meta
    # overwriting keeps one complete directory and no temp folders
    save_checkpoint(tmp_path / "ck", model, meta.replace(task="detect"))
    assert read_meta(tmp_path / "ck").task == "detect"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ck"]


def test_missing_or_incomplete_checkpoints(tmp_path):
    with pytest.raises(CheckpointError, match="not found"):
        load_checkpoint(tmp_path / "nope", builder=toy_builder)
    save_checkpoint(tmp_path / "ck", Toy({"d": 2}), toy_meta(2))
    (tmp_path / "ck" / WEIGHTS_NAME).unlink()
    with pytest.raises(CheckpointError, match="model.safetensors is missing"):
        load_checkpoint(tmp_path / "ck", builder=toy_builder)
    (tmp_path / "ck" / CONFIG_NAME).unlink()
    with pytest.raises(CheckpointError, match="mmvgm.yaml is missing"):
        load_checkpoint(tmp_path / "ck", builder=toy_builder)


def test_save_checkpoint_takes_only_the_typed_meta(tmp_path):
    with pytest.raises(TypeError, match="CheckpointMeta"):
        save_checkpoint(tmp_path / "ck", Toy({"d": 2}), {"model_cfg": {"d": 2}})
    assert not (tmp_path / "ck").exists()


def test_mismatched_weights_name_the_keys(tmp_path):
    save_checkpoint(tmp_path / "ck", Toy({"d": 2}), toy_meta(2))
    with pytest.raises(CheckpointError, match="do not fit|do not match"):
        load_checkpoint(tmp_path / "ck", builder=lambda cfg: Toy({"d": 3}))
    with pytest.raises(CheckpointError, match="missing extra.bias, extra.weight, unexpected head.bias"):
        load_checkpoint(tmp_path / "ck",
                        builder=lambda cfg: nn.ModuleDict({"lin": nn.Linear(2, 3), "extra": nn.Linear(1, 1)}))


def test_corrupt_weights_are_a_checkpoint_error(tmp_path):
    save_checkpoint(tmp_path / "ck", Toy({"d": 2}), toy_meta(2))
    (tmp_path / "ck" / WEIGHTS_NAME).write_bytes(b"garbage")
    with pytest.raises(CheckpointError, match="cannot read"):
        load_checkpoint(tmp_path / "ck", builder=toy_builder)


def test_train_state_round_trip_without_pickle(tmp_path):
    model = Toy({"d": 4})
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    model(torch.randn(2, 4)).sum().backward()
    opt.step()
    import random
    state = {"optimizer": opt.state_dict(), "torch_rng": torch.get_rng_state(),
             "numpy_rng": np.random.get_state(), "python_rng": random.getstate(), "epoch": 3}
    save_checkpoint(tmp_path / "ck", model, toy_meta(4), train_state=state)
    assert json.loads((tmp_path / "ck" / "train_state.json").read_text())  # plain JSON
    back = load_train_state(tmp_path / "ck")
    assert back["epoch"] == 3 and back["python_rng"] == state["python_rng"]
    assert torch.equal(back["torch_rng"], state["torch_rng"])
    np.testing.assert_array_equal(back["numpy_rng"][1], state["numpy_rng"][1])
    opt2 = torch.optim.AdamW(Toy({"d": 4}).parameters(), lr=1e-3)
    opt2.load_state_dict(back["optimizer"])
    for k, v in opt.state_dict()["state"][0].items():
        assert torch.equal(v, opt2.state_dict()["state"][0][k])
    assert load_train_state(tmp_path / "missing") is None


def test_pack_state_refuses_unknown_objects():
    with pytest.raises(CheckpointError):
        pack_state({"f": object()})
    tensors, skel = pack_state({1: (1, "a", None), "x": [np.float32(2.5)]})
    assert unpack_state(tensors, skel) == {1: (1, "a", None), "x": [2.5]}


def test_checkpoint_folder_is_readable_by_others_like_any_new_folder(tmp_path):
    import os
    import stat

    old = os.umask(0o022)
    try:
        save_checkpoint(tmp_path / "ck", Toy({"d": 2}), toy_meta(2))
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "ck").stat().st_mode) == 0o755
