"""Post-hoc calibration fitted on the validation split only, stored in the checkpoint.

- **Temperature scaling** (Guo et al. 2017): one scalar T per head minimising the validation
  negative log-likelihood of ``logits / T``; it changes confidences, never the argmax. The
  targets carry Platt's (1999) prior correction: a class seen n times in validation is
  trusted with probability (n+1)/(n+2), not 1. Without it a perfectly separated validation
  split (common with small ones) drives T to 0 and every probability to exactly 0% or 100%,
  which also makes the open-set threshold 1.0 and sends every slightly uncertain video to
  "unknown".
- **Detection threshold**: the smallest threshold on calibrated P(fake) at which at most
  ``target_fpr`` (default 5%) of the *real* validation videos are called fake; or a fixed
  value (e.g. 0.5) when asked.
- **Open-set threshold** (trace): the ``open_set_percentile``-th percentile (default 5th) of
  the max calibrated probability over correctly classified validation videos. At inference
  a video whose max probability is below it is reported as "unknown source": by
  construction about 5% of correctly traced known-source videos would be called unknown.
- **What the threshold can promise**: the checkpoint records the real validation videos behind
  the threshold (``n_real``), the false positives among them and a 95% Clopper-Pearson interval
  on the false-positive rate. A 5% target on 3 real videos is really a 0-of-3 threshold whose
  interval reaches far above 5%; ``calibration_warnings`` says so, and also when a temperature
  stopped at a bound of its search or a threshold calls every or no validation video fake.

``temperature`` belongs to the primary head (detect for detect/joint, trace for trace);
joint models also carry ``trace_temperature``. ``calibrate_outputs`` applies all of it and
is the one place that turns raw logits into probabilities (eval and inference use it).
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import List, Mapping, Optional, Tuple

import numpy as np

from mmvgm.errors import InputError

LOG_T_BOUNDS = (math.log(0.05), math.log(20.0))
BOUND_RTOL = 1e-3      # a fitted temperature this close (relative) to a bound stopped there
CONFIDENCE = 0.95      # of the interval on the threshold's false-positive rate


@dataclass
class Calibration:
    temperature: float = 1.0
    threshold: float = 0.5
    open_set_threshold: Optional[float] = None
    trace_temperature: Optional[float] = None
    threshold_method: str = "fixed"
    target_fpr: Optional[float] = None
    open_set_percentile: Optional[float] = None
    fitted_on: dict = field(default_factory=dict)
    n_real: Optional[int] = None                # real validation videos behind the threshold
    false_positives: Optional[int] = None       # of them, called fake at the threshold
    fpr_interval: Optional[List[float]] = None  # [low, high]: 95% Clopper-Pearson on the FPR
    open_set_n: Optional[int] = None            # correctly traced validation videos behind the open-set threshold
    warnings: List[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Optional[Mapping]) -> "Calibration":
        """Unknown keys are ignored and missing ones defaulted, so older checkpoints load; what
        they did not record is derived where it is exact (see ``_fill_missing``)."""
        data = dict(data or {})
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        cal = cls(**known)
        if "n_real" not in data or "warnings" not in data:
            _fill_missing(cal, data)
        return cal


def _fill_missing(cal: Calibration, data: Mapping) -> None:
    """A checkpoint from before these fields: ``fitted_on`` has ``n_real``. A target-FPR fit never
    lets more than floor(target_fpr * n_real) reals through, so when that is 0 the false
    positives are known to be 0; otherwise they stay unknown (no interval)."""
    if "n_real" not in data and cal.fitted_on.get("n_real") is not None:
        cal.n_real = int(cal.fitted_on["n_real"])
        if cal.threshold_method == "target_fpr" and cal.target_fpr is not None and cal.n_real > 0 \
                and _allowed_false_positives(cal.target_fpr, cal.n_real) == 0:
            cal.false_positives = 0
            cal.fpr_interval = list(fpr_interval(0, cal.n_real))
    if "warnings" not in data:
        cal.warnings = calibration_warnings(cal)


def fpr_interval(false_positives: int, n_real: int, confidence: float = CONFIDENCE) -> Tuple[float, float]:
    """Clopper-Pearson (exact binomial) interval on a false-positive rate seen as k of n.

    It holds at least ``confidence`` whatever the true rate, so with few real videos it is
    wide: 0 of 2 gives 0% to 84%, 0 of 20 gives 0% to 17%.
    """
    k, n = int(false_positives), int(n_real)
    if n <= 0 or not 0 <= k <= n:
        raise InputError(f"a false-positive interval needs 0 <= false positives <= real videos > 0, "
                         f"got {k} of {n}")
    alpha = 1.0 - confidence
    if k in (0, n):  # the closed form of the one-sided end; also spares loading scipy.stats
        edge = (alpha / 2) ** (1.0 / n)
        return (0.0, 1.0 - edge) if k == 0 else (edge, 1.0)
    from scipy.stats import beta  # a noticeable import, needed only here

    return float(beta.ppf(alpha / 2, k, n - k + 1)), float(beta.ppf(1 - alpha / 2, k + 1, n - k))


def _allowed_false_positives(target_fpr: float, n_real: int) -> int:
    return int(math.floor(target_fpr * n_real + 1e-9))


def _needed(fraction: float) -> int:
    """The fewest videos at which a rate of ``fraction`` is one video or more."""
    return int(math.ceil(1.0 / fraction - 1e-9))


def _share(p: float) -> str:
    """A rate for a sentence: whole percents from 10% (and whole ones below), else one decimal."""
    pct = 100.0 * p
    return f"{pct:.0f}%" if pct >= 10 or pct == round(pct) else f"{pct:.1f}%"


def _temperature_warning(name: str, t: Optional[float]) -> Optional[str]:
    if t is None:
        return None
    low, high = (math.exp(b) for b in LOG_T_BOUNDS)
    if abs(t - high) <= BOUND_RTOL * high:
        return (f"{name} {t:.4g} stopped at the upper bound of its fit ({high:g}): on validation the "
                f"scores separate the classes little or not at all, so calibrated probabilities are "
                f"squeezed towards a uniform guess")
    if abs(t - low) <= BOUND_RTOL * low:
        return (f"{name} {t:.4g} stopped at the lower bound of its fit ({low:g}): calibrated "
                f"probabilities overstate certainty")
    return None


def _threshold_warnings(cal: Calibration) -> List[str]:
    out = []
    if cal.threshold <= 0.0 or cal.threshold >= 1.0:
        everything = "every" if cal.threshold <= 0.0 else "no"
        out.append(f"detection threshold {100 * cal.threshold:.1f}% calls {everything} video fake")
    elif cal.fitted_on.get("p_fake_range"):
        low, high = cal.fitted_on["p_fake_range"]
        if cal.threshold > high:
            out.append(f"detection threshold {100 * cal.threshold:.1f}% is above every validation score: "
                       f"it calls no validation video fake")
        elif cal.threshold <= low:
            out.append(f"detection threshold {100 * cal.threshold:.1f}% is at or below every validation "
                       f"score: it calls every validation video fake")
    target, n = cal.target_fpr, cal.n_real
    if cal.threshold_method == "target_fpr" and target and n is not None and n < _needed(target):
        seen = "" if cal.false_positives is None or cal.fpr_interval is None else (
            f" ({cal.false_positives} of them called fake; 95% interval on its false-positive rate: "
            f"{_share(cal.fpr_interval[0])} to {_share(cal.fpr_interval[1])})")
        out.append(f"a {_share(target)} false-positive target needs at least {_needed(target)} real "
                   f"validation videos to resolve; this threshold was fitted on {n}{seen}")
    return out


def _open_set_warning(cal: Calibration) -> Optional[str]:
    percentile, n = cal.open_set_percentile, cal.open_set_n
    if percentile is None or n is None:
        return None
    if n == 0:
        return "no validation video was traced correctly: no open-set threshold, no source is ever called unknown"
    if percentile > 0 and n < _needed(percentile / 100.0):
        return (f"the open-set threshold (percentile {percentile:g} of the confidence on correctly traced "
                f"validation videos) needs at least {_needed(percentile / 100.0)} of them to resolve; "
                f"it is fitted on {n}")
    return None


def calibration_warnings(cal: Calibration) -> List[str]:
    """What makes this calibration mean less than it says, one sentence each (empty: nothing).

    A temperature at a bound of its search, a detection threshold at 0 or 1 or beyond the
    validation scores, a false-positive target or an open-set percentile finer than the
    validation videos behind it can resolve (a rate r needs at least ceil(1/r) of them).
    """
    out = [_temperature_warning("temperature", cal.temperature),
           _temperature_warning("trace temperature", cal.trace_temperature)]
    out += _threshold_warnings(cal)
    out.append(_open_set_warning(cal))
    return [w for w in out if w]


def threshold_summary(cal: Calibration) -> str:
    """The detection threshold and what stands behind it, e.g. ``53.8% (fitted for 5% FPR on 2
    real validation videos: 0 false positives, 95% interval on the FPR 0% to 84%)``."""
    how = f"fitted for {_share(cal.target_fpr)} FPR" if cal.threshold_method == "target_fpr" \
        and cal.target_fpr is not None else "fixed"
    if cal.n_real is None:
        return f"{100 * cal.threshold:.1f}% ({how})"
    behind = f"{how} on {cal.n_real} real validation video{'s' if cal.n_real != 1 else ''}"
    if cal.false_positives is None or cal.fpr_interval is None:
        return f"{100 * cal.threshold:.1f}% ({behind})"
    fp = f"{cal.false_positives} false positive{'s' if cal.false_positives != 1 else ''}"
    low, high = cal.fpr_interval
    return f"{100 * cal.threshold:.1f}% ({behind}: {fp}, 95% interval on the FPR {_share(low)} to {_share(high)})"


def _log_softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=1, keepdims=True))


def softmax(z: np.ndarray) -> np.ndarray:
    return np.exp(_log_softmax(np.asarray(z, np.float64)))


def sigmoid(z: np.ndarray) -> np.ndarray:
    """Logistic function, stable at both ends (exp of a non-positive number only)."""
    z = np.asarray(z, np.float64)
    e = np.exp(-np.abs(z))
    return np.where(z >= 0, 1.0 / (1.0 + e), e / (1.0 + e))


def platt_targets(y: np.ndarray, num_classes: int) -> np.ndarray:
    """Soft targets (n, K): the true class gets (n_k+1)/(n_k+2), the rest share the remainder."""
    y = np.asarray(y, dtype=int)
    counts = np.bincount(y, minlength=num_classes).astype(np.float64)
    slack = 1.0 / (counts[y] + 2.0)
    targets = np.repeat((slack / max(num_classes - 1, 1))[:, None], num_classes, axis=1)
    targets[np.arange(len(y)), y] = 1.0 - slack
    return targets


def _nll(logits: np.ndarray, targets: np.ndarray, temperature: float) -> float:
    z = logits / temperature
    if z.ndim == 1:  # binary: BCE with logits against P(class 1), numerically stable
        return float(np.mean(np.maximum(z, 0) - z * targets + np.log1p(np.exp(-np.abs(z)))))
    return float(-np.mean((targets * _log_softmax(z)).sum(axis=1)))


def fit_temperature(logits: np.ndarray, y: np.ndarray) -> float:
    """T > 0 minimising the NLL of ``logits / T`` against Platt-corrected targets.

    1-D logits: binary (y in {0, 1}); 2-D: softmax over the columns.
    """
    logits = np.asarray(logits, np.float64)
    y = np.asarray(y, dtype=int)
    if len(y) == 0:
        raise InputError("cannot fit a temperature: the validation split is empty")
    if logits.ndim == 1:
        targets = platt_targets(y, 2)[:, 1]
    else:
        targets = platt_targets(y, logits.shape[1])
    from scipy.optimize import minimize_scalar  # scipy.optimize is slow to import; scoring never needs it

    res = minimize_scalar(lambda log_t: _nll(logits, targets, math.exp(log_t)), bounds=LOG_T_BOUNDS,
                          method="bounded", options={"xatol": 1e-6})
    return float(math.exp(res.x))


def fit_fpr_threshold(p_fake_real: np.ndarray, target_fpr: float = 0.05,
                      p_fake_fake: Optional[np.ndarray] = None) -> float:
    """A threshold t with mean(p_fake_real >= t) <= target_fpr, as low as that allows.

    With the generated videos' scores, t is the midpoint between the highest real score that
    must stay below it and the next generated score above that score: the same validation
    FPR and TPR as the lowest such threshold, with a margin on both sides.
    """
    scores = np.sort(np.asarray(p_fake_real, np.float64))[::-1]
    if len(scores) == 0:
        raise InputError("cannot fit a threshold at a target false-positive rate: no real videos in "
                         "the validation split (add real videos or use a fixed threshold, e.g. 0.5)")
    if not 0.0 <= target_fpr < 1.0:
        raise InputError(f"target false-positive rate must be in [0, 1), got {target_fpr}")
    allowed = int(math.floor(target_fpr * len(scores) + 1e-9))
    # above the (allowed+1)-th highest real score: at most `allowed` reals reach it
    edge = scores[allowed]
    if p_fake_fake is not None:
        # the next score above the edge, generated or real: t between them splits nothing new
        higher = np.r_[np.asarray(p_fake_fake, np.float64), scores[:allowed]]
        higher = higher[higher > edge]
        if higher.size:
            return float((edge + higher.min()) / 2.0)
    return float(np.nextafter(edge, np.inf))


def fit_open_set_threshold(probs: np.ndarray, y: np.ndarray, percentile: float = 5.0) -> Optional[float]:
    """Percentile of max probability over correctly classified samples (None if none are)."""
    probs = np.asarray(probs, np.float64)
    y = np.asarray(y)
    correct = probs.argmax(1) == y
    if not correct.any():
        return None
    return float(np.percentile(probs[correct].max(1), percentile))


def calibrate_outputs(logits: Mapping[str, np.ndarray], cal: Calibration, task: str) -> dict:
    """Raw head logits -> calibrated ``p_fake`` (n,) and/or ``trace_probs`` (n, N)."""
    out = {}
    if task in ("detect", "joint"):
        out["p_fake"] = sigmoid(np.asarray(logits["detect"], np.float64) / cal.temperature)
    if task in ("trace", "joint"):
        t = cal.temperature if task == "trace" else (cal.trace_temperature or 1.0)
        out["trace_probs"] = softmax(np.asarray(logits["trace"], np.float64) / t)
    return out


def class_probabilities(calibrated: Mapping[str, np.ndarray], task: str) -> np.ndarray:
    """(n, K) probabilities over the task's label list (detect: real/fake; joint: real + sources)."""
    if task == "detect":
        p = calibrated["p_fake"]
        return np.stack([1.0 - p, p], axis=1)
    if task == "trace":
        return calibrated["trace_probs"]
    p = calibrated["p_fake"][:, None]
    return np.concatenate([1.0 - p, p * calibrated["trace_probs"]], axis=1)


