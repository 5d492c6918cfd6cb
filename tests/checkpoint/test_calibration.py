import math

import numpy as np
import pytest
from scipy.stats import binomtest

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
    assert {k: a.fitted_on[k] for k in ("split", "n", "n_real")} == {"split": "val", "n": 50,
                                                                   "n_real": int((yv == 0).sum())}


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


# ------------------------------------------------------------------ what a calibration can promise

def _detect_fit(n_real: int, n_fake: int, target_fpr: float = 0.05, spread: float = 1.0):
    """A detect fit on well separated scores: reals around -2, fakes around +2."""
    rng = np.random.default_rng(n_real)
    logits = np.r_[-2 + spread * rng.normal(size=n_real), 2 + spread * rng.normal(size=n_fake)]
    y = np.r_[np.zeros(n_real, int), np.ones(n_fake, int)]
    return C.fit_calibration({"detect": logits}, y, "detect", target_fpr=target_fpr)


@pytest.mark.parametrize("k, n", [(0, 2), (0, 20), (1, 12), (3, 3), (5, 100)])
def test_fpr_interval_is_clopper_pearson(k, n):
    exact = binomtest(k, n).proportion_ci(confidence_level=0.95, method="exact")
    assert C.fpr_interval(k, n) == pytest.approx((exact.low, exact.high), abs=1e-9)
    with pytest.raises(InputError):
        C.fpr_interval(3, 2)


def test_three_real_videos_give_a_threshold_that_says_what_it_is():
    cal = _detect_fit(3, 7)
    assert (cal.n_real, cal.false_positives) == (3, 0)
    assert cal.fpr_interval == pytest.approx([0.0, 1 - 0.025 ** (1 / 3)])  # 0 of 3: up to 71%
    assert any("needs at least 20 real validation videos" in w and "fitted on 3" in w for w in cal.warnings)
    assert C.threshold_summary(cal) == (f"{100 * cal.threshold:.1f}% (fitted for 5% FPR on 3 real validation "
                                        f"videos: 0 false positives, 95% interval on the FPR 0% to 71%)")
    enough = _detect_fit(40, 40)
    assert enough.n_real == 40 and enough.false_positives <= 2
    assert enough.fpr_interval[0] <= enough.false_positives / 40 <= enough.fpr_interval[1] < 0.25
    assert not [w for w in enough.warnings if "false-positive target" in w]


def test_fixed_threshold_also_counts_its_false_positives():
    logits = np.array([-3.0, -2.0, 0.5, 2.0, 3.0])
    cal = C.fit_calibration({"detect": logits}, np.array([0, 0, 0, 1, 1]), "detect", fixed_threshold=0.5)
    assert cal.n_real == 3 and cal.false_positives == 1  # the real at +0.5 scores above 50%
    assert 0 < cal.fpr_interval[0] < 1 / 3 < cal.fpr_interval[1] < 1
    assert C.threshold_summary(cal).startswith("50.0% (fixed on 3 real validation videos: 1 false positive,")


def test_temperature_stopped_at_a_bound_warns():
    rng = np.random.default_rng(3)
    y = np.r_[np.zeros(30, int), np.ones(30, int)]
    cal = C.fit_calibration({"detect": 1e-3 * rng.normal(size=60)}, y, "detect")  # scores carry nothing
    assert cal.temperature == pytest.approx(20.0, rel=1e-3)
    assert any(w.startswith("temperature 20 stopped at the upper bound") for w in cal.warnings)
    low = C.calibration_warnings(C.Calibration(temperature=0.05, trace_temperature=0.0500001))
    assert len(low) == 2 and all("lower bound" in w for w in low)
    assert C.calibration_warnings(C.Calibration(temperature=0.06, trace_temperature=19.0)) == []


def test_thresholds_at_zero_one_or_beyond_the_scores_warn():
    assert "calls every video fake" in C.calibration_warnings(C.Calibration(threshold=0.0))[0]
    assert "calls no video fake" in C.calibration_warnings(C.Calibration(threshold=1.0))[0]
    # the generated videos score below the real ones: 0% FPR means calling nothing fake
    cal = C.fit_calibration({"detect": np.r_[np.full(20, 2.0), np.full(20, -2.0)] + np.arange(40) * 1e-3},
                            np.r_[np.zeros(20, int), np.ones(20, int)], "detect", target_fpr=0.0)
    assert cal.false_positives == 0
    assert any("above every validation score" in w for w in cal.warnings)
    assert C.calibration_warnings(C.Calibration()) == []


def test_open_set_percentile_needs_enough_correctly_traced_videos():
    logits = np.array([[4.0, 0.0, 0.0], [0.0, 3.0, 0.0], [0.0, 0.0, 5.0]] * 4)
    y = np.array([0, 1, 2] * 4)
    cal = C.fit_calibration({"trace": logits}, y, "trace")
    assert cal.open_set_n == 12
    assert any("needs at least 20 of them" in w and "fitted on 12" in w for w in cal.warnings)
    many = C.fit_calibration({"trace": np.tile(logits, (2, 1))}, np.tile(y, 2), "trace")
    assert many.open_set_n == 24 and not any("open-set" in w for w in many.warnings)
    wrong = C.fit_calibration({"trace": logits}, (y + 1) % 3, "trace")
    assert wrong.open_set_threshold is None and any("no validation video was traced" in w for w in wrong.warnings)


def test_older_calibrations_load_with_what_can_be_derived():
    """A checkpoint's calibration from before these fields (tests/checkpoint/fixtures/written_v1):
    a 5% target on 2 reals lets 0 through, so its interval is known; on 40 reals it is not."""
    old = {"temperature": 0.49, "threshold": 0.5384839667312089, "open_set_threshold": 0.73,
           "trace_temperature": 2.8, "threshold_method": "target_fpr", "target_fpr": 0.05,
           "open_set_percentile": 5.0, "fitted_on": {"split": "val", "n": 6, "n_real": 2}, "later_key": 1}
    cal = C.Calibration.from_dict(old)
    assert (cal.n_real, cal.false_positives) == (2, 0) and cal.fpr_interval == pytest.approx([0, 0.8419], abs=1e-4)
    assert C.threshold_summary(cal) == ("53.8% (fitted for 5% FPR on 2 real validation videos: "
                                        "0 false positives, 95% interval on the FPR 0% to 84%)")
    assert len(cal.warnings) == 1 and "needs at least 20" in cal.warnings[0]
    bigger = C.Calibration.from_dict({**old, "fitted_on": {"n_real": 40}})
    assert bigger.n_real == 40 and bigger.false_positives is None and bigger.fpr_interval is None
    assert C.threshold_summary(bigger) == "53.8% (fitted for 5% FPR on 40 real validation videos)"
    assert bigger.warnings == []
    fitted = _detect_fit(3, 7)
    assert C.Calibration.from_dict(fitted.to_dict()) == fitted
