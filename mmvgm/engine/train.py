"""The training loop: ``train(cfg) -> TrainResult``, readable top to bottom (nanoGPT style).

accelerate handles DDP (the process group, the gradient all-reduce, sharded loaders) and
gradient accumulation, so the same code runs on a laptop CPU and under ``accelerate launch
--num_processes 8 -m mmvgm train``. The device and the numeric precision are this module's: it
autocasts through ``predict.scoring.autocast`` (with ``torch.amp.GradScaler`` for fp16) and
validates under the same precision through the one scoring path that eval and the predictor use,
so the checkpoint records the precision its calibration was fitted under.

Per epoch: train on the train split, predict the validation split, fit calibration on it
(temperature, detection threshold, open-set threshold: ``checkpoint.calibration``), compute the
validation metrics with it, save ``out/last/`` (with optimizer/scheduler/RNG state for
``--resume``) and, when the validation metric improved, ``out/best/``. The test split is
never touched here. ``--resume`` restores ``out/last/`` and continues; with the same seed
the result equals an uninterrupted run (shuffling is seeded per epoch, RNG states restored).

Reading order: ``train`` -> ``_train`` (the epoch loop) -> ``_setup`` (config, accelerator,
data and loaders, model/optimizer/schedule, resume, checkpoint meta) -> ``_train_epoch`` and
``_step`` -> ``_validate`` -> ``_save``.

Research defaults (VGMShield): AdamW, lr 1e-5, batch 4, 20 epochs, linear schedule (warmup 0;
200 steps for X-CLIP), cross-entropy for trace; the detect head is one logit trained with
BCE-with-logits (equivalent to 2-way cross-entropy with one logit fixed at 0). Split 80/10/10,
stratified, seed 2024.
"""
from __future__ import annotations

import copy
import json
import math
import os
import random
import re
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Mapping, Optional, Sequence, Tuple

import numpy as np
import torch

from mmvgm.config import check_keys, did_you_mean, load_config, merge
from mmvgm.errors import ConfigError, InputError, PathLike

DEFAULTS: Dict[str, Any] = {
    "backbone": None,          # backbone config name/path, or timm:<name>
    "task": "detect",          # detect | trace | joint
    "data": None,              # folder root/<label>/* or a CSV/JSONL manifest
    "labels": None,            # trace/joint label file (default vgmshield9); detect ignores it
    "epochs": 20,
    "batch_size": 4,
    "lr": 1.0e-5,
    "weight_decay": 0.01,      # torch AdamW's default
    "warmup_steps": None,      # None: 200 for X-CLIP backbones, else 0
    "max_grad_norm": None,     # gradient clipping (off, as in the research code)
    "grad_accum": 1,
    "mixed_precision": "auto",  # auto (bf16 on CUDA when supported) | no | bf16 | fp16
    "max_steps": None,         # stop after this many optimizer steps (schedule still spans epochs)
    "frames": None,            # None: the backbone config's
    "size": None,
    "weights": None,           # local pretrained backbone weights
    "dropout": 0.0,
    "sampling": "consecutive",
    "seed": 2024,
    "split": {"ratios": [0.8, 0.1, 0.1], "seed": 2024, "duplicates": "warn"},
    "calibration": {"target_fpr": 0.05, "threshold": None, "open_set_percentile": 5.0},
    "best_metric": "auto",     # auto: auc (detect), macro_f1 (trace/joint); or loss, accuracy, ...
    "workers": 2,
    "threads": None,           # compute threads (--threads, $MMVGM_THREADS); None: runtime.threads decides
    "eval_batch_size": None,   # None: batch_size
    "out": None,               # None: runs/<backbone>-<task>
    "resume": False,
    "cpu": False,              # force CPU even when CUDA is present
    "progress": True,
    "synthetic": False,        # the data was made, not filmed (mmvgm demo): every verdict then says so
}
NESTED = {"split": ("ratios", "seed", "duplicates"),
          "calibration": ("target_fpr", "threshold", "open_set_percentile")}
# changing these between a run and its --resume would silently train something else
RESUME_FIXED = ("backbone", "task", "data", "labels", "batch_size", "lr", "weight_decay", "warmup_steps",
                "grad_accum", "frames", "size", "weights", "dropout", "sampling", "seed", "split", "epochs",
                "max_grad_norm")
MIXED_PRECISION = ("auto", "no", "bf16", "fp16")
LOWER_IS_BETTER = ("loss",)
# the scalar validation metrics stored per checkpoint; best_metric picks one of them (or auto)
SUMMARY_METRICS = ("n", "loss", "accuracy", "balanced_accuracy", "macro_f1", "auc", "ap", "tpr_at_fpr_1",
                   "tpr_at_fpr_5")
BEST_METRICS = ("auto", *SUMMARY_METRICS[1:])
HISTORY_METRICS = ("accuracy", "balanced_accuracy", "macro_f1", "auc")  # per epoch in history.jsonl
LOSS_READ_EVERY = 10
# a training loss within this fraction of the chance loss, or flat above it, for this many epochs in
# a row is a model that has learned nothing beyond the class frequencies (see chance_warning)
CHANCE_TOLERANCE = 0.03
CHANCE_EPOCHS = 3