def is_fake(p_fake: np.ndarray, cal: Calibration) -> np.ndarray:
    """The real/fake decision on calibrated P(fake): fake at or above the fitted threshold.
    The one rule: eval's metrics and every verdict use it."""
    return np.asarray(p_fake) >= cal.threshold


def is_unknown(top_probability: np.ndarray, cal: Calibration) -> np.ndarray:
    """The open-set decision on the best source's calibrated probability: ``unknown`` below the
    fitted open-set threshold (never, when none was fitted)."""
    top = np.asarray(top_probability)
    if cal.open_set_threshold is None:
        return np.zeros(top.shape, dtype=bool)
    return top < cal.open_set_threshold


def predictions(calibrated: Mapping[str, np.ndarray], cal: Calibration, task: str) -> np.ndarray:
    """Label index per sample: detection uses the threshold; joint calls a video real below it."""
    if task == "detect":
        return is_fake(calibrated["p_fake"], cal).astype(int)
    if task == "trace":
        return calibrated["trace_probs"].argmax(1)
    return np.where(is_fake(calibrated["p_fake"], cal), calibrated["trace_probs"].argmax(1) + 1, 0)


def fit_calibration(logits: Mapping[str, np.ndarray], y: np.ndarray, task: str, *,
                    target_fpr: float = 0.05, fixed_threshold: Optional[float] = None,
                    open_set_percentile: float = 5.0) -> Calibration:
    """Fit everything on *validation* logits and labels (task label indices).

    detect: y in {0 real, 1 fake}; trace: y in 0..N-1; joint: 0 real, 1..N sources.
    """
    y = np.asarray(y, dtype=int)
    cal = Calibration(fitted_on={"split": "val", "n": int(len(y))})
    if task in ("detect", "joint"):
        is_fake = (y > 0).astype(int)
        cal.temperature = fit_temperature(logits["detect"], is_fake)
        p_fake = sigmoid(np.asarray(logits["detect"], np.float64) / cal.temperature)
        cal.fitted_on["n_real"] = int((is_fake == 0).sum())
        if fixed_threshold is not None:
            cal.threshold, cal.threshold_method = float(fixed_threshold), "fixed"
        else:
            cal.threshold = fit_fpr_threshold(p_fake[is_fake == 0], target_fpr, p_fake[is_fake == 1])
            cal.threshold_method, cal.target_fpr = "target_fpr", float(target_fpr)
        _record_false_positives(cal, p_fake, is_fake)
    if task in ("trace", "joint"):
        trace_logits = np.asarray(logits["trace"], np.float64)
        trace_y = y
        if task == "joint":  # only generated videos train and calibrate the tracing head
            trace_logits, trace_y = trace_logits[y > 0], y[y > 0] - 1
        fit_trace_calibration(cal, trace_logits, trace_y, task, open_set_percentile)
    cal.warnings = calibration_warnings(cal)
    return cal


