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

``temperature`` belongs to the primary head (detect for detect/joint, trace for trace);
joint models also carry ``trace_temperature``. ``calibrate_outputs`` applies all of it and
is the one place that turns raw logits into probabilities (eval and inference use it).
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Mapping, Optional

import numpy as np
from scipy.optimize import minimize_scalar
from scipy.special import expit

from mmvgm.errors import InputError

LOG_T_BOUNDS = (math.log(0.05), math.log(20.0))


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

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Optional[Mapping]) -> "Calibration":
        data = dict(data or {})
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        return cls(**known)


def _log_softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=1, keepdims=True))


def softmax(z: np.ndarray) -> np.ndarray:
    return np.exp(_log_softmax(np.asarray(z, np.float64)))


def sigmoid(z: np.ndarray) -> np.ndarray:
    return expit(np.asarray(z, np.float64))


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


def predictions(calibrated: Mapping[str, np.ndarray], cal: Calibration, task: str) -> np.ndarray:
    """Label index per sample: detection uses the threshold; joint calls a video real below it."""
    if task == "detect":
        return (calibrated["p_fake"] >= cal.threshold).astype(int)
    if task == "trace":
        return calibrated["trace_probs"].argmax(1)
    fake = calibrated["p_fake"] >= cal.threshold
    return np.where(fake, calibrated["trace_probs"].argmax(1) + 1, 0)


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
    if task in ("trace", "joint"):
        trace_logits = np.asarray(logits["trace"], np.float64)
        trace_y = y
        if task == "joint":  # only generated videos train and calibrate the tracing head
            trace_logits, trace_y = trace_logits[y > 0], y[y > 0] - 1
        t = fit_temperature(trace_logits, trace_y)
        if task == "trace":
            cal.temperature = t
        else:
            cal.trace_temperature = t
        cal.open_set_threshold = fit_open_set_threshold(softmax(trace_logits / t), trace_y,
                                                        open_set_percentile)
        cal.open_set_percentile = float(open_set_percentile)
    return cal
