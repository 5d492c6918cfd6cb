"""Enrolling a generator: one new source class from a few examples, the backbone frozen
(``mmvgm enrol``), and the few-shot curve of ``mmvgm eval --enrol-curve``.

The backbone is never trained again. Its embeddings (``features``, the input of the tracing
head) of the checkpoint's own training data and of the k examples give a new tracing head
with one more class, fitted by one of ``HEAD_FITS``:

* ``prototype``: nearest class mean. Each class is the mean embedding of its videos, and a
  video goes to the nearest mean (squared Euclidean). That is exactly a linear head,
  ``2 m_c . f - |m_c|^2`` (the ``|f|^2`` term is the same for every class), so the enrolled
  checkpoint is an ordinary one with a wider ``trace`` layer.
* ``refit``: multinomial logistic regression on the frozen embeddings (scikit-learn), classes
  weighted by their inverse frequency so that k examples count as much as a full class.

Which one is the default, and why, is measured by ``benchmarks/bench_zeroshot.py`` (the figures
are in ``benchmarks/README.md``).

Honest numbers: the base data is split again with the checkpoint's own seed and ratios (the
same split as training); ``train`` fits the head, ``val`` refits the temperature and the open-set
threshold (with the examples' leave-one-out logits, so the new class is calibrated on videos
its head did not see), and ``test`` gives the accuracy on the existing classes before and after.
"""
from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np
import torch

from mmvgm.errors import CheckpointError, InputError, PathLike

HeadFit = Callable[[np.ndarray, np.ndarray, int], Tuple[np.ndarray, np.ndarray]]
DEFAULT_REPEATS = 5
CURVE_KS = (1, 5, 10, 20)


def prototype_head(features: np.ndarray, y: np.ndarray, classes: int) -> Tuple[np.ndarray, np.ndarray]:
    """Nearest class mean as a linear head: ``(W (classes, D), b (classes,))``."""
    means = np.stack([features[y == c].mean(0) for c in range(classes)])
    return 2.0 * means, -(means ** 2).sum(1)


def refit_head(features: np.ndarray, y: np.ndarray, classes: int) -> Tuple[np.ndarray, np.ndarray]:
    """Class-balanced multinomial logistic regression on standardised embeddings, folded back
    into a linear head on the raw ones: ``(W (classes, D), b (classes,))``."""
    from sklearn.linear_model import LogisticRegression

    mean, sd = features.mean(0), features.std(0) + 1e-6
    fit = LogisticRegression(class_weight="balanced", max_iter=2000).fit((features - mean) / sd, y)
    coef, intercept = fit.coef_, fit.intercept_
    if classes == 2:  # scikit-learn's binary case: one logit for class 1
        coef, intercept = np.vstack([np.zeros_like(coef), coef]), np.r_[0.0, intercept]
    weights = coef / sd
    return weights, intercept - weights @ mean


HEAD_FITS: Dict[str, HeadFit] = {"prototype": prototype_head, "refit": refit_head}
DEFAULT_METHOD = "prototype"


@dataclass
class Embedded:
    """Source videos of one part: embeddings, source index, the checkpoint's own trace logits."""

    features: np.ndarray
    y: np.ndarray
    trace: np.ndarray
    detect: Optional[np.ndarray] = None
    skipped: List[Tuple[str, str]] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.y)


