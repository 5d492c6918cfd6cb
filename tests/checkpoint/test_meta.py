"""CheckpointMeta: one schema, written and read by the same code; old and future formats."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from mmvgm.checkpoint.calibration import Calibration
from mmvgm.checkpoint.meta import CONFIG_NAME, FORMAT_VERSION, CheckpointMeta
from mmvgm.errors import CheckpointError

WRITTEN_V1 = Path(__file__).parent / "fixtures" / "written_v1"


def _meta(**changes) -> CheckpointMeta:
    values = dict(model_cfg={"backbone": "videomae_tiny", "task": "joint", "num_classes": 2}, task="joint",
                  labels=["real", "a", "b"], preprocess={"crop": 32}, frames=8,
                  calibration=Calibration(temperature=2.0, threshold=0.4, open_set_threshold=0.3))
    values.update(changes)
    return CheckpointMeta(**values)


def test_save_then_load_is_the_same_object(tmp_path):
    meta = _meta(seed=7, data={"n": 3}, val_metrics={"auc": 0.9}, precision="bf16")
    meta.save(tmp_path)
    back = CheckpointMeta.load(tmp_path)
    assert back == meta
    assert isinstance(back.calibration, Calibration) and back.calibration.threshold == 0.4
    text = (tmp_path / CONFIG_NAME).read_text()
    assert text.startswith(f"format_version: {FORMAT_VERSION}\n")


def test_sources_and_labels_follow_the_task():
    assert _meta().source_labels == ["a", "b"]
    assert _meta(task="trace", labels=["a", "b"]).source_labels == ["a", "b"]
    assert _meta(task="detect", labels=["real", "fake"]).source_labels == []
    with pytest.raises(CheckpointError, match="exactly one 'real'"):
        _ = _meta(labels=["a", "b", "c"]).source_labels


def test_a_future_format_is_refused_in_one_line(tmp_path):
    data = _meta().to_dict()
    data["format_version"] = FORMAT_VERSION + 1
    (tmp_path / CONFIG_NAME).write_text(yaml.safe_dump(data))
    with pytest.raises(CheckpointError, match="newer mmvgm") as err:
        CheckpointMeta.load(tmp_path)
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("key", ["model_cfg", "task", "preprocess"])
def test_missing_required_keys_are_named(tmp_path, key):
    data = _meta().to_dict()
    del data[key]
    (tmp_path / CONFIG_NAME).write_text(yaml.safe_dump(data))
    with pytest.raises(CheckpointError, match=f"no '{key}'"):
        CheckpointMeta.load(tmp_path)


@pytest.mark.parametrize("bad", [{"task": "segment"}, {"precision": "int8"}])
def test_unknown_task_or_precision_is_a_checkpoint_error(bad):
    with pytest.raises(CheckpointError, match="unknown"):
        _meta(**bad)


def test_invalid_yaml_is_one_checkpoint_error(tmp_path):
    (tmp_path / CONFIG_NAME).write_text("model_cfg: [unclosed\n")
    with pytest.raises(CheckpointError, match="invalid mmvgm.yaml"):
        CheckpointMeta.load(tmp_path)


def test_a_checkpoint_written_before_the_schema_still_loads_and_scores_the_same(tmp_path):
    """``written_v1`` was saved by ``mmvgm train`` as it stood before CheckpointMeta (format 1,
    no precision). It must load, with its precision not recorded, and give the probabilities it
    gave then."""
    from mmvgm.predict.predictor import Predictor

    ckpt = shutil.copytree(WRITTEN_V1, tmp_path / "ck")
    meta = CheckpointMeta.load(ckpt)
    assert meta.precision is None and meta.task == "joint" and meta.source_labels == ["lavie", "show-1"]
    predictor = Predictor.from_checkpoint(ckpt, device="cpu")
    expected = json.loads((WRITTEN_V1 / "expected_probabilities.json").read_text())
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (2, predictor.frames, 3, 32, 32), generator=g, dtype=torch.uint8)
    got = predictor.probabilities(x)
    for key, values in expected.items():
        np.testing.assert_allclose(got[key], np.asarray(values), atol=1e-6)
    # saved again, it is the current format and reads back equal
    meta.save(tmp_path / "ck")
    assert CheckpointMeta.load(tmp_path / "ck") == meta