@dataclass
class TrainResult:
    out_dir: Path
    last_dir: Path
    best_dir: Path
    epochs_run: int
    global_step: int
    best_epoch: Optional[int]
    best_metric: str
    best_value: Optional[float]
    history: List[dict] = field(default_factory=list)
    calibration: dict = field(default_factory=dict)
    is_main_process: bool = True  # False in the other ranks of a DDP run (they print nothing)


# ----------------------------------------------------------------------------- config

def load_train_config(path: Optional[PathLike] = None, overrides: Optional[Mapping[str, Any]] = None) -> dict:
    """DEFAULTS <- train YAML (``configs/train/<name>.yaml`` or a path) <- ``{"a.b": v}`` overrides.

    With ``resume`` and an existing ``<out>/last``, the stored config of that run replaces
    DEFAULTS, so ``mmvgm train --out runs/x --resume`` needs nothing else.
    """
    from mmvgm.config import apply_overrides

    file_cfg: dict = {}
    if path is not None:
        file_cfg = load_config(path, "train")
        validate_keys(file_cfg, path)
    cfg = apply_overrides(merge(DEFAULTS, file_cfg), dict(overrides or {}))
    stored = _stored_config(cfg) if cfg.get("resume") else None
    if stored:  # resume: the run's own config, changed only by what was given now
        cfg = apply_overrides(merge(merge(DEFAULTS, stored), file_cfg), dict(overrides or {}))
    validate_keys(cfg)
    return cfg


def _stored_config(cfg: Mapping[str, Any]) -> Optional[dict]:
    from mmvgm.checkpoint.files import CONFIG_NAME, read_meta

    if not cfg.get("out") or not (Path(cfg["out"]) / "last" / CONFIG_NAME).is_file():
        return None
    stored = dict(read_meta(Path(cfg["out"]) / "last").config or {})
    stored.pop("resume", None)
    return stored


def validate_keys(cfg: Mapping[str, Any], path: Optional[PathLike] = None) -> None:
    check_keys(cfg, DEFAULTS, "train config", path)
    for key, allowed in NESTED.items():
        if cfg.get(key) is not None:
            if not isinstance(cfg[key], Mapping):
                raise ConfigError(f"train config '{key}' must be a mapping", path)
            check_keys(cfg[key], allowed, f"train config '{key}'", path)


def _check_values(cfg: dict) -> dict:
    from mmvgm.engine.tasks import check_task

    for key in ("backbone", "data"):
        if not cfg.get(key):
            raise ConfigError(f"'{key}' is required (--{key} or '{key}:' in the train config)")
    check_task(cfg["task"])
    for key in ("epochs", "batch_size", "grad_accum"):
        if isinstance(cfg[key], bool) or not isinstance(cfg[key], int) or cfg[key] < 1:
            raise ConfigError(f"'{key}' must be a positive integer, got {cfg[key]!r}")
    if not isinstance(cfg["workers"], int) or cfg["workers"] < 0:
        raise ConfigError(f"'workers' must be an integer >= 0, got {cfg['workers']!r}")
    for key in ("max_steps", "threads"):
        if cfg[key] is not None and (isinstance(cfg[key], bool) or not isinstance(cfg[key], int) or cfg[key] < 1):
            raise ConfigError(f"'{key}' must be a positive integer, got {cfg[key]!r}")
    try:
        cfg["lr"] = float(cfg["lr"])
        cfg["weight_decay"] = float(cfg["weight_decay"])
    except (TypeError, ValueError):
        raise ConfigError(f"'lr' and 'weight_decay' must be numbers, got {cfg['lr']!r}, "
                          f"{cfg['weight_decay']!r}") from None
    if not cfg["lr"] > 0:
        raise ConfigError(f"'lr' must be > 0, got {cfg['lr']}")
    if cfg["mixed_precision"] not in MIXED_PRECISION:
        raise ConfigError(f"'mixed_precision' must be one of {', '.join(MIXED_PRECISION)}, "
                          f"got {cfg['mixed_precision']!r}")
    if cfg["best_metric"] not in BEST_METRICS:  # any other name never improves: 'best' would stay epoch 1
        raise ConfigError(f"unknown best_metric {cfg['best_metric']!r}"
                          f"{did_you_mean(str(cfg['best_metric']), BEST_METRICS)}; "
                          f"use one of {', '.join(BEST_METRICS)}")
    cal = cfg["calibration"]
    if cal.get("threshold") is not None and not 0.0 <= float(cal["threshold"]) <= 1.0:
        raise ConfigError(f"calibration threshold must be in [0, 1], got {cal['threshold']}")
    if not 0.0 <= float(cal.get("target_fpr", 0.05)) < 1.0:
        raise ConfigError(f"calibration target_fpr must be in [0, 1), got {cal['target_fpr']}")
    if not Path(str(cfg["data"])).expanduser().exists():
        raise InputError("dataset not found (expected a folder root/<label>/... or a .csv/.jsonl manifest)",
                         cfg["data"])
    if cfg["out"] is None:
        name = re.sub(r"[^A-Za-z0-9_.-]+", "_", str(Path(str(cfg["backbone"])).stem))
        cfg["out"] = os.path.join("runs", f"{name}-{cfg['task']}")
    return cfg