def fit_trace_calibration(cal: Calibration, trace_logits: np.ndarray, trace_y: np.ndarray, task: str,
                          open_set_percentile: float = 5.0) -> Calibration:
    """Fit the tracing head's part of ``cal`` in place on validation trace logits and source
    indices: its temperature and the open-set threshold (``fit_calibration`` does it after
    training; ``mmvgm enrol`` again after adding a source). Warnings are left to the caller."""
    trace_logits = np.asarray(trace_logits, np.float64)
    trace_y = np.asarray(trace_y, dtype=int)
    t = fit_temperature(trace_logits, trace_y)
    if task == "trace":
        cal.temperature = t
    else:
        cal.trace_temperature = t
    trace_probs = softmax(trace_logits / t)
    cal.open_set_threshold = fit_open_set_threshold(trace_probs, trace_y, open_set_percentile)
    cal.open_set_percentile = float(open_set_percentile)
    cal.open_set_n = int((trace_probs.argmax(1) == trace_y).sum()) if len(trace_y) else 0
    return cal


def fit_real_calibration(p_fake_real: np.ndarray, target_fpr: float = 0.05) -> Calibration:
    """The calibration of a detector fitted on real videos only (``mmvgm fit-real``): with no
    generated video there is no temperature to fit (it stays 1), and the threshold is the one at
    ``target_fpr`` on the held-out real videos' scores, with what it can promise recorded as for
    a trained detector (``n_real``, false positives, their interval, warnings)."""
    p = np.asarray(p_fake_real, np.float64)
    cal = Calibration(fitted_on={"split": "val", "n": int(len(p)), "n_real": int(len(p)),
                                 "temperature": "not fitted: no generated videos"})
    cal.threshold = fit_fpr_threshold(p, target_fpr)
    cal.threshold_method, cal.target_fpr = "target_fpr", float(target_fpr)
    _record_false_positives(cal, p, np.zeros(len(p), dtype=int))
    cal.warnings = calibration_warnings(cal)
    return cal


def _record_false_positives(cal: Calibration, p_fake: np.ndarray, is_fake: np.ndarray) -> None:
    """The real videos behind the threshold, those it calls fake, the interval on that rate and
    the range of the validation scores (a threshold beyond it decides nothing)."""
    real = p_fake[is_fake == 0]
    cal.n_real = int(len(real))
    if len(p_fake):
        cal.fitted_on["p_fake_range"] = [float(p_fake.min()), float(p_fake.max())]
    if cal.n_real:
        cal.false_positives = int((real >= cal.threshold).sum())
        cal.fpr_interval = list(fpr_interval(cal.false_positives, cal.n_real))
