"""``fit_real``: a detector from real videos alone that catches temporal fakes, recorded and
calibrated honestly, and scored through the ordinary checkpoint and ``Predictor`` path."""
from __future__ import annotations

import shutil

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from mmvgm.errors import InputError
from tests.engine.zeroshot import make_temporal_dataset, paths


@pytest.fixture(scope="module")
def fitted(tmp_path_factory):
    from mmvgm.engine.fit_real import fit_real

    root = tmp_path_factory.mktemp("fit_real")
    make_temporal_dataset(root / "data", {"real": 30, "real-flicker": 8, "real-jitter": 8})
    result = fit_real(root / "data" / "real", "timm_tiny", root / "ck", workers=0, progress=False, synthetic=True)
    return {"root": root, "data": root / "data", "result": result, "ck": result.checkpoint}


@pytest.fixture(scope="module")
def predictor(fitted):
    from mmvgm.predict.predictor import Predictor

    with Predictor.from_checkpoint(fitted["ck"]) as p:
        yield p


def p_fake(predictor, files):
    return np.array([v.fake_probability for v in predictor.predict_batch(files)])


@pytest.mark.parametrize("fake", ["real-flicker", "real-jitter"])
def test_scores_temporal_fakes_above_chance_without_seeing_one(fitted, predictor, fake):
    from mmvgm.engine.fit_real import real_splits

    test_reals = [s.path for s in real_splits(fitted["data"] / "real", (0.5, 0.3, 0.2), 2024, "warn")["test"]]
    fakes = paths(fitted["data"] / fake)
    scores = p_fake(predictor, [*test_reals, *fakes])
    auc = roc_auc_score(np.r_[np.zeros(len(test_reals)), np.ones(len(fakes))], scores)
    assert auc > 0.5, auc


def test_the_checkpoint_records_what_the_detector_is(fitted):
    from mmvgm.checkpoint.files import read_meta

    meta = read_meta(fitted["ck"])
    assert meta.task == "detect" and meta.model_cfg["kind"] == "temporal_statistic"
    assert meta.config["statistic"] == {"order": 2, "distance": "l2", "direction": "both"}
    assert meta.config["method"] == "fit-real" and meta.config["target_fpr"] == 0.05
    assert meta.data["real_only"] and meta.data["n_real"] == 30 and len(meta.data["fingerprint"]) == 64
    assert meta.data["split_sizes"] == {"train": 15, "val": 9, "test": 6}
    cal = meta.calibration
    assert cal.threshold_method == "target_fpr" and cal.target_fpr == 0.05 and cal.n_real == 9
    assert cal.temperature == 1.0 and "not fitted" in cal.fitted_on["temperature"]
    assert meta.synthetic and "synthetic media" in meta.warning


def test_the_threshold_is_fitted_on_the_held_out_real_videos_only(fitted, predictor):
    from mmvgm.checkpoint.calibration import fit_real_calibration
    from mmvgm.engine.fit_real import real_splits

    splits = real_splits(fitted["data"] / "real", (0.5, 0.3, 0.2), 2024, "warn")
    val = p_fake(predictor, [s.path for s in splits["val"]])
    assert fit_real_calibration(val, 0.05).threshold == pytest.approx(predictor.calibration.threshold, rel=1e-6)
    train = p_fake(predictor, [s.path for s in splits["train"]])
    # the center is the fit part's median statistic: about half of it lies on either side
    assert 0.3 <= float(np.mean(train > np.median(train))) <= 0.7


def test_eval_gives_the_usual_metrics_on_the_same_test_reals_when_fakes_exist(fitted):
    from mmvgm.engine.evaluate import evaluate

    metrics = evaluate(fitted["ck"], fitted["data"], workers=0, progress=False)
    assert metrics["split_matches_training"] is True  # the real test part is the one fit_real left alone
    assert metrics["auc"] > 0.5 and metrics["per_class"]["real"]["support"] == 6
    assert "5% FPR on 9 real validation videos" in metrics["threshold_summary"]


def test_too_few_real_videos_is_a_one_line_error(tmp_path, fitted):
    from mmvgm.engine.fit_real import fit_real

    (tmp_path / "real").mkdir()
    shutil.copy(paths(fitted["data"] / "real")[0], tmp_path / "real")
    with pytest.raises(InputError, match="too few real videos"):
        fit_real(tmp_path / "real", "timm_tiny", tmp_path / "ck", workers=0, progress=False)
    with pytest.raises(InputError, match="too few for this statistic"):
        fit_real(fitted["data"] / "real", "timm_tiny", tmp_path / "ck", frames=3, workers=0, progress=False)
