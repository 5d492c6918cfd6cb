"""``enrol`` and ``enrol_curve``: a new source from a few examples, the backbone frozen, with
honest before/after figures, into an ordinary checkpoint that ``Predictor`` scores."""
from __future__ import annotations

import json

import pytest
import torch

from mmvgm.errors import CheckpointError, InputError
from tests.engine.synthetic import COLORS
from tests.media import make_frames, write_video

NEW = "hotshot-xl"   # in synth_data too, held out of the training run's label file


def new_videos(folder, n, seed):
    return [write_video(folder / f"{NEW}-{seed + i}.mp4", make_frames(8, 32, 32, seed=seed + i, color=COLORS[NEW]))
            for i in range(n)]


@pytest.fixture(scope="module")
def examples(tmp_path_factory):
    root = tmp_path_factory.mktemp("enrol")
    return {"root": root, "examples": new_videos(root / "examples", 5, 500)[0].parent,
            "unseen": new_videos(root / "unseen", 5, 900)}


@pytest.fixture(scope="module", params=["prototype", "refit"])
def enrolled(request, trained_run, examples):
    from mmvgm.engine.enrol import enrol

    out = examples["root"] / f"ck-{request.param}"
    return enrol(trained_run.best_dir, NEW, examples["examples"], out, method=request.param, workers=0,
                 progress=False)


def test_the_new_class_is_recognised_from_five_examples(enrolled, examples):
    from mmvgm.predict.predictor import Predictor

    with Predictor.from_checkpoint(enrolled.checkpoint) as predictor:
        assert predictor.source_labels == ["lavie", "show-1", NEW]
        verdicts = predictor.predict_batch(examples["unseen"])
    assert [v.best_source.label for v in verdicts] == [NEW] * 5


def test_the_report_gives_accuracy_before_and_after_and_a_refitted_open_set_threshold(enrolled, trained_run):
    from mmvgm.checkpoint.files import read_meta

    report = enrolled.report
    assert report["k"] == 5 and report["source"] == NEW
    existing = report["existing_classes"]
    assert existing["n_test"] > 0 and 0 <= existing["accuracy_before"] <= 1 and 0 <= existing["accuracy_after"] <= 1
    assert report["new_class"]["leave_one_out_accuracy"] == 1.0
    before = read_meta(trained_run.best_dir).calibration
    after = read_meta(enrolled.checkpoint).calibration
    assert report["open_set_threshold"] == {"before": before.open_set_threshold, "after": after.open_set_threshold}
    assert after.fitted_on["enrolment"] == {"val": 4, "examples_left_out": 5}
    assert (after.temperature, after.threshold) == (before.temperature, before.threshold)  # detection untouched
    json.dumps(report)


def test_the_backbone_and_the_detection_head_are_untouched(enrolled, trained_run):
    from mmvgm.checkpoint.files import load_checkpoint

    old, _ = load_checkpoint(trained_run.best_dir)
    new, meta = load_checkpoint(enrolled.checkpoint)
    old_state, new_state = old.state_dict(), new.state_dict()
    for key, value in old_state.items():
        if not key.startswith("heads.trace."):
            assert torch.equal(value, new_state[key]), key
    assert new_state["heads.trace.proj.weight"].shape[0] == 3
    assert meta.data["enrolled"][0]["method"] == enrolled.report["method"]


def test_what_cannot_be_enrolled_is_a_one_line_error(trained_run, examples, tmp_path):
    from mmvgm.engine.enrol import enrol
    from tests.inference_helpers import make_checkpoint

    with pytest.raises(InputError, match="already knows 'lavie'"):
        enrol(trained_run.best_dir, "lavie", examples["examples"], workers=0, progress=False)
    with pytest.raises(InputError, match="unknown enrolment method"):
        enrol(trained_run.best_dir, NEW, examples["examples"], method="knn", workers=0, progress=False)
    with pytest.raises(CheckpointError, match="only detects"):
        enrol(make_checkpoint(tmp_path / "det", task="detect"), NEW, examples["examples"], progress=False)
    with pytest.raises(InputError, match="--base-data"):
        enrol(make_checkpoint(tmp_path / "joint"), NEW, examples["examples"], progress=False)


def test_eval_enrol_curve_reports_accuracy_per_k_and_writes_a_png(trained_run, synth_data, tmp_path):
    from mmvgm.engine.evaluate import evaluate

    metrics = evaluate(trained_run.best_dir, synth_data, holdout_class=NEW, enrol_curve=[1, 2], workers=0,
                       progress=False, out=tmp_path / "eval")
    curve = metrics["enrol_curve"]
    assert [p["k"] for p in curve["curve"]] == [1, 2] and curve["n_heldout"] == 4 and curve["n_heldout_test"] == 2
    assert all(0 <= p[key] <= 1 for p in curve["curve"] for key in ("accuracy", "new_class_accuracy"))
    assert curve["before"]["open_set_auroc"] == pytest.approx(metrics["holdout"]["open_set_auroc"])
    assert (tmp_path / "eval" / "enrol_curve.png").stat().st_size > 0
    with pytest.raises(InputError, match="needs more than 4 readable videos"):
        evaluate(trained_run.best_dir, synth_data, holdout_class=NEW, enrol_curve=[4], workers=0, progress=False)
    with pytest.raises(InputError, match="needs --holdout-class"):
        evaluate(trained_run.best_dir, synth_data, enrol_curve=[1], workers=0, progress=False)