@dataclass
class Runner:
    """Embeds samples with a loaded checkpoint through ``engine.embed.model_outputs``."""

    model: torch.nn.Module
    meta: Any
    device: torch.device
    precision: str = "auto"
    batch_size: int = 8
    workers: int = 0
    progress: bool = True
    threads: Optional[int] = None

    def __call__(self, samples: Sequence, desc: str) -> Embedded:
        """The source videos among ``samples`` (a joint checkpoint's real videos are not a
        source: left out); unlabelled samples (examples) keep source index -1."""
        from mmvgm.data.transforms import VideoTransform
        from mmvgm.engine.embed import model_outputs

        labelled = any(s.label is not None for s in samples)
        preds = model_outputs(self.model, samples, VideoTransform.from_config(self.meta.preprocess),
                              self.meta.frames, self.meta.sampling, ("features", "trace", "detect"),
                              label_to_index=self.meta.label_set.label_to_index if labelled else None,
                              device=self.device, precision=self.precision, batch_size=self.batch_size,
                              workers=self.workers, progress=self.progress, desc=desc, threads=self.threads)
        y = preds.labels
        keep = np.ones(len(y), bool)
        if labelled and self.meta.task == "joint":  # label 0 is real; sources count from 1
            keep, y = y > 0, y - 1
        out = preds.logits
        width = len(self.meta.source_labels)
        return Embedded(out["features"][keep] if "features" in out else np.zeros((0, 0)), y[keep],
                        out["trace"][keep] if "trace" in out else np.zeros((0, width)),
                        out["detect"][keep] if "detect" in out else None, list(preds.skipped))


# ----------------------------------------------------------------------------- enrol

@dataclass
class EnrolResult:
    checkpoint: Optional[Path]
    meta: Any
    model: torch.nn.Module
    report: Dict[str, Any]
    seconds: float = 0.0


def enrol(checkpoint: PathLike, source: str, data: PathLike, out: Optional[PathLike] = None, *,
          base_data: Optional[PathLike] = None, method: str = DEFAULT_METHOD, display: Optional[str] = None,
          batch_size: int = 8, workers: int = 2, device: Optional[str] = None, precision: str = "auto",
          synthetic: bool = False, progress: bool = True, threads: Optional[int] = None) -> EnrolResult:
    """Add the source ``source`` to a trace or joint checkpoint from the videos under ``data``
    (every one is an example of it), the backbone frozen; save to ``out`` when given.

    ``base_data``: the data of the existing classes [default: the checkpoint's training data,
    as recorded in its ``mmvgm.yaml``]. ``report``: accuracy on the existing classes (test
    split) before and after, the open-set threshold before and after, the examples' leave-one-out
    accuracy and, for joint checkpoints, how many of them the detection head calls fake."""
    from mmvgm.checkpoint.files import load_checkpoint, read_meta, save_checkpoint
    from mmvgm.io.discovery import Sample, list_inputs
    from mmvgm.runtime import pick_device, precision_dtype, precision_name

    started = time.perf_counter()
    check_method(method)
    meta = read_meta(checkpoint)
    check_enrollable(meta, source)
    base = base_data_path(meta, base_data)
    examples = [Sample(p, None) for p in list_inputs(data)[0]]
    dev = pick_device(device)
    precision = precision_name(precision_dtype(precision, dev, meta.precision))
    model, meta = load_checkpoint(checkpoint, device=dev)
    run = Runner(model, meta, dev, precision, batch_size, workers, progress, threads)
    parts = embed_base(run, base, exclude=[source], check_against=examples)
    new = run(examples, desc=f"embedding the {source} examples")
    if len(new) == 0:
        raise InputError(f"none of the {len(examples)} examples could be read", data)
    head, calibration, report = fit_enrolment(meta, parts, new, method)
    report.update(source=source, examples=str(os.path.abspath(data)), base_data=str(os.path.abspath(base)),
                  skipped=[{"path": p, "reason": r} for p, r in new.skipped])
    enrolled = with_trace_head(model, head)
    new_meta = enrolled_meta(meta, enrolled, calibration, source, display, report, data, synthetic)
    dest = save_checkpoint(out, enrolled.cpu(), new_meta) if out is not None else None
    return EnrolResult(dest, new_meta, enrolled, report, time.perf_counter() - started)


def check_method(method: str) -> None:
    if method not in HEAD_FITS:
        from mmvgm.config import did_you_mean

        raise InputError(f"unknown enrolment method '{method}'{did_you_mean(str(method), HEAD_FITS)}; "
                         f"use one of {', '.join(HEAD_FITS)}")


