"""ROC, confusion-matrix and few-shot-curve PNGs (matplotlib's Agg canvas: no display, no global pyplot state)."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from sklearn.metrics import auc as sk_auc
from sklearn.metrics import roc_curve

from mmvgm.io.atomic import atomic_path


def _save(fig: Figure, dest: Path) -> Path:
    FigureCanvasAgg(fig)
    with atomic_path(dest) as tmp:
        fig.savefig(tmp, format="png", dpi=120, bbox_inches="tight")
    return Path(dest)


def roc_png(dest: Path, y_true: Sequence[int], probs: np.ndarray, names: Sequence[str],
            title: str = "ROC") -> Path:
    """Binary ROC for two classes (column 1 positive), else one one-vs-rest curve per class."""
    y_true = np.asarray(y_true, int)
    probs = np.asarray(probs, float)
    fig = Figure(figsize=(5, 5))
    ax = fig.add_subplot(1, 1, 1)
    columns = [1] if probs.shape[1] == 2 else range(probs.shape[1])
    for c in columns:
        positive = (y_true == c).astype(int)
        if positive.min(initial=1) == positive.max(initial=0):
            continue
        fpr, tpr, _ = roc_curve(positive, probs[:, c])
        label = names[c] if probs.shape[1] > 2 else f"{names[1]} vs {names[0]}"
        ax.plot(fpr, tpr, lw=1.5, label=f"{label} (AUC {sk_auc(fpr, tpr):.3f})")
    ax.plot([0, 1], [0, 1], ls="--", c="grey", lw=1)
    for f in (0.01, 0.05):
        ax.axvline(f, ls=":", c="lightgrey", lw=1)
    ax.set(xlabel="false-positive rate", ylabel="true-positive rate", title=title, xlim=(0, 1),
           ylim=(0, 1.01))
    if ax.get_legend_handles_labels()[0]:
        ax.legend(loc="lower right", fontsize="small")
    return _save(fig, Path(dest))


def confusion_png(dest: Path, confusion: Sequence[Sequence[int]], names: Sequence[str],
                  title: str = "Confusion matrix") -> Path:
    """Counts with row-normalised colour (rows: true class, columns: predicted)."""
    cm = np.asarray(confusion, float)
    rows = cm.sum(1, keepdims=True)
    norm = np.divide(cm, rows, out=np.zeros_like(cm), where=rows > 0)
    size = max(4.0, 0.6 * len(names) + 2)
    fig = Figure(figsize=(size, size))
    ax = fig.add_subplot(1, 1, 1)
    ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(len(names)), labels=names, rotation=45, ha="right", fontsize="small")
    ax.set_yticks(range(len(names)), labels=names, fontsize="small")
    for i in range(cm.shape[0]):
        for j in range(cm.shape[1]):
            ax.text(j, i, f"{int(cm[i, j])}", ha="center", va="center", fontsize="small",
                    color="white" if norm[i, j] > 0.5 else "black")
    ax.set(xlabel="predicted", ylabel="true", title=title)
    return _save(fig, Path(dest))


def enrol_curve_png(dest: Path, curve: Mapping[str, Any]) -> Path:
    """Attribution accuracy against the examples enrolled (``engine.enrol.enrol_curve``): all
    test videos, the new class, the existing classes (mean and spread over the repeats), and
    the existing classes' accuracy before enrolment."""
    points = curve["curve"]
    ks = [p["k"] for p in points]
    fig = Figure(figsize=(5.5, 4))
    ax = fig.add_subplot(1, 1, 1)
    for key, label in (("accuracy", "all test videos"), ("new_class_accuracy", f"new class ({curve['class']})"),
                       ("existing_accuracy", "existing classes")):
        ax.errorbar(ks, [p[key] for p in points], yerr=[p[f"{key}_std"] for p in points], marker="o",
                    capsize=3, lw=1.5, label=label)
    before = (curve.get("before") or {}).get("existing_accuracy")
    if before is not None:
        ax.axhline(before, ls="--", c="grey", lw=1, label="existing classes, before")
    auroc = (curve.get("before") or {}).get("open_set_auroc")
    note = "" if auroc is None else f"; open-set AUROC before: {auroc:.3f}"
    ax.set(xscale="log", xticks=ks, xlabel="examples enrolled (k)", ylabel="attribution accuracy", ylim=(0, 1.02),
           title=f"enrolling {curve['class']} ({curve['method']}, {curve['repeats']} repeats{note})")
    ax.set_xticklabels([str(k) for k in ks])
    ax.legend(loc="lower right", fontsize="small")
    return _save(fig, Path(dest))
