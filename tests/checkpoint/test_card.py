"""The model card: hub metadata, and what a reader must learn from it."""
from __future__ import annotations

import copy

import pytest
from huggingface_hub import ModelCard

from mmvgm.checkpoint.card import CARD_MARKER, model_card, write_model_card
from mmvgm.checkpoint.files import read_meta
from tests.inference_helpers import make_checkpoint

METRICS = {"split": "test", "n": 40, "precision": "fp32", "task": "joint",
           "detect": {"accuracy": 0.925, "auc": 0.97, "ap": 0.96, "tpr_at_fpr_1": 0.5, "per_class": {"x": 1}},
           "trace": {"accuracy": 0.81, "macro_f1": 0.8, "confusion": [[1, 0], [0, 1]]},
           "holdout": {"open_set_auroc": 0.7}, "data": "/home/someone/secret/data"}


@pytest.fixture(scope="module")
def meta(tmp_path_factory):
    meta = read_meta(make_checkpoint(tmp_path_factory.mktemp("card") / "ck", "joint"))
    meta = copy.deepcopy(meta)
    meta.model_cfg["backbone"]["weights"] = "MCG-NJU/videomae-base@main"
    meta.data = {"path": "/home/someone/secret/data", "n": 120, "fingerprint": "ab" * 32,
                 "split_sizes": {"train": 96, "val": 24}, "split_fingerprints": {"val": "cd" * 32}}
    meta.seed = 2024
    return meta


def _card(tmp_path, meta, **kwargs) -> ModelCard:
    return ModelCard.load(write_model_card(tmp_path, meta, **kwargs))


def test_hub_metadata(tmp_path, meta):
    card = _card(tmp_path, meta, metrics=METRICS, name="org/det", license="cc-by-nc-4.0")
    data = card.data.to_dict()
    assert data["library_name"] == "mmvgm" and data["license"] == "cc-by-nc-4.0"
    assert data["base_model"] == "MCG-NJU/videomae-base" and data["pipeline_tag"] == "video-classification"
    assert {"mmvgm", "task-joint", "videomae"} <= set(data["tags"])
    assert "synthetic-training-data" not in data["tags"]


def test_body_has_task_labels_backbone_data_figures_use_and_limits(tmp_path, meta):
    text = _card(tmp_path, meta, metrics=METRICS, name="org/det").text
    for needed in ("## Task and labels", "`real`, `lavie`, `show-1`, `svd-xt`", "## Backbone",
                   "[MCG-NJU/videomae-base@main](https://huggingface.co/MCG-NJU/videomae-base)",
                   "Videos: 120", "ab" * 32, "Split `val`: 24 videos", "## Evaluation", "split `test`, 40 videos",
                   "| detect.auc | 0.9700 |", "| trace.accuracy | 0.8100 |", "| holdout.open_set_auroc | 0.7000 |",
                   "## Intended use", 'Predictor.from_pretrained("org/det")', "--checkpoint org/det",
                   "## Limitations", "Licence not stated"):
        assert needed in text, needed
    assert "per_class" not in text and "confusion" not in text
    assert "/home/someone" not in text  # a local path never reaches a public card


def test_without_eval_metrics_the_validation_figures_say_what_they_are(tmp_path, meta):
    meta = copy.deepcopy(meta)
    meta.val_metrics = {"detect": {"auc": 0.9}}
    text = _card(tmp_path, meta).text
    assert "No `mmvgm eval` metrics were given" in text and "not a test result" in text
    assert "| detect.auc | 0.9000 |" in text


def test_synthetic_training_data_is_said_everywhere(tmp_path, meta):
    meta = copy.deepcopy(meta)
    meta.synthetic = True
    card = _card(tmp_path, meta)
    assert "synthetic-training-data" in card.data.to_dict()["tags"]
    assert "**Warning:**" in card.text and "The training data was synthetic" in card.text
    assert "Trained on synthetic media only" in card.text


def test_local_weights_are_named_not_located(meta):
    meta = copy.deepcopy(meta)
    meta.model_cfg["backbone"]["weights"] = "/home/someone/weights/videomae-base"
    text = model_card(meta)
    assert "local weights (videomae-base)" in text and "/home/someone" not in text
    assert CARD_MARKER in text