def check_enrollable(meta: Any, source: str) -> None:
    """A new source needs a tracing head (trace or joint) and a name it does not know yet."""
    if meta.task == "detect":
        raise CheckpointError("this checkpoint only detects (task detect): a source can be enrolled into a "
                              "trace or joint checkpoint")
    if source in meta.label_names:
        raise InputError(f"the checkpoint already knows '{source}' (its classes: {', '.join(meta.label_names)})")
    if not str(source).strip():
        raise InputError("--source needs a name")


def base_data_path(meta: Any, base_data: Optional[PathLike]) -> Path:
    """``base_data``, else the training data recorded in the checkpoint; it must exist."""
    recorded = (meta.data or {}).get("path")
    path = base_data or recorded
    if not path:
        raise InputError("the checkpoint records no training data: pass --base-data DATA (videos of its "
                         "existing classes, split as in training)")
    if not Path(path).exists():
        hint = "" if base_data else " (the training data recorded in the checkpoint); pass --base-data DATA"
        raise InputError(f"base data not found{hint}", path)
    return Path(path)


def embed_base(run: Runner, data: PathLike, exclude: Sequence[str] = (),
               parts: Sequence[str] = ("train", "val", "test"), check_against: Sequence = ()) -> Dict[str, Embedded]:
    """The existing classes' source videos of each part of ``data``, split with the
    checkpoint's seed and ratios (``engine.tasks.task_splits``, as training split them)."""
    from mmvgm.data.splits import check_duplicates
    from mmvgm.engine.tasks import task_splits
    from mmvgm.io.discovery import Sample

    stored = (run.meta.data or {}).get("split") or {}
    splits, _ = task_splits(data, run.meta.task, run.meta.label_set, stored.get("ratios", [0.8, 0.1, 0.1]),
                            stored.get("seed", 2024), duplicates="off", exclude=exclude)
    if check_against:  # an example that is also a held-out base video would inflate the accuracy
        check_duplicates({"train": [*splits["train"], *[Sample(s.path, None, "train") for s in check_against]],
                          "val": splits["val"], "test": splits["test"]}, policy="warn")
    return {name: run(splits[name], desc=f"embedding the base {name} split") for name in parts}


def fit_enrolment(meta: Any, parts: Mapping[str, Embedded], new: Embedded, method: str):
    """(the new head's (W, b), the recalibrated ``Calibration``, the report) from the base
    parts' and the examples' embeddings."""
    from mmvgm.checkpoint.calibration import Calibration, calibration_warnings, fit_trace_calibration

    n_old = len(meta.source_labels)
    head = fit_head(method, parts["train"], new.features, n_old)
    val_logits, val_y = [apply_head(head, parts["val"].features)], [parts["val"].y]
    loo = leave_one_out_logits(method, parts["train"], new.features, n_old)
    if loo is not None:
        val_logits.append(loo)
        val_y.append(np.full(len(loo), n_old))
    logits, y = np.concatenate(val_logits), np.concatenate(val_y)
    if len(y) == 0:
        raise InputError("nothing to calibrate on: the base val split has no source videos and one example "
                         "has no leave-one-out; add examples")
    calibration = Calibration.from_dict(meta.calibration.to_dict())
    fit_trace_calibration(calibration, logits, y, meta.task, meta.calibration.open_set_percentile or 5.0)
    calibration.warnings = calibration_warnings(calibration)
    left_out = int(len(y) - len(parts["val"]))
    calibration.fitted_on = {**calibration.fitted_on,
                             "enrolment": {"val": int(len(parts["val"])), "examples_left_out": left_out}}
    test = parts["test"]
    report = {"method": method, "k": int(len(new)),
              "existing_classes": {"n_test": int(len(test)),
                                   "accuracy_before": _accuracy(test.trace, test.y),
                                   "accuracy_after": _accuracy(apply_head(head, test.features), test.y)},
              "new_class": {"leave_one_out_accuracy": None if loo is None
                            else _accuracy(loo, np.full(len(loo), n_old))},
              "open_set_threshold": {"before": meta.calibration.open_set_threshold,
                                     "after": calibration.open_set_threshold}}
    if meta.task == "joint" and new.detect is not None:
        from mmvgm.checkpoint.calibration import calibrate_outputs, is_fake

        p_fake = calibrate_outputs({"detect": new.detect}, meta.calibration, "detect")["p_fake"]
        report["new_class"]["detected_as_fake"] = float(is_fake(p_fake, meta.calibration).mean())
    return head, calibration, report


