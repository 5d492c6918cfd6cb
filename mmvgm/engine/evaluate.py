"""Evaluation: ``evaluate(checkpoint, data, ...) -> dict`` (the content of ``metrics.json``).

- The test split is recomputed from the split seed/ratios stored in the checkpoint with the
  same function training used (``engine.tasks.task_splits``); ``split_matches_training``
  says whether its file fingerprint equals the one recorded at training time.
- Probabilities are calibrated with the checkpoint's validation-fitted temperature and
  thresholds (``engine.calibration``); nothing is fitted on the evaluated data.
- ``perturb``: the whole evaluation is repeated for each perturbation (``engine.perturb``).
- ``holdout_class``: a data label the model never trained on; reports the AUROC of telling
  it apart from the known test videos by ``1 - max calibrated source probability`` (trace,
  joint; open set) and by P(fake) against real test videos (detect, joint).
- ``enrol_curve``: with ``holdout_class``, the few-shot curve of ``engine.enrol.enrol_curve``:
  attribution accuracy after enrolling the held-out class from k of its videos, per k.
- ``attack``: clean and adversarial accuracy with ``mmvgm.attacks.robustness`` (needs
  torchattacks, checked before any work), decided like the table: the checkpoint's calibrated
  threshold, so the attack's clean accuracy is the table's ``accuracy``.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np
import torch

from mmvgm.checkpoint.calibration import (Calibration, calibrate_outputs, class_probabilities, is_fake,
                                          is_unknown, predictions, threshold_summary)
from mmvgm.engine.metrics import binary_metrics, classification_metrics, open_set_auroc
from mmvgm.errors import InputError, PathLike

HEADS = ("detect", "trace")
SPLIT_CHOICES = ("test", "val", "train", "all")
TABLE_METRICS = {"accuracy": "acc", "balanced_accuracy": "bal acc", "macro_f1": "macro F1", "auc": "AUC",
                 "ap": "AP", "tpr_at_fpr_1": "TPR@1%FPR", "tpr_at_fpr_5": "TPR@5%FPR"}


@dataclass
class Predictions:
    """Raw head logits (float32 numpy) with the label index, path and padding of every
    evaluated video, and the files that could not be read."""

    logits: Dict[str, np.ndarray]
    labels: np.ndarray
    paths: List[str]
    skipped: List[Tuple[str, str]] = field(default_factory=list)
    padded: List[int] = field(default_factory=list)


def predict(model: torch.nn.Module, loader, transform, accelerator=None, device=None,
            precision: str = "auto", desc: str = "predicting", progress: bool = True,
            outputs: Sequence[str] = HEADS) -> Predictions:
    """Run ``model`` over a loader of ``data.dataset.Batch`` through the one scoring path
    (``predict.scoring.forward_outputs``, ``precision`` as in ``--precision``); gathers across
    processes. ``outputs``: the model outputs kept in ``Predictions.logits`` [default: the
    heads' logits; also e.g. ``features`` for ``mmvgm enrol``]."""
    from mmvgm.predict.scoring import forward_outputs
    from mmvgm.progress import make_progress
    from mmvgm.runtime import precision_dtype

    was_training = model.training
    model.eval()
    if device is None:
        device = accelerator.device if accelerator is not None else next(model.parameters()).device
    dtype = precision_dtype(precision, torch.device(device))
    logits: Dict[str, List[torch.Tensor]] = {}
    labels, paths, skipped, padded = [], [], [], []
    with make_progress(disable=not progress) as bar:
        task = bar.add_task(desc, total=len(loader))
        for batch in loader:
            skipped.extend(batch.skipped)
            if batch.clips is not None:
                for k, v in forward_outputs(model, batch.clips, transform, torch.device(device), dtype,
                                            outputs).items():
                    logits.setdefault(k, []).append(v.cpu())
                labels.append(batch.labels.cpu())
                paths.extend(batch.paths)
                padded.extend(batch.padded)
            bar.advance(task)
    model.train(was_training)
    preds = Predictions({k: torch.cat(v).numpy() for k, v in logits.items()},
                        torch.cat(labels).numpy() if labels else np.zeros(0, dtype=np.int64), paths, skipped,
                        padded)
    if accelerator is not None and accelerator.num_processes > 1:
        preds = _gather_predictions(preds)
    return preds


def _gather_predictions(local: Predictions) -> Predictions:
    """Every process's predictions, each video once.

    One gather after the loop, not one per batch: a rank whose batch was all unreadable files
    (or held fewer readable ones) would otherwise skip or mismatch a collective and hang the
    others. The copies of the first videos that pad the last batches of a sharded loader are
    dropped by path.
    """
    from accelerate.utils import gather_object

    parts = gather_object([local])
    keep, seen, skipped = [], set(), {}
    for part_index, part in enumerate(parts):
        for row, path in enumerate(part.paths):
            if path not in seen:
                seen.add(path)
                keep.append((part_index, row))
        for path, reason in part.skipped:
            skipped.setdefault(path, reason)
    heads = sorted({k for part in parts for k in part.logits})
    logits = {k: np.stack([parts[i].logits[k][r] for i, r in keep]) for k in heads}
    labels = np.array([parts[i].labels[r] for i, r in keep], dtype=np.int64)
    return Predictions(logits, labels, [parts[i].paths[r] for i, r in keep], list(skipped.items()),
                       [parts[i].padded[r] for i, r in keep])


def metrics_for(preds: Predictions, cal: Calibration, task: str, names: Sequence[str]) -> dict:
    """All metrics of one evaluation, with the checkpoint's calibration applied."""
    if len(preds.labels) == 0:
        return classification_metrics([], np.zeros((0, len(names))), names)
    calibrated = calibrate_outputs(preds.logits, cal, task)
    probs = class_probabilities(calibrated, task)
    out = classification_metrics(preds.labels, probs, names, y_pred=predictions(calibrated, cal, task))
    if task in ("detect", "joint"):
        out["threshold"] = cal.threshold
    if task == "joint":  # the detection head on its own: real vs any source
        out["detect"] = binary_metrics((preds.labels > 0).astype(int), calibrated["p_fake"], cal.threshold)
    if task in ("trace", "joint") and cal.open_set_threshold is not None:
        confidence = calibrated["trace_probs"].max(1)
        out["open_set_threshold"] = cal.open_set_threshold
        out["unknown_rate"] = float(is_unknown(confidence, cal).mean())
    return out


# ----------------------------------------------------------------------------- the door

def evaluate(checkpoint: PathLike, data: PathLike, split: str = "test", out: Optional[PathLike] = None,
             perturb: Optional[str] = None, holdout_class: Optional[str] = None, attack: Optional[str] = None,
             batch_size: int = 8, workers: int = 2, device: Optional[str] = None,
             progress: bool = True, precision: str = "auto",
             predictions_out: Optional[PathLike] = None, threads: Optional[int] = None,
             enrol_curve: Optional[Sequence[int]] = None, enrol_method: str = "prototype") -> dict:
    """Evaluate a checkpoint on ``data``; writes ``metrics.json`` + PNGs into ``out`` if given.

    ``precision``: as ``trace``/``scan --precision`` (the same default; ``metrics.json`` records
    the one it resolved to). ``predictions_out``: a
    JSONL file of the per-file verdicts, in scan's schema, each with its true ``label``.
    ``threads``: fix the compute threads (``--threads``; by default ``runtime.threads`` chooses).
    """
    from mmvgm.checkpoint.files import load_checkpoint, read_meta
    from mmvgm.engine.perturb import parse_perturbations
    from mmvgm.runtime import package_versions, pick_device, precision_dtype, precision_name

    if split not in SPLIT_CHOICES:
        raise InputError(f"unknown split '{split}'; use one of {', '.join(SPLIT_CHOICES)}")
    perturbations = parse_perturbations(perturb) if perturb else []  # bad specs fail before any work
    if attack:  # a bad spec or a missing torchattacks fails before the clean evaluation
        from mmvgm.attacks.robustness import parse_attack_spec, require_torchattacks

        parse_attack_spec(attack)
        require_torchattacks()
    meta = read_meta(checkpoint)
    label_set = meta.label_set
    if enrol_curve:
        _check_enrol_curve(meta, holdout_class, enrol_method)
    if holdout_class and meta.task != "detect" and holdout_class in label_set.names:
        raise InputError(f"--holdout-class '{holdout_class}' is one of the checkpoint's classes; "
                         "hold out a source the model was not trained on")
    dev = pick_device(device)
    # resolved once (auto: as trace and scan resolve it); a precision this device cannot run
    # fails before any work
    precision = precision_name(precision_dtype(precision, dev, meta.precision))
    model, meta = load_checkpoint(checkpoint, device=dev)
    run = _Runner(model, meta, dev, precision, batch_size, workers, progress, threads)
    samples, split_info = _select_samples(meta, data, split, meta.task, label_set, holdout_class)
    if not samples:
        raise InputError(f"no videos to evaluate in the {split} split", data)

    preds = run(samples)
    if len(preds.labels) == 0:
        raise InputError("none of the videos could be read: " +
                         "; ".join(f"{p}: {r}" for p, r in preds.skipped[:3]), data)
    results = _clean_results(checkpoint, data, split, meta, preds, split_info, precision)
    if predictions_out is not None:
        results["predictions"] = str(write_predictions(predictions_out, run.scorer(), preds, label_set.names,
                                                       protect=data))
    if perturbations:
        results["perturbations"] = {p.spec: metrics_for(run(samples, p, desc=f"evaluating {p.spec}"),
                                                        meta.calibration, meta.task, label_set.names)
                                    for p in perturbations}
    if holdout_class:
        results["holdout"] = _holdout(run, samples, preds, meta.calibration, meta.task, data, holdout_class,
                                      label_set)
    if enrol_curve:
        from mmvgm.engine.enrol import Runner, enrol_curve as curve

        results["enrol_curve"] = curve(Runner(model, meta, dev, precision, batch_size, workers, progress, threads),
                                       data, holdout_class, enrol_curve, method=enrol_method,
                                       seed=int(meta.seed if meta.seed is not None else 2024))
    if attack:
        results["attack"] = _attack(run, samples, attack)
    results.update(config=meta.config, seed=meta.seed, trained_with=meta.versions, versions=package_versions())
    if out is not None:
        write_outputs(Path(out), results, preds, meta.calibration, meta.task, label_set.names)
    return results


def _check_enrol_curve(meta, holdout_class: Optional[str], method: str) -> None:
    """Refuse an impossible ``--enrol-curve`` before any video is scored."""
    from mmvgm.engine.enrol import check_method

    if not holdout_class:
        raise InputError("--enrol-curve needs --holdout-class NAME: the source to enrol from k of its videos")
    if meta.task == "detect":
        raise InputError("--enrol-curve needs a trace or joint checkpoint; this one only detects")
    check_method(method)


class _Runner:
    """Scores samples (optionally perturbed) with the evaluated checkpoint: the same dataset,
    loader and scoring path as training's validation and the predictor."""

    def __init__(self, model, meta, device, precision: str, batch_size: int, workers: int,
                 progress: bool, threads: Optional[int] = None) -> None:
        from mmvgm.data.transforms import VideoTransform

        self.model, self.meta, self.device, self.precision = model, meta, device, precision
        self.batch_size, self.workers, self.progress = batch_size, workers, progress
        self.threads = threads
        self.transform = VideoTransform.from_config(meta.preprocess)

    def __call__(self, samples: Sequence, perturbation=None, desc: str = "evaluating") -> Predictions:
        from mmvgm.data.dataset import VideoDataset, make_loader
        from mmvgm.runtime.threads import resolve_threads

        reader = PerturbedReader(perturbation) if perturbation is not None else None
        ds = VideoDataset(samples, self.meta.label_set.label_to_index, num_frames=self.meta.frames,
                          sampling=self.meta.sampling, transform=self.transform, reader=reader)
        loader = make_loader(ds, self.batch_size, workers=self.workers, pin_memory=False)
        with resolve_threads(self.device, self.workers, self.threads).loop():
            return predict(self.model, loader, self.transform, device=self.device, precision=self.precision,
                           desc=desc, progress=self.progress)

    def scorer(self):
        from mmvgm.predict.scoring import Scorer
        from mmvgm.runtime import precision_dtype

        return Scorer(self.model, self.meta, self.transform, self.device,
                      precision_dtype(self.precision, self.device))


def _clean_results(checkpoint: PathLike, data: PathLike, split: str, meta, preds: Predictions,
                   split_info: Mapping[str, Any], precision: str) -> Dict[str, Any]:
    names = meta.label_set.names
    from mmvgm.checkpoint.hub import is_hub_id

    where = str(checkpoint) if is_hub_id(checkpoint) else os.path.abspath(checkpoint)  # an id stays an id
    results: Dict[str, Any] = {"checkpoint": where, "data": os.path.abspath(data),
                               "split": split, "task": meta.task, "labels": names, "precision": precision,
                               **split_info}
    results.update(metrics_for(preds, meta.calibration, meta.task, names))
    results["skipped"] = [{"path": p, "reason": r} for p, r in preds.skipped]
    results["calibration"] = meta.calibration.to_dict()
    if meta.task != "trace":  # what the threshold was fitted on and can promise (README: Calibration)
        results["threshold_summary"] = threshold_summary(meta.calibration)
    return results


def write_predictions(dest: PathLike, scorer, preds: Predictions, names: Sequence[str],
                      protect: Optional[PathLike] = None) -> Path:
    """Per-file verdicts of ``preds`` (scan's JSONL schema, each with its true ``label``), and an
    error line per unreadable file; written atomically, never over ``protect`` (the data)."""
    import json

    from mmvgm.io.atomic import write_text_atomic
    from mmvgm.predict.verdict import Verdict

    verdicts = scorer.verdicts(preds.paths, preds.logits, preds.padded, scorer.meta.frames, scorer.meta.sampling)
    lines = [v.with_label(names[int(y)] if y >= 0 else None).to_json()
             for v, y in zip(verdicts, preds.labels)]
    lines += [Verdict.failed(path, reason).to_json() for path, reason in preds.skipped]
    return write_text_atomic(dest, "".join(json.dumps(line) + "\n" for line in lines), protect=protect)


def _select_samples(meta, data: PathLike, split: str, task: str, label_set,
                    holdout_class: Optional[str]) -> Tuple[list, dict]:
    from mmvgm.io.discovery import discover
    from mmvgm.engine.tasks import relabel, task_splits

    exclude = [holdout_class] if holdout_class else []
    if split == "all":
        samples = relabel([s for s in discover(data) if s.label not in exclude], task, label_set)
        return samples, {"n_available": len(samples)}
    stored = meta.data or {}
    split_cfg = stored.get("split") or {}
    ratios = split_cfg.get("ratios", [0.8, 0.1, 0.1])
    seed = split_cfg.get("seed", 2024)
    splits, info = task_splits(data, task, label_set, ratios, seed, duplicates="off", exclude=exclude)
    trained = (stored.get("split_fingerprints") or {}).get(split)
    now = info["split_fingerprints"][split]
    if stored.get("real_only"):  # fitted on real videos alone (fit-real): compare those
        from mmvgm.engine.fit_real import real_fingerprint

        now = real_fingerprint(splits[split])
    matches = trained is not None and trained == now
    if not matches:
        from mmvgm.progress import stderr_console_now

        stderr_console_now().print(f"[yellow]warning: the recomputed {split} split differs from the one recorded "
                             "at training time (different data?); metrics may include training videos")
    return splits[split], {"split_seed": seed, "split_ratios": ratios, "split_matches_training": matches}


class PerturbedReader:
    """A picklable ``VideoDataset`` reader that perturbs each clip after decoding."""

    def __init__(self, perturbation) -> None:
        self.perturbation = perturbation

    def __call__(self, path: str, num_frames: int = 16, **kwargs: Any) -> np.ndarray:
        from mmvgm.io import read_clip

        clip = read_clip(path, num_frames=self.perturbation.frames_needed(num_frames), **kwargs)
        out = self.perturbation(np.asarray(clip))
        if out.shape[0] != num_frames:
            out = out[:num_frames] if out.shape[0] > num_frames else \
                np.concatenate([out, np.repeat(out[-1:], num_frames - out.shape[0], 0)])
        return out


def _holdout(run, known_samples, known_preds: Predictions, cal: Calibration, task: str, data: PathLike,
             holdout_class: str, label_set) -> dict:
    from mmvgm.io.discovery import discover

    held = [s for s in discover(data) if s.label == holdout_class]
    if not held:
        labels = sorted({s.label for s in discover(data)})
        raise InputError(f"--holdout-class '{holdout_class}' has no videos in the data "
                         f"(labels found: {', '.join(map(str, labels))})", data)
    from dataclasses import replace  # held-out videos have no class index: label None -> -1

    held_preds = run([replace(s, label=None) for s in held], desc=f"evaluating held-out {holdout_class}")
    known_cal = calibrate_outputs(known_preds.logits, cal, task)
    held_cal = calibrate_outputs(held_preds.logits, cal, task)
    out: Dict[str, Any] = {"class": holdout_class, "n_heldout": len(held_preds.paths),
                           "n_known": len(known_preds.paths)}
    if task in ("trace", "joint"):
        known_conf, held_conf = known_cal["trace_probs"].max(1), held_cal["trace_probs"].max(1)
        if task == "joint":  # open set among generated videos: compare with known *sources*
            known_conf = known_conf[known_preds.labels > 0]
        out["open_set_auroc"] = open_set_auroc(1 - known_conf, 1 - held_conf)
        if cal.open_set_threshold is not None:
            out["heldout_unknown_rate"] = float(is_unknown(held_conf, cal).mean())
            out["known_unknown_rate"] = float(is_unknown(known_conf, cal).mean()) if len(known_conf) else None
    if task in ("detect", "joint"):
        real_scores = known_cal["p_fake"][known_preds.labels == 0]
        out["detect_auroc_vs_real"] = open_set_auroc(real_scores, held_cal["p_fake"])
        out["heldout_detected_rate"] = float(is_fake(held_cal["p_fake"], cal).mean())
    return out


def _attack(run: "_Runner", samples, attack: str) -> dict:
    """``evaluate_attack`` on the evaluated videos, seen as the table saw them: the same loader
    order, normalisation, precision and decision (``CalibratedRule``), from [0,1] pixels."""
    from mmvgm.attacks.robustness import CalibratedRule, evaluate_attack
    from mmvgm.data.dataset import VideoDataset, make_loader
    from mmvgm.predict.scoring import autocast
    from mmvgm.runtime import precision_dtype

    meta, device, transform = run.meta, run.device, run.transform
    ds = VideoDataset(samples, meta.label_set.label_to_index, num_frames=meta.frames, sampling=meta.sampling,
                      transform=transform)
    loader = make_loader(ds, run.batch_size, pin_memory=False)
    # normalize()'s affine: (x * rescale - mean) / std as one multiply-add, here on 0..255 floats
    mean, std = (torch.tensor(v, dtype=torch.float64).view(-1, 1, 1) for v in (transform.mean, transform.std))
    scale = (transform.rescale / std).float().to(device)
    shift = (-mean / std).float().to(device)
    dtype = precision_dtype(run.precision, device)

    def model_fn(x01: torch.Tensor):  # [0,1] pixels -> the heads' float32 logits
        with autocast(device, dtype):
            out = run.model(torch.addcmul(shift, x01.to(device) * 255.0, scale))
        return {k: out[k].float() for k in HEADS if k in out}

    def batches():
        for b in loader:
            if b.clips is not None:
                yield b.clips.float() / 255.0, b.labels  # the task's label indices, as in the table

    was_training = run.model.training
    run.model.eval()
    try:
        return evaluate_attack(model_fn, batches(), attack, device=device,
                               rule=CalibratedRule(meta.calibration, meta.task))
    finally:
        run.model.train(was_training)


# ----------------------------------------------------------------------------- outputs

def write_outputs(out: Path, results: Mapping[str, Any], preds: Predictions, cal: Calibration, task: str,
                  names: Sequence[str]) -> Dict[str, Path]:
    """``metrics.json``, ``roc.png``, ``confusion.png`` (and ``roc_detect.png`` for joint)."""
    from mmvgm.engine.plots import confusion_png, roc_png
    from mmvgm.io.atomic import write_json_atomic

    out.mkdir(parents=True, exist_ok=True)
    calibrated = calibrate_outputs(preds.logits, cal, task)
    probs = class_probabilities(calibrated, task)
    files = {"metrics": write_json_atomic(out / "metrics.json", dict(results)),
             "roc": roc_png(out / "roc.png", preds.labels, probs, names, title=f"ROC ({task})"),
             "confusion": confusion_png(out / "confusion.png", results["confusion"], names)}
    if results.get("enrol_curve"):
        from mmvgm.engine.plots import enrol_curve_png

        files["enrol_curve"] = enrol_curve_png(out / "enrol_curve.png", results["enrol_curve"])
    if task == "joint":
        p = calibrated["p_fake"]
        files["roc_detect"] = roc_png(out / "roc_detect.png", (preds.labels > 0).astype(int),
                                      np.stack([1 - p, p], 1), ["real", "fake"], title="ROC (detection head)")
    return files


def results_table(results: Mapping[str, Any]):
    """A rich Table: one row for clean data and one per perturbation."""
    from rich.table import Table

    table = Table(title=f"{results.get('task')} metrics on {results.get('split')} ({results.get('n')} videos)")
    table.add_column("input")
    for header in TABLE_METRICS.values():
        table.add_column(header, justify="right")
    rows = [("clean", results)] + list((results.get("perturbations") or {}).items())
    for name, m in rows:
        table.add_row(name, *("n/a" if m.get(k) is None else f"{m[k]:.4f}" for k in TABLE_METRICS))
    return table
