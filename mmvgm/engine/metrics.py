"""Classification metrics (scikit-learn): one dict per evaluation, JSON-ready.

``classification_metrics`` takes calibrated class probabilities. Binary detection is the
two-class case with column 1 = "fake"; its predictions use the fitted threshold instead of
the argmax. AUC and AP are binary for two classes and macro one-vs-rest otherwise, computed
over the classes that are present (a class absent from ``y_true`` has no ROC curve).
"""
from __future__ import annotations

from typing import Optional, Sequence

import numpy as np
from sklearn import metrics as skm

FPR_POINTS = (0.01, 0.05)


def tpr_at_fpr(y_true: np.ndarray, scores: np.ndarray, fpr: float) -> Optional[float]:
    """Highest true-positive rate whose false-positive rate is at most ``fpr`` (None if undefined)."""
    y_true = np.asarray(y_true).astype(int)
    if y_true.min(initial=1) == y_true.max(initial=0):
        return None
    fprs, tprs, _ = skm.roc_curve(y_true, scores)
    ok = fprs <= fpr + 1e-12
    return float(tprs[ok].max()) if ok.any() else 0.0


def _ranking_metrics(y_true: np.ndarray, probs: np.ndarray) -> dict:
    """AUC / AP / TPR@FPR: binary on column 1 for two classes, else macro one-vs-rest."""
    k = probs.shape[1]
    columns = [1] if k == 2 else list(range(k))
    per = {"auc": [], "ap": [], **{_tpr_key(f): [] for f in FPR_POINTS}}
    for c in columns:
        positive = (y_true == c).astype(int)
        if positive.min(initial=1) == positive.max(initial=0):
            continue  # class absent (or the only one): no curve
        per["auc"].append(skm.roc_auc_score(positive, probs[:, c]))
        per["ap"].append(skm.average_precision_score(positive, probs[:, c]))
        for f in FPR_POINTS:
            per[_tpr_key(f)].append(tpr_at_fpr(positive, probs[:, c], f))
    out = {key: (float(np.mean(vals)) if vals else None) for key, vals in per.items()}
    out["auc_average"] = "binary" if k == 2 else "macro-ovr"
    out["auc_classes"] = len(per["auc"])
    return out


def _tpr_key(fpr: float) -> str:
    return f"tpr_at_fpr_{round(fpr * 100):g}"


def classification_metrics(y_true: Sequence[int], probs: np.ndarray, names: Sequence[str],
                           y_pred: Optional[Sequence[int]] = None) -> dict:
    """Every metric for one evaluation.

    ``probs``: (n, K) calibrated probabilities, K == len(names). ``y_pred`` defaults to the
    argmax (pass thresholded predictions for detection).
    """
    y_true = np.asarray(y_true, dtype=int)
    probs = np.asarray(probs, dtype=np.float64)
    if probs.ndim != 2 or probs.shape != (len(y_true), len(names)):
        raise ValueError(f"probs must be (n, {len(names)}), got {probs.shape} for n={len(y_true)}")
    y_pred = probs.argmax(1) if y_pred is None else np.asarray(y_pred, dtype=int)
    labels = list(range(len(names)))
    out: dict = {"n": int(len(y_true))}
    if len(y_true) == 0:
        return {**out, "accuracy": None, "balanced_accuracy": None, "macro_f1": None, "auc": None,
                "ap": None, "confusion": [], "labels": list(names), "per_class": {}}
    present = sorted(set(y_true.tolist()))
    out["accuracy"] = float(skm.accuracy_score(y_true, y_pred))
    # balanced accuracy = mean recall over the classes present in y_true
    recalls = skm.recall_score(y_true, y_pred, labels=present, average=None, zero_division=0)
    out["balanced_accuracy"] = float(np.mean(recalls))
    out["macro_f1"] = float(skm.f1_score(y_true, y_pred, labels=present, average="macro",
                                         zero_division=0))
    out.update(_ranking_metrics(y_true, probs))
    out["confusion"] = skm.confusion_matrix(y_true, y_pred, labels=labels).tolist()
    out["labels"] = list(names)
    p, r, f, s = skm.precision_recall_fscore_support(y_true, y_pred, labels=labels, zero_division=0)
    out["per_class"] = {name: {"precision": float(p[i]), "recall": float(r[i]), "f1": float(f[i]),
                               "support": int(s[i])} for i, name in enumerate(names)}
    return out


def binary_metrics(y_true: Sequence[int], p_fake: Sequence[float], threshold: float = 0.5,
                   names: Sequence[str] = ("real", "fake")) -> dict:
    """Detection metrics: real = 0, fake = 1; a video is called fake when ``p_fake >= threshold``."""
    p_fake = np.asarray(p_fake, dtype=np.float64)
    probs = np.stack([1.0 - p_fake, p_fake], axis=1)
    out = classification_metrics(y_true, probs, names, y_pred=(p_fake >= threshold).astype(int))
    out["threshold"] = float(threshold)
    return out


def open_set_auroc(known_scores: Sequence[float], unknown_scores: Sequence[float]) -> Optional[float]:
    """AUROC of telling held-out (positive) from known (negative) samples by ``score``."""
    known, unknown = np.asarray(known_scores, float), np.asarray(unknown_scores, float)
    if len(known) == 0 or len(unknown) == 0:
        return None
    y = np.r_[np.zeros(len(known)), np.ones(len(unknown))]
    return float(skm.roc_auc_score(y, np.r_[known, unknown]))