def fit_head(method: str, base: Embedded, new_features: np.ndarray, n_old: int) -> Tuple[np.ndarray, np.ndarray]:
    """The head over ``n_old + 1`` classes from the base embeddings and the new examples'."""
    features = np.concatenate([base.features, new_features]).astype(np.float64)
    y = np.concatenate([base.y, np.full(len(new_features), n_old)])
    missing = sorted(set(range(n_old)) - set(base.y.tolist()))
    if missing:
        raise InputError(f"the base train split has no video of class index {missing}: every existing class "
                         "needs videos to keep its place in the head")
    return HEAD_FITS[method](features, y, n_old + 1)


def leave_one_out_logits(method: str, base: Embedded, new_features: np.ndarray, n_old: int) -> Optional[np.ndarray]:
    """Each example's logits under the head fitted without it (None for a single example)."""
    k = len(new_features)
    if k < 2:
        return None
    rows = [apply_head(fit_head(method, base, np.delete(new_features, i, axis=0), n_old), new_features[i:i + 1])
            for i in range(k)]
    return np.concatenate(rows)


def apply_head(head: Tuple[np.ndarray, np.ndarray], features: np.ndarray) -> np.ndarray:
    """Logits (n, classes) of embeddings (n, D) under a head ``(W, b)``."""
    weights, bias = head
    if len(features) == 0:  # an empty part: its embedding width is unknown, its logits are none
        return np.zeros((0, len(bias)))
    return np.asarray(features, np.float64) @ weights.T + bias


def _accuracy(logits: np.ndarray, y: np.ndarray) -> Optional[float]:
    return float((np.asarray(logits).argmax(1) == y).mean()) if len(y) else None


def with_trace_head(model: torch.nn.Module, head: Tuple[np.ndarray, np.ndarray]) -> torch.nn.Module:
    """``model`` with its ``trace`` layer replaced by ``head`` (one more class); the backbone and
    the detection head are untouched."""
    from mmvgm.models.heads import TraceHead

    weights, bias = head
    old = model.heads["trace"]
    new = TraceHead(weights.shape[1], weights.shape[0], old.dropout.p)
    with torch.no_grad():
        new.proj.weight.copy_(torch.as_tensor(weights, dtype=old.proj.weight.dtype))
        new.proj.bias.copy_(torch.as_tensor(bias, dtype=old.proj.bias.dtype))
    model.heads["trace"] = new.to(old.proj.weight.device)
    model.num_classes = int(weights.shape[0])
    return model.eval()


def enrolled_meta(meta: Any, model: torch.nn.Module, calibration: Any, source: str, display: Optional[str],
                  report: Mapping[str, Any], data: PathLike, synthetic: bool):
    """The enrolled checkpoint's ``CheckpointMeta``: the label set with ``source`` at the end,
    the new calibration, and the enrolment recorded under ``data.enrolled``."""
    from mmvgm.data.labels import LabelSet
    from mmvgm.engine.tasks import samples_fingerprint
    from mmvgm.io.discovery import Sample, list_inputs
    from mmvgm.runtime import package_versions

    old = meta.label_set
    labels = LabelSet(f"{old.name}+{source}", [*old.names, source], [*old.display, display or source],
                      task=old.task, negative=old.negative)
    paths, root = list_inputs(data)
    entry = {**report, "fingerprint": samples_fingerprint([Sample(p, source) for p in paths], root)}
    info = {**(meta.data or {}), "enrolled": [*(meta.data or {}).get("enrolled", []), entry]}
    return meta.replace(model_cfg=model.config, labels=labels.to_dict(), calibration=calibration, data=info,
                        versions=package_versions(), synthetic=bool(meta.synthetic or synthetic))


# ----------------------------------------------------------------------------- the few-shot curve

