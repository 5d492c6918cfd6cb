"""The training loop: ``train(cfg) -> TrainResult``, readable top to bottom (nanoGPT style).

accelerate handles devices, bf16/fp16 autocast, gradient accumulation and DDP, so the same
code runs on a laptop CPU and under ``accelerate launch --num_processes 8 -m mmvgm train``.

Per epoch: train on the train split, predict the validation split, fit calibration on it
(temperature, detection threshold, open-set threshold: ``engine.calibration``), compute the
validation metrics with it, save ``out/last/`` (with optimizer/scheduler/RNG state for
``--resume``) and, when the validation metric improved, ``out/best/``. The test split is
never touched here. ``--resume`` restores ``out/last/`` and continues; with the same seed
the result equals an uninterrupted run (shuffling is seeded per epoch, RNG states restored).

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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Mapping, Optional

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
    "eval_batch_size": None,   # None: batch_size
    "out": None,               # None: runs/<backbone>-<task>
    "resume": False,
    "cpu": False,              # force CPU even when CUDA is present
    "progress": True,
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
LOSS_READ_EVERY = 10


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
    stored = dict(read_meta(Path(cfg["out"]) / "last").get("config") or {})
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
    if cfg["max_steps"] is not None and (not isinstance(cfg["max_steps"], int) or cfg["max_steps"] < 1):
        raise ConfigError(f"'max_steps' must be a positive integer, got {cfg['max_steps']!r}")
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

    stored = read_meta(out / "last").get("config") or {}
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


def _mixed_precision(choice: str, cpu: bool) -> str:
    cuda = torch.cuda.is_available() and not cpu
    if choice == "auto":
        return "bf16" if cuda and torch.cuda.is_bf16_supported() else "no"
    if choice == "fp16" and not cuda:
        raise ConfigError("mixed precision fp16 needs a CUDA GPU; use --mixed-precision no or bf16")
    return choice


def _fresh_accelerator_state() -> None:
    """accelerate keeps one process-wide state; a second ``train()`` in the same (non-launched)
    process with another precision or device would be refused, so start it afresh."""
    from accelerate.state import AcceleratorState

    if int(os.environ.get("WORLD_SIZE", "1")) == 1:
        AcceleratorState._reset_state(reset_partial_state=True)


def _best_metric_name(cfg: Mapping[str, Any]) -> str:
    if cfg["best_metric"] != "auto":
        return str(cfg["best_metric"])
    return "auc" if cfg["task"] == "detect" else "macro_f1"


def _improved(value: Optional[float], loss: Optional[float], best: Mapping[str, Any], name: str) -> bool:
    """Better on the metric, or tied on it with a lower validation loss.

    Small validation splits saturate accuracy-like metrics early (macro-F1 1.0 at epoch 4);
    without the tie-break "best" would freeze on the first, least trained, perfect epoch.
    """
    if value is None:
        return False
    if best["value"] is None:
        return True
    if value == best["value"] and loss is not None and best.get("loss") is not None:
        return loss < best["loss"]
    return value < best["value"] if name in LOWER_IS_BETTER else value > best["value"]


def _warmup_steps(cfg: Mapping[str, Any], backbone_cfg: Mapping[str, Any]) -> int:
    if cfg["warmup_steps"] is not None:
        return int(cfg["warmup_steps"])
    return 200 if backbone_cfg.get("backbone") == "xclip" else 0


# ----------------------------------------------------------------------------- the loop

def train(cfg: Mapping[str, Any], *, on_epoch_end: Optional[Callable[[int, dict], None]] = None) -> TrainResult:
    """Train a detector/tracer from a train config (see ``DEFAULTS``); returns where it went.

    ``on_epoch_end(epoch, record)`` runs after each epoch's checkpoints are written. On CPU the
    compute threads follow ``engine.cpu_split`` during the run and are restored after it.
    """
    threads = torch.get_num_threads()
    try:
        return _train(cfg, on_epoch_end)
    finally:
        torch.set_num_threads(threads)


def _train(cfg: Mapping[str, Any], on_epoch_end: Optional[Callable[[int, dict], None]]) -> TrainResult:
    from accelerate import Accelerator
    from accelerate.utils import DataLoaderConfiguration, set_seed

    from mmvgm.data.dataset import VideoDataset
    from mmvgm.data.transforms import VideoTransform
    from mmvgm.checkpoint.calibration import fit_calibration
    from mmvgm.checkpoint.files import load_train_state, save_checkpoint
    from mmvgm.runtime.threads import plan_cpu_split
    from mmvgm.engine.evaluate import metrics_for, predict
    from mmvgm.engine.tasks import task_label_set, task_splits, unused_message
    from mmvgm.models import build_model
    from mmvgm.models.registry import resolve_backbone_config, weights_processor_file
    from mmvgm.progress import make_progress, stderr_console
    from mmvgm.runtime import package_versions, prepare_decoding_workers

    cfg = copy.deepcopy(dict(cfg))
    validate_keys(cfg)
    cfg = _check_values(merge(DEFAULTS, cfg))
    out = Path(cfg["out"])
    resume_state = None
    if cfg["resume"]:
        if (out / "last").is_dir():
            cfg = _resume_config(cfg, out)
            resume_state = load_train_state(out / "last")
            if resume_state is None:
                raise InputError("cannot resume: out/last has no train_state (was it written by "
                                 "mmvgm train?)", out / "last")
        else:
            stderr_console.print(f"[yellow]--resume: no checkpoint in {out / 'last'} yet; starting fresh")

    _fresh_accelerator_state()
    cuda = torch.cuda.is_available() and not cfg["cpu"]
    # pinned batches copied with non_blocking=True: a blocking copy would wait for the previous
    # step's kernels each step, so the CPU could never queue work ahead of the GPU
    accelerator = Accelerator(mixed_precision=_mixed_precision(cfg["mixed_precision"], cfg["cpu"]),
                              gradient_accumulation_steps=cfg["grad_accum"], cpu=cfg["cpu"],
                              dataloader_config=DataLoaderConfiguration(non_blocking=cuda))
    main = accelerator.is_main_process
    say = stderr_console.print if main else (lambda *a, **k: None)
    set_seed(cfg["seed"])

    # -- data -------------------------------------------------------------------------------
    label_set = task_label_set(cfg["task"], cfg["labels"])
    split_cfg = cfg["split"]
    splits, data_info = task_splits(cfg["data"], cfg["task"], label_set, split_cfg["ratios"],
                                    split_cfg["seed"], split_cfg.get("duplicates", "warn"))
    note = unused_message(data_info["unused"], label_set, cfg["task"])
    if note:
        say(f"[yellow]note: {note}")
    for name in ("train", "val"):
        if not splits[name]:
            raise InputError(f"the {name} split is empty ({data_info['split_sizes']}); add videos or "
                             "change split.ratios", cfg["data"])
    backbone_cfg = resolve_backbone_config(cfg["backbone"], frames=cfg["frames"], size=cfg["size"],
                                           weights=cfg["weights"])
    if backbone_cfg.get("preprocess") is None:
        raise ConfigError(f"backbone '{cfg['backbone']}' has no preprocess config; pixels cannot be prepared")
    transform = VideoTransform.from_config(backbone_cfg["preprocess"])
    processor = weights_processor_file(backbone_cfg.get("weights"))
    if processor is not None:
        say(f"pixel mean/std/resample from {processor}")
    frames = int(backbone_cfg["frames"])

    def dataset(split: str) -> VideoDataset:
        return VideoDataset(splits[split], label_set.label_to_index, num_frames=frames,
                            sampling=cfg["sampling"], transform=transform)

    train_sampler = EpochSampler(len(splits["train"]), cfg["seed"])
    loader_kw = dict(num_workers=cfg["workers"], pin_memory=cuda,
                     persistent_workers=cfg["workers"] > 0,
                     multiprocessing_context=prepare_decoding_workers() if cfg["workers"] else None)
    from mmvgm.data.dataset import collate_skip_bad

    train_loader = torch.utils.data.DataLoader(dataset("train"), batch_size=cfg["batch_size"],
                                               sampler=train_sampler, collate_fn=collate_skip_bad,
                                               drop_last=False, **loader_kw)
    val_loader = torch.utils.data.DataLoader(dataset("val"), batch_size=cfg["eval_batch_size"] or cfg["batch_size"],
                                             shuffle=False, collate_fn=collate_skip_bad, **loader_kw)

    # -- model, optimizer, schedule ----------------------------------------------------------
    trace_n = len(label_set) - 1 if cfg["task"] == "joint" else (len(label_set) if cfg["task"] == "trace" else None)
    model_cfg = {"backbone": backbone_cfg, "task": cfg["task"], "num_classes": trace_n, "dropout": cfg["dropout"]}
    cpu_split = plan_cpu_split(accelerator.device, cfg["workers"], model_cfg,
                               (frames, int(backbone_cfg["channels"]), int(backbone_cfg["size"]), int(backbone_cfg["size"])),
                               [s.path for s in splits["train"]], cfg["sampling"])
    if cpu_split is not None:
        torch.set_num_threads(cpu_split.threads)
        say(cpu_split.reason)
    model = build_model(model_cfg)
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg["lr"], weight_decay=cfg["weight_decay"])
    model, optimizer, train_loader, val_loader = accelerator.prepare(model, optimizer, train_loader, val_loader)
    steps_per_epoch = math.ceil(len(train_loader) / cfg["grad_accum"])
    total_steps = steps_per_epoch * cfg["epochs"]
    if cfg["max_steps"]:
        total_steps = min(total_steps, cfg["max_steps"])
    warmup = _warmup_steps(cfg, backbone_cfg)
    # the prepared scheduler steps once per process per optimizer step (accelerate's convention)
    scheduler = accelerator.prepare(linear_schedule(optimizer, warmup * accelerator.num_processes,
                                                    total_steps * accelerator.num_processes))

    best_name = _best_metric_name(cfg)
    start_epoch, global_step, history = 0, 0, []
    best = {"metric": best_name, "value": None, "epoch": None}
    if resume_state is not None:
        from mmvgm.checkpoint.files import load_weights

        load_weights(accelerator.unwrap_model(model), out / "last")  # into the model just built
        optimizer.load_state_dict(resume_state["optimizer"])
        scheduler.load_state_dict(resume_state["scheduler"])
        start_epoch, global_step = int(resume_state["epoch"]), int(resume_state["global_step"])
        history, best = list(resume_state["history"]), dict(resume_state["best"])
        set_rng_state(resume_state["rng"])
        say(f"resuming from {out / 'last'} after epoch {start_epoch} (step {global_step})")

    unwrapped = accelerator.unwrap_model(model)
    meta_base = {
        "model_cfg": unwrapped.config, "task": cfg["task"], "labels": label_set.to_dict(),
        "preprocess": transform.to_config(), "frames": frames, "sampling": cfg["sampling"],
        "versions": package_versions(), "data": data_info, "seed": cfg["seed"], "config": cfg,
    }
    say(f"training {cfg['backbone']} ({cfg['task']}, {len(label_set)} labels) on "
        f"{data_info['split_sizes']} videos, device {accelerator.device}, "
        f"precision {accelerator.mixed_precision}, {accelerator.num_processes} process(es)")

    from rich.progress import TextColumn

    bad_files: set = set()
    stop = cfg["max_steps"] is not None and global_step >= cfg["max_steps"]
    for epoch in range(start_epoch, cfg["epochs"]):
        if stop:
            break
        # -- train one epoch --
        model.train()
        train_sampler.set_epoch(epoch)
        if hasattr(train_loader, "set_epoch"):  # accelerate's loader re-sets its sampler's epoch itself
            train_loader.set_epoch(epoch)
        seen, n_batches, t0 = 0, 0, time.perf_counter()
        loss_sum = torch.zeros((), device=accelerator.device)
        t_first, seen_first = None, 0  # after the first step: excludes DataLoader worker start-up
        with make_progress(TextColumn("loss {task.fields[loss]:.4f}"), TextColumn("{task.fields[rate]:.1f} clips/s"),
                           disable=not (main and cfg["progress"])) as progress:
            bar = progress.add_task(f"epoch {epoch + 1}/{cfg['epochs']}", total=len(train_loader), loss=0.0, rate=0.0)
            waits = _WaitClock(train_loader)
            for batch in waits:
                _report_skipped(batch, say, bad_files)
                if _any_process(batch.clips is None, accelerator):  # every rank skips together, or DDP hangs
                    progress.advance(bar)
                    continue
                with accelerator.accumulate(model):
                    pixels = transform.normalize(batch.clips)
                    outputs = model(pixels)
                    loss = unwrapped.loss(outputs, batch.labels)
                    accelerator.backward(loss)
                    if cfg["max_grad_norm"] and accelerator.sync_gradients:
                        accelerator.clip_grad_norm_(model.parameters(), cfg["max_grad_norm"])
                    optimizer.step()
                    scheduler.step()
                    optimizer.zero_grad()
                if accelerator.sync_gradients:
                    global_step += 1
                seen += batch.clips.shape[0] * accelerator.num_processes
                loss_sum, n_batches = loss_sum + loss.detach().float(), n_batches + 1
                if t_first is None:
                    t_first, seen_first = time.perf_counter(), seen
                # reading the loss waits for the GPU: only every few steps, so launches stay ahead
                if n_batches % LOSS_READ_EVERY == 0 or n_batches == len(train_loader):
                    progress.update(bar, loss=loss_sum.item() / n_batches,
                                    rate=seen / max(time.perf_counter() - t0, 1e-9))
                progress.advance(bar)
                if cfg["max_steps"] and global_step >= cfg["max_steps"]:
                    stop = True
                    break
        train_loss = loss_sum.item() / max(n_batches, 1)
        t_end = time.perf_counter()
        train_time = t_end - t0
        steady = (seen - seen_first) / (t_end - t_first) if t_first is not None and seen > seen_first else None

        # -- validate, calibrate on validation only --
        val = predict(model, val_loader, transform, accelerator, desc="validating",
                      progress=main and cfg["progress"])
        val_loss = float(unwrapped.loss({k: torch.from_numpy(v) for k, v in val.logits.items()},
                                        torch.from_numpy(val.labels)).item()) if len(val.labels) else None
        cal_cfg = cfg["calibration"]
        calibration = fit_calibration(val.logits, val.labels, cfg["task"],
                                      target_fpr=float(cal_cfg.get("target_fpr", 0.05)),
                                      fixed_threshold=cal_cfg.get("threshold"),
                                      open_set_percentile=float(cal_cfg.get("open_set_percentile", 5.0)))
        val_metrics = metrics_for(val, calibration, cfg["task"], label_set.names)
        val_metrics["loss"] = val_loss
        record = {"epoch": epoch + 1, "step": global_step, "train_loss": train_loss,
                  "train_clips_per_s": seen / max(train_time, 1e-9), "train_clips_per_s_steady": steady,
                  # seconds the loop waited for decoded batches after the first: ~0 when decoding keeps up
                  "train_data_wait_s": round(waits.seconds, 3),
                  "train_steady_s": round(t_end - t_first, 3) if t_first is not None else None,
                  "cpu_threads": torch.get_num_threads() if accelerator.device.type == "cpu" else None,
                  "val_loss": val_loss,
                  **{f"val_{k}": val_metrics.get(k) for k in ("accuracy", "balanced_accuracy", "macro_f1", "auc")}}
        history.append(record)
        value = val_metrics.get(best_name)
        improved = _improved(value, val_loss, best, best_name)
        if improved:
            best = {"metric": best_name, "value": value, "epoch": epoch + 1, "loss": val_loss}

        # -- checkpoints (main process only; the others wait) --
        _wait_for_everyone(accelerator)
        if main:
            meta = {**meta_base, "calibration": calibration.to_dict(), "epoch": epoch + 1, "global_step": global_step,
                    "val_metrics": _summary(val_metrics), "best": best}
            state = {"epoch": epoch + 1, "global_step": global_step, "optimizer": optimizer.state_dict(),
                     "scheduler": scheduler.state_dict(), "rng": rng_state(), "history": history, "best": best}
            save_checkpoint(out / "last", unwrapped, meta, train_state=state)
            if improved or not (out / "best").is_dir():
                save_checkpoint(out / "best", unwrapped, meta)
            _write_history(out, history)
            say(f"epoch {epoch + 1}: train loss {record['train_loss']:.4f}, val loss "
                f"{_fmt(val_loss)}, val {best_name} {_fmt(value)}" + (" (best)" if improved else ""))
        _wait_for_everyone(accelerator)
        if on_epoch_end is not None:
            on_epoch_end(epoch, record)

    final_cal = {}
    if (out / "best").is_dir():
        from mmvgm.checkpoint.files import read_meta

        final_cal = read_meta(out / "best").get("calibration", {})
    accelerator.end_training()
    return TrainResult(out, out / "last", out / "best", epochs_run=len(history), global_step=global_step,
                       best_epoch=best["epoch"], best_metric=best_name, best_value=best["value"],
                       history=history, calibration=final_cal, is_main_process=main)


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


def _report_skipped(batch, say, seen: set) -> None:
    for path, reason in getattr(batch, "skipped", []) or []:
        if path not in seen:
            seen.add(path)
            say(f"[yellow]skipping unreadable file {path}: {reason}")


def _summary(metrics: Mapping[str, Any]) -> dict:
    return {k: metrics.get(k) for k in SUMMARY_METRICS if k in metrics}


def _fmt(value: Optional[float]) -> str:
    return "n/a" if value is None else f"{value:.4f}"


def _write_history(out: Path, history: List[dict]) -> None:
    from mmvgm.io.atomic import write_text_atomic

    write_text_atomic(out / "history.jsonl", "".join(json.dumps(r) + "\n" for r in history))