def _resume_config(cfg: dict, out: Path) -> dict:
    """With --resume the stored config is the truth; refuse changed run-defining keys."""
    from mmvgm.checkpoint.files import read_meta

    stored = read_meta(out / "last").config or {}
    changed = [k for k in RESUME_FIXED if k in stored and cfg.get(k) != stored.get(k)]
    if changed:
        diffs = "; ".join(f"{k}: {stored.get(k)!r} -> {cfg.get(k)!r}" for k in changed)
        raise ConfigError(f"--resume with a different config ({diffs}); resume with the same settings "
                          "or train into a new --out", out)
    return cfg


# ----------------------------------------------------------------------------- helpers

class EpochSampler(torch.utils.data.Sampler):
    """A permutation seeded by (seed, epoch): the order of epoch e never depends on history."""

    def __init__(self, n: int, seed: int, shuffle: bool = True) -> None:
        self.n, self.seed, self.shuffle, self.epoch = n, int(seed), shuffle, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __iter__(self):
        if not self.shuffle:
            return iter(range(self.n))
        g = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
        return iter(torch.randperm(self.n, generator=g).tolist())

    def __len__(self) -> int:
        return self.n


def linear_schedule(optimizer: torch.optim.Optimizer, warmup: int, total: int) -> torch.optim.lr_scheduler.LambdaLR:
    """Linear warmup to the base lr, then linear decay to 0 at ``total`` steps."""
    total = max(1, total)

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / (warmup + 1)
        return max(0.0, (total - step) / max(1, total - warmup))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def rng_state() -> dict:
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: Mapping[str, Any]) -> None:
    random.setstate(_tuples(state["python"]))
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available() and len(state["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(state["cuda"])


def _tuples(x: Any) -> Any:
    return tuple(_tuples(v) for v in x) if isinstance(x, (list, tuple)) else x


def _best_metric_name(cfg: Mapping[str, Any]) -> str:
    if cfg["best_metric"] != "auto":
        return str(cfg["best_metric"])
    return "auc" if cfg["task"] == "detect" else "macro_f1"


def _improved(value: Optional[float], loss: Optional[float], best: Mapping[str, Any], name: str) -> bool:
    """Better on the metric, or tied on it with a lower validation loss.

    Small validation splits saturate accuracy-like metrics after a few epochs; without the
    tie-break "best" would freeze on the first, least trained, perfect epoch.
    """
    if value is None:
        return False
    if best["value"] is None:
        return True
    if value == best["value"] and loss is not None and best.get("loss") is not None:
        return loss < best["loss"]
    return value < best["value"] if name in LOWER_IS_BETTER else value > best["value"]


def chance_loss(task: str, labels: Sequence[str], names: Sequence[str]) -> Optional[float]:
    """The training loss of a model that predicts the class frequencies of ``labels`` (the train
    split's, named as in the task's label set ``names``) and nothing else: the entropy of those
    frequencies, ln 2 for a balanced detect split, ln K for K balanced trace classes; joint adds
    its two heads (real/fake, and the sources among the fake videos). None without labels."""
    counts = Counter(labels)
    if not counts:
        return None
    if task == "trace":
        return _entropy(list(counts.values()))
    real = names[0]  # detect and joint put ``real`` first
    fakes = [n for label, n in counts.items() if label != real]
    binary = _entropy([counts.get(real, 0), sum(fakes)])
    return binary + _entropy(fakes) if task == "joint" else binary


def _entropy(counts: Sequence[int]) -> float:
    total = float(sum(counts))
    return float(-sum(n / total * math.log(n / total) for n in counts if n > 0)) if total else 0.0


def chance_warning(losses: Sequence[float], chance: Optional[float], epochs: int = CHANCE_EPOCHS,
                   tolerance: float = CHANCE_TOLERANCE) -> Optional[str]:
    """A warning when the last ``epochs`` training losses never got below the chance loss (see
    ``chance_loss``): each within ``tolerance`` (a fraction of ``chance``) of it, or flat (spread
    within that tolerance) above it, as a learning rate too small to leave the initial loss
    gives. None otherwise, and while there are fewer epochs."""
    recent = [float(loss) for loss in losses][-epochs:]
    if not chance or len(recent) < epochs or not all(math.isfinite(x) for x in recent):
        return None
    band = tolerance * chance
    at_chance = all(abs(x - chance) <= band for x in recent)
    flat_above = min(recent) >= chance - band and max(recent) - min(recent) <= band
    if not (at_chance or flat_above):
        return None
    return (f"the training loss has not dropped below chance level ({chance:.3f}, a constant guess of the "
            f"class frequencies) for {epochs} epochs ({', '.join(f'{x:.3f}' for x in recent)}): the model "
            "is learning nothing. Check the learning rate (the default 1e-5 suits fine-tuning pretrained "
            "--weights; training from scratch, as the tiny configs do, needs about 1e-3) and the labels")


def _say_train_warnings(run: _Run, history: List[dict]) -> None:
    """Print the last epoch's training warnings when they start, not at every epoch they hold."""
    from rich.markup import escape

    if len(history) > 1 and history[-2].get("train_warnings"):
        return
    for warning in history[-1].get("train_warnings") or []:
        run.say(f"[yellow]warning: training: {escape(warning)}")


def _warmup_steps(cfg: Mapping[str, Any], backbone_cfg: Mapping[str, Any]) -> int:
    if cfg["warmup_steps"] is not None:
        return int(cfg["warmup_steps"])
    return 200 if backbone_cfg.get("backbone") == "xclip" else 0


# ----------------------------------------------------------------------------- the run

def train(cfg: Mapping[str, Any], *, on_epoch_end: Optional[Callable[[int, dict], None]] = None) -> TrainResult:
    """Train a detector/tracer from a train config (see ``DEFAULTS``); returns where it went.

    ``on_epoch_end(epoch, record)`` runs after each epoch's checkpoints are written. The compute
    threads follow ``runtime.threads`` (``threads`` in the config fixes them) during the run
    and are restored after it, also when it fails.
    """
    from mmvgm.runtime.threads import ThreadLoop

    with ThreadLoop() as threads:  # the policy is applied once the work is known (in _setup)
        return _train(cfg, on_epoch_end, threads)


def _train(cfg: Mapping[str, Any], on_epoch_end: Optional[Callable[[int, dict], None]],
           threads: Any) -> TrainResult:
    """The epoch loop: train, validate and calibrate, save; ``--resume`` enters it where it stopped."""
    run, state = _setup(cfg, threads)
    cfg, name = run.cfg, run.best_name
    warned: set = set()  # each distinct calibration warning is printed once a run, not every epoch
    chance = chance_loss(cfg["task"], [s.label for s in run.data.splits["train"]], run.data.label_set.names)
    for epoch in range(state.epoch, cfg["epochs"]):
        if cfg["max_steps"] and state.global_step >= cfg["max_steps"]:
            break
        record = _train_epoch(run, state, epoch)
        calibration, metrics = _validate(run)
        record.update(val_loss=metrics["loss"], **{f"val_{k}": metrics.get(k) for k in HISTORY_METRICS})
        record["calibration_warnings"] = list(calibration.warnings)
        at_chance = chance_warning([r["train_loss"] for r in state.history] + [record["train_loss"]], chance)
        record["train_warnings"] = [at_chance] if at_chance else []
        value = metrics.get(name)
        improved = _improved(value, metrics["loss"], state.best, name)
        if improved:
            state.best = {"metric": name, "value": value, "epoch": epoch + 1, "loss": metrics["loss"]}
        state.epoch = epoch + 1
        state.history.append(record)
        _save(run, state, calibration, metrics, improved)
        run.say(f"epoch {epoch + 1}: train loss {record['train_loss']:.4f}, val loss {_fmt(metrics['loss'])}, "
                f"val {name} {_fmt(value)}" + (" (best)" if improved else ""))
        _say_new(run, calibration.warnings, warned)
        _say_train_warnings(run, state.history)
        if on_epoch_end is not None:
            on_epoch_end(epoch, record)
    return _finish(run, state)


@dataclass
class _Data:
    """The labels, the split and the backbone's pixel preparation of a run."""

    label_set: Any
    splits: Dict[str, list]
    info: dict                  # the split's provenance, stored in every checkpoint
    backbone_cfg: dict
    transform: Any
    frames: int


@dataclass
class _Run:
    """What ``_setup`` builds once and every epoch uses."""

    cfg: dict
    out: Path
    accelerator: Any
    device: torch.device        # chosen here, not by accelerate (see ``_accelerator``)
    dtype: Optional[torch.dtype]  # the autocast dtype of training and validation; None: fp32
    precision: str              # its name: what validation scores under and the checkpoint records
    say: Callable[..., None]    # prints on the main process only
    data: _Data
    model: torch.nn.Module      # prepared (DDP-wrapped in a launched run)
    unwrapped: torch.nn.Module
    optimizer: Any
    scheduler: Any
    scaler: torch.amp.GradScaler  # fp16 only; a pass-through otherwise
    train_sampler: EpochSampler
    train_loader: Any
    val_loader: Any
    meta_base: Any              # the CheckpointMeta every epoch's checkpoint starts from
    best_name: str
    bad_files: Any              # SkipLog: each unreadable file reported once

    @property
    def main(self) -> bool:
        return self.accelerator.is_main_process


@dataclass
class _State:
    """Where a run stands: what ``out/last`` saves and ``--resume`` restores."""

    best: dict
    epoch: int = 0              # epochs completed
    global_step: int = 0        # optimizer steps taken
    history: List[dict] = field(default_factory=list)


def _finish(run: _Run, state: _State) -> TrainResult:
    from mmvgm.checkpoint.files import read_meta

    out = run.out
    calibration = read_meta(out / "best").calibration.to_dict() if (out / "best").is_dir() else {}
    run.accelerator.end_training()
    return TrainResult(out, out / "last", out / "best", epochs_run=len(state.history),
                       global_step=state.global_step, best_epoch=state.best["epoch"], best_metric=run.best_name,
                       best_value=state.best["value"], history=state.history, calibration=calibration,
                       is_main_process=run.main)


# ----------------------------------------------------------------------------- setup

def _setup(cfg: Mapping[str, Any], threads: Any) -> Tuple[_Run, _State]:
    """Everything before the first step, in this order: the config (and the state to resume),
    the accelerator, the data and its loaders, the model, optimizer and schedule, the resumed
    weights and RNG, and the checkpoint meta."""
    from accelerate.utils import set_seed

    from mmvgm.data.dataset import SkipLog
    from mmvgm.progress import stderr_console_now
    from mmvgm.runtime import precision_name

    cfg, resume_state = _checked_config(cfg)
    accelerator, device = _accelerator(cfg)
    dtype = _autocast_dtype(cfg["mixed_precision"], device)
    say = stderr_console_now().print if accelerator.is_main_process else (lambda *a, **k: None)
    set_seed(cfg["seed"])
    data = _data(cfg, say)
    train_sampler, train_loader, val_loader = _loaders(cfg, data, device)
    model = _model(cfg, data, device, threads, say)
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg["lr"], weight_decay=cfg["weight_decay"])
    model, optimizer, train_loader, val_loader = accelerator.prepare(model, optimizer, train_loader, val_loader)
    unwrapped, precision = accelerator.unwrap_model(model), precision_name(dtype)
    run = _Run(cfg=cfg, out=Path(cfg["out"]), accelerator=accelerator, device=device, dtype=dtype,
               precision=precision, say=say, data=data, model=model, unwrapped=unwrapped, optimizer=optimizer,
               scheduler=_schedule(cfg, data, optimizer, train_loader, accelerator),
               scaler=torch.amp.GradScaler(device.type, enabled=dtype == torch.float16),
               train_sampler=train_sampler, train_loader=train_loader, val_loader=val_loader,
               meta_base=_checkpoint_meta(cfg, data, unwrapped.config, precision), best_name=_best_metric_name(cfg),
               bad_files=SkipLog(say=lambda message: say(f"[yellow]{message}")))
    state = _resumed(run, resume_state)
    say(f"training {cfg['backbone']} ({cfg['task']}, {len(data.label_set)} labels) on "
        f"{data.info['split_sizes']} videos, device {device}, precision {run.precision}, "
        f"{accelerator.num_processes} process(es)")
    return run, state


def _checked_config(cfg: Mapping[str, Any]) -> Tuple[dict, Optional[dict]]:
    """The complete, checked config and, with ``resume`` and an ``out/last``, its train state."""
    from mmvgm.checkpoint.files import load_train_state
    from mmvgm.progress import stderr_console_now

    cfg = copy.deepcopy(dict(cfg))
    validate_keys(cfg)
    cfg = _check_values(merge(DEFAULTS, cfg))
    out = Path(cfg["out"])
    if not cfg["resume"]:
        return cfg, None
    if not (out / "last").is_dir():
        stderr_console_now().print(f"[yellow]--resume: no checkpoint in {out / 'last'} yet; starting fresh")
        return cfg, None
    cfg = _resume_config(cfg, out)
    resume_state = load_train_state(out / "last")
    if resume_state is None:
        raise InputError("cannot resume: out/last has no train_state (was it written by mmvgm train?)",
                         out / "last")
    return cfg, resume_state


def _accelerator(cfg: Mapping[str, Any]) -> Tuple[Any, torch.device]:
    """The run's ``Accelerator`` and the device the run uses.

    accelerate keeps one state per process. Once it exists, an ``Accelerator`` asking for
    another ``mixed_precision``, or for ``cpu=True`` after a CUDA state, is refused, and a CPU
    state stays on the CPU for a later run that wants CUDA. So a run never asks it for a
    precision (the autocast is this module's, through ``_autocast_dtype``) nor lets it place
    anything (``device_placement=False``: the model and batches are moved here), and a single
    process whose state an earlier run made picks its own device. A launched process has one
    state for its life, made by its first run with the launch's device: that one is used.
    """
    from accelerate import Accelerator
    from accelerate.state import PartialState, is_initialized

    fresh = not is_initialized()
    accelerator = Accelerator(mixed_precision="no", cpu=cfg["cpu"] and fresh, device_placement=False,
                              gradient_accumulation_steps=cfg["grad_accum"])
    if fresh or accelerator.num_processes > 1:
        return accelerator, accelerator.device
    return accelerator, torch.device("cpu") if cfg["cpu"] else PartialState().default_device


def _autocast_dtype(choice: str, device: torch.device) -> Optional[torch.dtype]:
    """``mixed_precision`` as the dtype training and validation autocast to (None: fp32).

    Resolved by ``runtime.precision_dtype``, as eval's and the predictor's ``--precision`` are:
    ``auto`` is bf16 on a CUDA device that supports it and fp32 elsewhere for every verb."""
    from mmvgm.runtime import precision_dtype

    if choice == "fp16" and device.type != "cuda":
        raise ConfigError("mixed precision fp16 needs a CUDA GPU; use --mixed-precision no or bf16")
    return precision_dtype({"no": "fp32"}.get(choice, choice), device)


def _data(cfg: Mapping[str, Any], say: Callable[..., None]) -> _Data:
    """The task's label set, the seeded train/val/test split and the backbone's transform."""
    from mmvgm.data.transforms import VideoTransform
    from mmvgm.engine.tasks import task_label_set, task_splits, unused_message
    from mmvgm.models.registry import resolve_backbone_config, weights_processor_file

    label_set = task_label_set(cfg["task"], cfg["labels"])
    split_cfg = cfg["split"]
    splits, info = task_splits(cfg["data"], cfg["task"], label_set, split_cfg["ratios"], split_cfg["seed"],
                               split_cfg.get("duplicates", "warn"))
    note = unused_message(info["unused"], label_set, cfg["task"])
    if note:
        say(f"[yellow]note: {note}")
    for name in ("train", "val"):
        if not splits[name]:
            raise InputError(f"the {name} split is empty ({info['split_sizes']}); add videos or "
                             "change split.ratios", cfg["data"])
    backbone_cfg = resolve_backbone_config(cfg["backbone"], frames=cfg["frames"], size=cfg["size"],
                                           weights=cfg["weights"])
    if backbone_cfg.get("preprocess") is None:
        raise ConfigError(f"backbone '{cfg['backbone']}' has no preprocess config; pixels cannot be prepared")
    processor = weights_processor_file(backbone_cfg.get("weights"))
    if processor is not None:
        say(f"pixel mean/std/resample from {processor}")
    return _Data(label_set, splits, info, backbone_cfg, VideoTransform.from_config(backbone_cfg["preprocess"]),
                 int(backbone_cfg["frames"]))


def _loaders(cfg: Mapping[str, Any], data: _Data, device: torch.device) -> Tuple[EpochSampler, Any, Any]:
    """The train loader, in a permutation of its own per epoch, and the validation loader."""
    from mmvgm.data.dataset import VideoDataset, make_loader

    def loader(split: str, batch_size: int, sampler: Optional[EpochSampler] = None):
        dataset = VideoDataset(data.splits[split], data.label_set.label_to_index, num_frames=data.frames,
                               sampling=cfg["sampling"], transform=data.transform)
        # pinned batches, so that the copy to the GPU need not wait (see _step)
        return make_loader(dataset, batch_size, workers=cfg["workers"], seed=cfg["seed"], sampler=sampler,
                           pin_memory=device.type == "cuda", persistent_workers=True, passes=cfg["epochs"])

    sampler = EpochSampler(len(data.splits["train"]), cfg["seed"])
    return (sampler, loader("train", cfg["batch_size"], sampler),
            loader("val", cfg["eval_batch_size"] or cfg["batch_size"]))


def _model(cfg: Mapping[str, Any], data: _Data, device: torch.device, threads: Any,
           say: Callable[..., None]) -> torch.nn.Module:
    """The task's model on ``device``. The compute threads are set just before it is built,
    from the work it and the data make (``runtime.threads``)."""
    from mmvgm.models import build_model
    from mmvgm.runtime.threads import TrainingWork, resolve_threads

    task, n = cfg["task"], len(data.label_set)
    trace_n = n - 1 if task == "joint" else (n if task == "trace" else None)
    model_cfg = {"backbone": data.backbone_cfg, "task": task, "num_classes": trace_n, "dropout": cfg["dropout"]}
    size = int(data.backbone_cfg["size"])
    clip_shape = (data.frames, int(data.backbone_cfg["channels"]), size, size)
    policy = resolve_threads(device, cfg["workers"], cfg["threads"], training=TrainingWork(
        model_cfg, clip_shape, [s.path for s in data.splits["train"]], cfg["sampling"]))
    threads.apply(policy)
    if policy.reason:
        say(policy.reason)
    return build_model(model_cfg).to(device)


def _schedule(cfg: Mapping[str, Any], data: _Data, optimizer: Any, train_loader: Any, accelerator: Any) -> Any:
    """The linear schedule over every optimizer step of the run (``max_steps`` shortens it)."""
    total = math.ceil(len(train_loader) / cfg["grad_accum"]) * cfg["epochs"]
    if cfg["max_steps"]:
        total = min(total, cfg["max_steps"])
    n = accelerator.num_processes
    # the prepared scheduler steps once per process per optimizer step (accelerate's convention)
    return accelerator.prepare(linear_schedule(optimizer, _warmup_steps(cfg, data.backbone_cfg) * n, total * n))


def _resumed(run: _Run, resume_state: Optional[dict]) -> _State:
    """A fresh state, or ``out/last``'s with its weights, optimizer, schedule and RNG restored."""
    from mmvgm.checkpoint.files import load_weights

    if resume_state is None:
        return _State(best={"metric": run.best_name, "value": None, "epoch": None})
    load_weights(run.unwrapped, run.out / "last")  # into the model just built
    run.optimizer.load_state_dict(resume_state["optimizer"])
    run.scheduler.load_state_dict(resume_state["scheduler"])
    if resume_state.get("scaler"):  # absent before fp16 was scaled here, empty when not fp16
        run.scaler.load_state_dict(resume_state["scaler"])
    state = _State(best=dict(resume_state["best"]), epoch=int(resume_state["epoch"]),
                   global_step=int(resume_state["global_step"]), history=list(resume_state["history"]))
    set_rng_state(resume_state["rng"])
    run.say(f"resuming from {run.out / 'last'} after epoch {state.epoch} (step {state.global_step})")
    return state


def _checkpoint_meta(cfg: dict, data: _Data, model_cfg: dict, precision: str) -> Any:
    """What every checkpoint of the run says besides its epoch, calibration and metrics."""
    from mmvgm.checkpoint.meta import CheckpointMeta
    from mmvgm.runtime import package_versions

    return CheckpointMeta(model_cfg=model_cfg, task=cfg["task"], labels=data.label_set.to_dict(),
                          preprocess=data.transform.to_config(), frames=data.frames, sampling=cfg["sampling"],
                          precision=precision, versions=package_versions(), data=data.info, seed=cfg["seed"],
                          config=cfg, synthetic=bool(cfg["synthetic"]))


# ----------------------------------------------------------------------------- one epoch

def _train_epoch(run: _Run, state: _State, epoch: int) -> dict:
    """One pass over the train split (or up to ``max_steps``); returns the epoch's history
    record, whose validation fields the loop adds."""
    from rich.progress import TextColumn

    from mmvgm.progress import make_progress

    cfg, loader, accelerator = run.cfg, run.train_loader, run.accelerator
    run.model.train()
    run.train_sampler.set_epoch(epoch)
    if hasattr(loader, "set_epoch"):  # accelerate's loader re-sets its sampler's epoch itself
        loader.set_epoch(epoch)
    meter, waits = _EpochMeter(run.device, len(loader)), _WaitClock(loader)
    with make_progress(TextColumn("loss {task.fields[loss]:.4f}"), TextColumn("{task.fields[rate]:.1f} clips/s"),
                       disable=not (run.main and cfg["progress"])) as bars:
        bar = bars.add_task(f"epoch {epoch + 1}/{cfg['epochs']}", total=len(loader), loss=0.0, rate=0.0)
        for batch in waits:
            run.bad_files.update(batch.skipped)  # here: accelerate's copy of the loader reports nothing
            if not _any_process(batch.clips is None, accelerator):  # every rank skips together, or DDP hangs
                loss = _step(run, batch)
                if accelerator.sync_gradients:
                    state.global_step += 1
                shown = meter.add(loss, batch.clips.shape[0] * accelerator.num_processes)
                if shown is not None:
                    bars.update(bar, **shown)
            bars.advance(bar)
            if cfg["max_steps"] and state.global_step >= cfg["max_steps"]:
                break
    return meter.record(epoch, state.global_step, waits.seconds)


def _step(run: _Run, batch: Any) -> torch.Tensor:
    """Forward and backward on one batch under the run's autocast, and the optimizer step once
    accelerate says the accumulated gradients are complete; returns the batch's loss."""
    from mmvgm.predict.scoring import autocast

    accelerator = run.accelerator
    # non_blocking from pinned memory: a blocking copy would wait for the previous step's
    # kernels, so the CPU could never queue work ahead of the GPU
    clips = batch.clips.to(run.device, non_blocking=True)
    labels = batch.labels.to(run.device, non_blocking=True)
    with accelerator.accumulate(run.model):
        pixels = run.data.transform.normalize(clips)
        with autocast(run.device, run.dtype):
            outputs = run.model(pixels)
        loss = run.unwrapped.loss(outputs, labels)  # in float32: the loss casts the logits
        accelerator.backward(run.scaler.scale(loss))  # accelerate divides by grad_accum
        stepped = _optimizer_step(run) if accelerator.sync_gradients else True
        if stepped:
            run.scheduler.step()  # accelerate's scheduler only counts between accumulation steps
        run.optimizer.zero_grad()
    return loss


def _optimizer_step(run: _Run) -> bool:
    """Clip and step; False when fp16's scaler skipped the step for inf/NaN gradients (the
    schedule then waits, as with accelerate's own fp16)."""
    scaler = run.scaler
    if run.cfg["max_grad_norm"]:
        scaler.unscale_(run.optimizer)  # clip the true gradients, not the fp16-scaled ones
        run.accelerator.clip_grad_norm_(run.model.parameters(), run.cfg["max_grad_norm"])
    scale = scaler.get_scale()
    scaler.step(run.optimizer)
    scaler.update()
    return scaler.get_scale() >= scale  # the scale drops exactly when the step was skipped


class _EpochMeter:
    """An epoch's clips, loss and times. The loss is summed on the device and read, which waits
    for the GPU, only every ``LOSS_READ_EVERY`` batches, so kernel launches stay ahead."""

    def __init__(self, device: torch.device, batches: int) -> None:
        self.device, self.batches = device, batches
        self.seen, self.n, self.t0 = 0, 0, time.perf_counter()
        self.loss_sum = torch.zeros((), device=device)
        self.t_first, self.seen_first = None, 0  # after the first step: excludes DataLoader worker start-up

    def add(self, loss: torch.Tensor, clips: int) -> Optional[dict]:
        """Count one step; returns the progress bar's fields when it is time to read the loss."""
        self.seen += clips
        self.loss_sum, self.n = self.loss_sum + loss.detach().float(), self.n + 1
        if self.t_first is None:
            self.t_first, self.seen_first = time.perf_counter(), self.seen
        if self.n % LOSS_READ_EVERY == 0 or self.n == self.batches:
            return {"loss": self.loss_sum.item() / self.n, "rate": self.seen / max(time.perf_counter() - self.t0, 1e-9)}
        return None

    def record(self, epoch: int, step: int, waited_s: float) -> dict:
        train_loss = self.loss_sum.item() / max(self.n, 1)  # waits for the GPU: before the clock stops
        t_end = time.perf_counter()
        steady = self.t_first is not None and self.seen > self.seen_first
        return {"epoch": epoch + 1, "step": step, "train_loss": train_loss,
                "train_clips_per_s": self.seen / max(t_end - self.t0, 1e-9),
                "train_clips_per_s_steady": (self.seen - self.seen_first) / (t_end - self.t_first) if steady else None,
                # seconds the loop waited for decoded batches after the first: ~0 when decoding keeps up
                "train_data_wait_s": round(waited_s, 3),
                "train_steady_s": round(t_end - self.t_first, 3) if self.t_first is not None else None,
                "cpu_threads": torch.get_num_threads() if self.device.type == "cpu" else None}


class _WaitClock:
    """Iterates ``loader`` and adds up the time spent waiting for each batch but the first (whose
    wait is worker start-up): how long the model sat idle for want of decoded clips."""

    def __init__(self, loader: Any) -> None:
        self.loader = loader
        self.seconds = 0.0

    def __iter__(self) -> Iterator[Any]:
        batches = iter(self.loader)
        first = True
        while True:
            start = time.perf_counter()
            try:
                batch = next(batches)
            except StopIteration:
                return
            if not first:
                self.seconds += time.perf_counter() - start
            first = False
            yield batch


# ----------------------------------------------------------------------------- validate, save

def _validate(run: _Run) -> Tuple[Any, dict]:
    """Score the validation split through the one scoring path, under the training precision,
    fit the calibration on it (never on test), and measure with that calibration."""
    from mmvgm.checkpoint.calibration import fit_calibration
    from mmvgm.engine.evaluate import metrics_for, predict

    cfg = run.cfg
    val = predict(run.model, run.val_loader, run.data.transform, run.accelerator, device=run.device,
                  precision=run.precision, desc="validating", progress=run.main and cfg["progress"])
    run.bad_files.update(val.skipped)
    loss = None
    if len(val.labels):
        logits = {k: torch.from_numpy(v) for k, v in val.logits.items()}
        loss = float(run.unwrapped.loss(logits, torch.from_numpy(val.labels)).item())
    cal = cfg["calibration"]
    calibration = fit_calibration(val.logits, val.labels, cfg["task"], target_fpr=float(cal.get("target_fpr", 0.05)),
                                  fixed_threshold=cal.get("threshold"),
                                  open_set_percentile=float(cal.get("open_set_percentile", 5.0)))
    metrics = metrics_for(val, calibration, cfg["task"], run.data.label_set.names)
    metrics["loss"] = loss
    return calibration, metrics


def _save(run: _Run, state: _State, calibration: Any, metrics: Mapping[str, Any], improved: bool) -> None:
    """``out/last`` with what ``--resume`` needs and, when the metric improved (or there is none
    yet), ``out/best``. The main process writes; the others wait for it."""
    from mmvgm.checkpoint.files import save_checkpoint

    _wait_for_everyone(run.accelerator)
    if run.main:
        meta = run.meta_base.replace(calibration=calibration, epoch=state.epoch, global_step=state.global_step,
                                     val_metrics=_summary(metrics), best=state.best)
        train_state = {"epoch": state.epoch, "global_step": state.global_step,
                       "optimizer": run.optimizer.state_dict(), "scheduler": run.scheduler.state_dict(),
                       "scaler": run.scaler.state_dict(), "rng": rng_state(), "history": state.history,
                       "best": state.best}
        save_checkpoint(run.out / "last", run.unwrapped, meta, train_state=train_state)
        if improved or not (run.out / "best").is_dir():
            save_checkpoint(run.out / "best", run.unwrapped, meta)
        _write_history(run.out, state.history)
    _wait_for_everyone(run.accelerator)


# ----------------------------------------------------------------------------- DDP guards, small helpers

def _wait_for_everyone(accelerator) -> None:
    """A barrier. accelerate's passes the local rank's CUDA device even to a CPU (gloo) run, which
    fails on a machine with fewer GPUs than processes; a CPU run waits without naming a device."""
    if accelerator.num_processes > 1 and accelerator.device.type == "cpu":
        import torch.distributed as dist

        dist.barrier()
    else:
        accelerator.wait_for_everyone()


def _any_process(flag: bool, accelerator) -> bool:
    """``flag`` or-ed over all processes (each must call this at the same point).

    A rank whose batch was all unreadable files must not skip a step alone: the others would
    wait for its gradients in DDP's all-reduce forever. One process: no communication.
    """
    if accelerator.num_processes == 1:
        return flag
    import torch.distributed as dist

    t = torch.tensor([float(flag)], device=accelerator.device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item())


def _summary(metrics: Mapping[str, Any]) -> dict:
    return {k: metrics.get(k) for k in SUMMARY_METRICS if k in metrics}


def _say_new(run: _Run, warnings: List[str], warned: set) -> None:
    """Print the calibration warnings not yet printed in this run (``warned`` remembers them)."""
    from rich.markup import escape

    for warning in warnings:
        if warning not in warned:
            warned.add(warning)
            run.say(f"[yellow]warning: calibration: {escape(warning)}")


def _fmt(value: Optional[float]) -> str:
    return "n/a" if value is None else f"{value:.4f}"


def _write_history(out: Path, history: List[dict]) -> None:
    from mmvgm.io.atomic import write_text_atomic

    write_text_atomic(out / "history.jsonl", "".join(json.dumps(r) + "\n" for r in history))