def parse_ks(text: str) -> List[int]:
    """``"1,5,10,20"`` -> ``[1, 5, 10, 20]`` (sorted, each >= 1); else a one-line ``InputError``."""
    try:
        ks = sorted({int(part) for part in str(text).split(",") if part.strip()})
    except ValueError:
        raise InputError(f"--enrol-curve takes example counts such as 1,5,10,20, got '{text}'") from None
    if not ks or ks[0] < 1:
        raise InputError(f"--enrol-curve takes example counts of 1 or more, such as 1,5,10,20, got '{text}'")
    return ks


def enrol_curve(run: Runner, data: PathLike, holdout_class: str, ks: Sequence[int] = CURVE_KS, *,
                method: str = DEFAULT_METHOD, repeats: int = DEFAULT_REPEATS, seed: int = 2024) -> Dict[str, Any]:
    """Attribution accuracy after enrolling ``holdout_class`` (a data label the checkpoint never
    saw) from k of its videos, for each k, and the open-set AUROC before any enrolment.

    Each repeat shuffles the held-out videos (seeded): the first k enrol, those after the
    largest k test, the same ones for every k, beside the base test split's source videos.
    The base train split gives the existing classes' embeddings, as ``enrol`` uses them."""
    from mmvgm.io.discovery import Sample, discover

    check_method(method)
    ks = sorted({int(k) for k in ks})
    parts = embed_base(run, data, exclude=[holdout_class], parts=("train", "test"))
    held = run([Sample(s.path, None) for s in discover(data) if s.label == holdout_class],
               desc=f"embedding held-out {holdout_class}")
    if len(held) <= ks[-1]:
        raise InputError(f"--enrol-curve up to k = {ks[-1]} needs more than {ks[-1]} readable videos of "
                         f"'{holdout_class}' (k to enrol, the rest to test); found {len(held)}", data)
    n_old, test = len(run.meta.source_labels), parts["test"]
    rng = np.random.default_rng(seed)
    scores: Dict[int, List[Tuple[float, float, float]]] = {k: [] for k in ks}
    for _ in range(int(repeats)):
        order = rng.permutation(len(held))
        new_test = held.features[order[ks[-1]:]]
        for k in ks:
            head = fit_head(method, parts["train"], held.features[order[:k]], n_old)
            existing = apply_head(head, test.features).argmax(1) == test.y
            new = apply_head(head, new_test).argmax(1) == n_old
            scores[k].append((float(np.r_[existing, new].mean()), float(new.mean()),
                              float(existing.mean()) if len(existing) else float("nan")))
    return {"class": holdout_class, "method": method, "repeats": int(repeats), "seed": int(seed),
            "n_heldout": len(held), "n_heldout_test": len(held) - ks[-1], "n_existing_test": len(test),
            "before": {"existing_accuracy": _accuracy(test.trace, test.y),
                       "open_set_auroc": _open_set_auroc(run.meta, test, held)},
            "curve": [_curve_point(k, scores[k]) for k in ks]}


def _curve_point(k: int, rows: List[Tuple[float, float, float]]) -> Dict[str, Any]:
    table = np.asarray(rows, np.float64)
    mean, std = np.nanmean(table, 0), np.nanstd(table, 0)
    return {"k": int(k), "accuracy": float(mean[0]), "accuracy_std": float(std[0]),
            "new_class_accuracy": float(mean[1]), "new_class_accuracy_std": float(std[1]),
            "existing_accuracy": float(mean[2]), "existing_accuracy_std": float(std[2])}


def _open_set_auroc(meta: Any, known: Embedded, held: Embedded) -> Optional[float]:
    """Held-out vs known source videos by ``1 - max calibrated source probability`` (as ``eval
    --holdout-class``), with the checkpoint's calibration."""
    from mmvgm.checkpoint.calibration import calibrate_outputs
    from mmvgm.engine.metrics import open_set_auroc

    def confidence(part: Embedded) -> np.ndarray:
        logits = {"trace": part.trace, **({"detect": part.detect} if part.detect is not None else {})}
        return calibrate_outputs(logits, meta.calibration, meta.task)["trace_probs"].max(1)

    return open_set_auroc(1 - confidence(known), 1 - confidence(held))
