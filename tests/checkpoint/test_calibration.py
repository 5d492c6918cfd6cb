import math
import numpy as np
import pytest

from mmvgm.checkpoint import calibration as C
from mmvgm.errors import InputError


def test_temperature_recovers_overconfidence():
    rng = np.random.default_rng(0)
    n = 4000
    true_logit = rng.normal(0, 2, n)
    y = (rng.random(n) < C.sigmoid(true_logit)).astype(int)
    t = C.fit_temperature(true_logit * 3.0, y)  # logits 3x too confident
    assert t == pytest.approx(3.0, rel=0.15)


def test_multiclass_temperature_keeps_argmax():
    rng = np.random.default_rng(1)
    logits = rng.normal(size=(300, 4)) * 5
    y = logits.argmax(1)
    y[:60] = rng.integers(0, 4, 60)
    t = C.fit_temperature(logits, y)
    assert t > 1.0
    assert (C.softmax(logits / t).argmax(1) == logits.argmax(1)).all()


def test_fpr_threshold_gives_target_rate():
    real = np.linspace(0, 1, 100, endpoint=False)
    th = C.fit_fpr_threshold(real, 0.05)
    assert (real >= th).mean() == pytest.approx(0.05)
    assert (real >= C.fit_fpr_threshold(real, 0.0)).sum() == 0
    with pytest.raises(InputError, match="no real videos"):
        C.fit_fpr_threshold(np.array([]), 0.05)


def test_open_set_threshold_is_percentile_of_correct_confidence():
    probs = np.array([[0.9, 0.1], [0.6, 0.4], [0.2, 0.8], [0.7, 0.3]])
    y = np.array([0, 0, 1, 1])  # last one wrong
    th = C.fit_open_set_threshold(probs, y, percentile=0)
    assert th == pytest.approx(0.6)


def test_fit_calibration_uses_only_the_inputs_it_is_given():
    """Calibration is a pure function of the validation logits: identical val -> identical
    result, whatever else exists; changing val changes it."""
    rng = np.random.default_rng(2)
    val = {"detect": rng.normal(size=50), "trace": rng.normal(size=(50, 3))}
    yv = rng.integers(0, 4, 50)
    a = C.fit_calibration(val, yv, "joint")
    b = C.fit_calibration({k: v.copy() for k, v in val.items()}, yv.copy(), "joint")
    assert a.to_dict() == b.to_dict()
    val2 = {"detect": val["detect"] * 2, "trace": val["trace"]}
    assert C.fit_calibration(val2, yv, "joint").temperature != a.temperature
    assert a.trace_temperature is not None and a.open_set_threshold is not None
    assert a.fitted_on == {"split": "val", "n": 50, "n_real": int((yv == 0).sum())}


def test_fixed_threshold_and_round_trip():
    cal = C.fit_calibration({"detect": np.array([-2.0, -1.0, 1.0, 2.0])}, np.array([0, 0, 1, 1]),
                            "detect", fixed_threshold=0.5)
    assert cal.threshold == 0.5 and cal.threshold_method == "fixed"
    assert C.Calibration.from_dict(cal.to_dict()) == cal


def test_joint_probabilities_sum_to_one_and_predictions():
    cal = C.Calibration(temperature=1.0, threshold=0.5, trace_temperature=1.0)
    logits = {"detect": np.array([-3.0, 3.0]), "trace": np.array([[0.0, 2.0], [2.0, 0.0]])}
    out = C.calibrate_outputs(logits, cal, "joint")
    probs = C.class_probabilities(out, "joint")
    assert probs.shape == (2, 3) and np.allclose(probs.sum(1), 1)
    assert C.predictions(out, cal, "joint").tolist() == [0, 1]


def test_fpr_threshold_sits_between_the_last_real_and_the_next_score():
    real = np.array([0.01, 0.02, 0.03])
    fake = np.array([0.9, 0.95, 0.02])
    th = C.fit_fpr_threshold(real, 0.0, fake)
    assert th == pytest.approx((0.03 + 0.9) / 2)
    # same validation FPR and TPR as the tightest threshold
    assert (real >= th).sum() == 0 and (fake >= th).sum() == 2


def test_separable_validation_does_not_saturate():
    # A perfectly separated small validation split: plain NLL would push T to its lower bound
    # and every probability to 0/1 (and the open-set threshold to 1.0).
    logits = np.array([[4.0, 0.0, 0.0], [0.0, 3.0, 0.0], [0.0, 0.0, 5.0]] * 4)
    y = np.array([0, 1, 2] * 4)
    t = C.fit_temperature(logits, y)
    assert t > math.exp(C.LOG_T_BOUNDS[0]) * 1.5
    probs = C.softmax(logits / t)
    assert probs.max() < 0.99
    # the correction's target: about (n+1)/(n+2) = 5/6 for the true class with n = 4
    assert probs[np.arange(len(y)), y].mean() == pytest.approx(5 / 6, abs=0.05)
    open_set = C.fit_open_set_threshold(probs, y)
    assert open_set < 0.99

    binary = np.array([-6.0, -5.0, 5.0, 6.0])
    tb = C.fit_temperature(binary, np.array([0, 0, 1, 1]))
    assert 0.01 < C.sigmoid(binary / tb).min() and C.sigmoid(binary / tb).max() < 0.99


def test_platt_targets_rows_sum_to_one():
    q = C.platt_targets(np.array([0, 0, 1]), 3)
    assert np.allclose(q.sum(1), 1.0)
    assert q[0, 0] == pytest.approx(3 / 4) and q[2, 1] == pytest.approx(2 / 3)
