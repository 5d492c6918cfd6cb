import pytest

from mmvgm.config import apply_overrides, check_keys, configs_dir, load_config, merge, resolve_config
from mmvgm.errors import ConfigError, InputError


def test_shipped_label_configs_resolve_by_name():
    assert resolve_config("vgmshield9", "labels") == configs_dir() / "labels" / "vgmshield9.yaml"
    cfg = load_config("vgmshield9", "labels")
    assert [c["name"] for c in cfg["classes"]][0] == "hotshot-xl"
    assert len(cfg["classes"]) == 9


def test_unknown_config_name_suggests_the_closest():
    with pytest.raises(ConfigError, match="did you mean 'vgmshield9'"):
        resolve_config("vgmshield", "labels")


def test_missing_config_file_is_an_input_error(tmp_path):
    with pytest.raises(InputError):
        resolve_config(tmp_path / "nope.yaml", "labels")


def test_base_inheritance_and_deep_merge(tmp_path):
    (tmp_path / "parent.yaml").write_text("a: {x: 1, y: 2}\nb: 3\n")
    (tmp_path / "child.yaml").write_text(f"base: {tmp_path / 'parent.yaml'}\na: {{y: 20}}\n")
    assert load_config(tmp_path / "child.yaml", "train") == {"a": {"x": 1, "y": 20}, "b": 3}
    assert merge({"a": [1]}, {"a": [2]}) == {"a": [2]}


def test_invalid_yaml_is_one_clear_error(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("a: [1, 2\n")
    with pytest.raises(ConfigError, match="invalid YAML") as info:
        load_config(bad, "train")
    assert "\n" not in str(info.value)


def test_overrides_skip_unset_values_and_create_nesting():
    cfg = apply_overrides({"train": {"lr": 1e-5}}, {"train.lr": 3e-4, "train.epochs": None, "x.y": 1})
    assert cfg == {"train": {"lr": 3e-4}, "x": {"y": 1}}


def test_typo_in_keys_is_refused_with_a_hint():
    with pytest.raises(ConfigError, match="unknown key 'epochz'.*did you mean 'epochs'"):
        check_keys({"epochz": 3}, ["epochs", "lr"], where="train config")


def test_base_loop_is_a_config_error(tmp_path):
    (tmp_path / "a.yaml").write_text(f"base: {tmp_path / 'b.yaml'}\nx: 1\n")
    (tmp_path / "b.yaml").write_text(f"base: {tmp_path / 'a.yaml'}\ny: 2\n")
    with pytest.raises(ConfigError, match=r"chain loops: a.yaml -> b.yaml -> a.yaml"):
        load_config(tmp_path / "a.yaml", "train")
    (tmp_path / "self.yaml").write_text(f"base: {tmp_path / 'self.yaml'}\n")
    with pytest.raises(ConfigError, match="chain loops"):
        load_config(tmp_path / "self.yaml", "train")


def test_binary_file_as_config_is_a_config_error(tmp_path):
    weights = tmp_path / "model.safetensors"
    weights.write_bytes(b"\x80\xff\x00binary")
    with pytest.raises(ConfigError, match="not a YAML file"):
        load_config(weights, "train")


def test_relative_base_is_the_file_beside_the_config(tmp_path, monkeypatch):
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "common.yaml").write_text("lr: 1\nepochs: 2\n")
    (tmp_path / "sub" / "child.yaml").write_text("base: common.yaml\nepochs: 3\n")
    (tmp_path / "common.yaml").write_text("lr: 99\n")  # the working directory's, not the config's
    monkeypatch.chdir(tmp_path)
    assert load_config(tmp_path / "sub" / "child.yaml", "train") == {"lr": 1, "epochs": 3}


def test_yaml_safe_makes_checkpoint_and_lvd_metadata_dumpable():
    import os
    from pathlib import Path

    import numpy as np
    import torch
    import yaml

    from mmvgm.config import yaml_safe

    class Folder(os.PathLike):
        def __fspath__(self):
            return "/data/x"

    meta = {"shape": (8, 3), 1: np.float32(0.5), "std": np.array([0.2, 0.3]), "t": torch.tensor([1, 2]),
            "path": Path("/w/v.mp4"), "other": Folder(), "nested": [{"k": np.int64(3)}]}
    plain = yaml_safe(meta)
    assert plain == {"shape": [8, 3], "1": 0.5, "std": [0.2, 0.3], "t": [1, 2], "path": "/w/v.mp4",
                     "other": "/data/x", "nested": [{"k": 3}]}
    assert yaml.safe_load(yaml.safe_dump(plain)) == plain
