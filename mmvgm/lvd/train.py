"""Train LVD detectors on x0 trajectories: ``per-step`` (research design) or ``conditioned``.

* ``per-step``: one binary model per (category, step), as the research code (250 VideoMAEs).
* ``conditioned``: one model for every step and category: a step embedding is added to the
  backbone features and a head gives one logit per category (multi-label).

Both read 4-channel latents straight into the registry's backbones (``--input latent``,
default) or VAE-decoded RGB (``--input rgb --vae DIR``). Videos are split (seeded, stratified,
normal ones too) before anything is fitted; the per-category thresholds are fitted on the
validation split only (Youden's J), never on test.
"""
from __future__ import annotations

import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
from torch.utils.data import DataLoader

from mmvgm.errors import InputError, PathLike
from mmvgm.lvd.data import (DEFAULT_RATIOS, StepDataset, StepsPerVideoSampler, latent_stats,
                            parse_categories, parse_steps, split_videos)
from mmvgm.lvd.model import INPUTS, MODES, LVDModel, LVDNet, per_step_key
from mmvgm.lvd.store import TrajectoryStore
from mmvgm.progress import make_progress

DEFAULTS = {"epochs": 3, "batch_size": 8, "lr": 1e-4, "weight_decay": 0.05, "seed": 2024}


CONFIG_KEYS = ("mode", "input", "backbone", "vae", "steps", "categories", "epochs", "batch_size", "lr",
               "weight_decay", "seed", "split", "steps_per_video")


def train_from_config(data: PathLike, out: PathLike, config: PathLike = "default",
                      overrides: Optional[Dict[str, Any]] = None, device: Optional[str] = None,
                      progress: bool = True) -> Tuple[LVDModel, dict]:
    """``train_lvd`` with settings from ``configs/lvd/<config>.yaml`` (or a YAML path) + overrides."""
    from mmvgm.attacks.budget import parse_fraction, parse_positive_int
    from mmvgm.config import apply_overrides, check_keys, load_config

    cfg = apply_overrides(load_config(config, "lvd"), overrides or {})
    check_keys(cfg, CONFIG_KEYS, "lvd-train config")
    cats = cfg.get("categories")
    if isinstance(cats, str):
        cats = [cats]
    mode = cfg.get("mode", "conditioned")
    per_video = _steps_per_video(cfg.get("steps_per_video"))
    if mode == "per-step":  # each per-step model trains on its one step: nothing to sample
        if (overrides or {}).get("steps_per_video") is not None:
            raise InputError("--steps-per-video applies to --mode conditioned only")
        per_video = None
    return train_lvd(data, out, mode=mode, steps=cfg.get("steps"), categories=cats,
                     backbone=cfg.get("backbone", "videomae_tiny"), input_kind=cfg.get("input", "latent"),
                     vae=cfg.get("vae"), epochs=parse_positive_int(cfg.get("epochs", DEFAULTS["epochs"]), "epochs"),
                     batch_size=parse_positive_int(cfg.get("batch_size", DEFAULTS["batch_size"]), "batch_size"),
                     lr=parse_fraction(cfg.get("lr", DEFAULTS["lr"]), "lr"),
                     weight_decay=parse_fraction(cfg.get("weight_decay", DEFAULTS["weight_decay"]), "weight_decay"),
                     seed=parse_positive_int(cfg.get("seed", DEFAULTS["seed"]), "seed", allow_zero=True),
                     ratios=cfg.get("split", DEFAULT_RATIOS),
                     steps_per_video=per_video,
                     device=device, progress=progress)


def _steps_per_video(value: Any) -> Optional[int]:
    """``steps_per_video`` from a config or the command line: a positive integer, or all/null."""
    from mmvgm.attacks.budget import parse_positive_int

    if value is None or (isinstance(value, str) and value.strip().lower() == "all"):
        return None
    return parse_positive_int(value, "steps_per_video (a number of steps, or all)")


def backbone_for(store: TrajectoryStore, backbone: Any, input_kind: str) -> dict:
    """The backbone config adapted to the trajectories: channels, frames and (latent) size."""
    from mmvgm.models.registry import resolve_backbone_config

    steps, channels, frames, height, width = store.shape
    if input_kind == "latent":
        if height != width:
            raise InputError(f"latents are {height}x{width}; the backbones take square inputs", store.root)
        cfg = resolve_backbone_config(backbone, frames=frames, size=height, channels=channels)
        cfg["preprocess"] = None  # latents are standardised with training statistics instead
    else:
        cfg = resolve_backbone_config(backbone, frames=frames, channels=3)
    cfg["weights"] = None
    return cfg


def train_lvd(data: PathLike, out: PathLike, mode: str = "conditioned", steps: Optional[str] = None,
              categories: Optional[Sequence[str]] = None, backbone: Any = "videomae_tiny",
              input_kind: str = "latent", vae: Optional[PathLike] = None, epochs: int = DEFAULTS["epochs"],
              batch_size: int = DEFAULTS["batch_size"], lr: float = DEFAULTS["lr"],
              weight_decay: float = DEFAULTS["weight_decay"], seed: int = DEFAULTS["seed"],
              ratios: Sequence[float] = DEFAULT_RATIOS, steps_per_video: Optional[int] = None,
              device: Optional[str] = None, progress: bool = True) -> Tuple[LVDModel, dict]:
    """Train, fit thresholds on validation, save ``out/lvd.yaml`` + safetensors; returns (model, summary).

    ``steps_per_video`` (conditioned mode): train each epoch on that many random steps of every
    video instead of all of them (``None``: all steps).
    """
    from mmvgm.runtime import package_versions, pick_device, seed_everything

    if mode not in MODES:
        raise InputError(f"--mode must be one of {MODES}, got '{mode}'")
    if input_kind not in INPUTS:
        raise InputError(f"--input must be one of {INPUTS}, got '{input_kind}'")
    if epochs < 1 or batch_size < 1 or lr <= 0:
        raise InputError("--epochs and --batch-size must be positive and --lr > 0")
    if steps_per_video is not None and steps_per_video < 1:
        raise InputError("--steps-per-video must be at least 1")
    store = TrajectoryStore(data)
    step_list = parse_steps(steps, store.num_steps)
    cats = parse_categories(categories, store.categories)
    split = split_videos(store, ratios, seed)
    seed_everything(seed)
    dev = pick_device(device)
    mean, std = latent_stats(store, split["train"], step_list, seed=seed)
    cfg: Dict[str, Any] = {
        "mode": mode, "categories": cats, "steps": step_list, "input": input_kind,
        "vae": None if vae is None else str(vae), "backbone": backbone_for(store, backbone, input_kind),
        "latent_stats": {"mean": mean, "std": std}, "thresholds": {}, "split": split,
        "data": {"root": str(Path(data).resolve()), "shape": store.shape, "num_videos": len(store),
                 "split_counts": {k: len(v) for k, v in split.items()}},
        "training": {"epochs": epochs, "batch_size": batch_size, "lr": lr, "weight_decay": weight_decay,
                     "seed": seed, "ratios": list(ratios), "device": str(dev),
                     "steps_per_video": steps_per_video},
        "versions": package_versions(),
    }
    model = LVDModel(cfg, device=dev)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    # each network is written to a staging folder as soon as it is trained (a per-step bundle holds
    # up to 250 backbones: they never have to fit in memory together); a previous bundle in ``out``
    # stays intact until every new network exists
    staging = Path(tempfile.mkdtemp(prefix=".lvd-train-", dir=out))
    try:
        trainer = _Trainer(model, store, split, staging, dev, epochs, batch_size, lr, weight_decay, seed,
                           steps_per_video, progress)
        start = time.perf_counter()
        validation = trainer.per_step() if mode == "per-step" else trainer.conditioned()
        seconds = time.perf_counter() - start
        (out / "lvd.yaml").unlink(missing_ok=True)  # lvd.yaml, written last, marks a complete bundle
        for rel in model.cfg["files"].values():
            (out / rel).parent.mkdir(parents=True, exist_ok=True)
            os.replace(staging / rel, out / rel)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    model.cfg["training"]["seconds"] = round(seconds, 3)
    model.cfg["validation"] = validation
    model.save_config(out)
    size = sum((out / rel).stat().st_size for rel in model.cfg["files"].values())
    summary = {"out": str(out), "mode": mode, "models": len(model.cfg["files"]), "steps": len(step_list),
               "categories": cats, "train_seconds": round(seconds, 3), "bytes": size,
               "split": cfg["data"]["split_counts"], "validation": validation}
    return LVDModel.load(out, device=str(dev)), summary


class _Trainer:
    def __init__(self, model: LVDModel, store: TrajectoryStore, split: Dict[str, List[str]], out: Path,
                 device: torch.device, epochs: int, batch_size: int, lr: float, weight_decay: float,
                 seed: int, steps_per_video: Optional[int], progress: bool) -> None:
        self.model, self.store, self.split, self.out, self.device = model, store, split, out, device
        self.epochs, self.batch_size, self.lr, self.wd, self.seed = epochs, batch_size, lr, weight_decay, seed
        self.steps_per_video = steps_per_video
        self.progress = progress

    def _loader(self, ids: Sequence[str], steps: Sequence[int], shuffle: bool,
                per_video: Optional[int] = None) -> DataLoader:
        ds = StepDataset(self.store, ids, steps, self.model.categories)
        if per_video is not None:
            return DataLoader(ds, batch_size=self.batch_size, sampler=StepsPerVideoSampler(ds, per_video, self.seed))
        gen = torch.Generator().manual_seed(self.seed)
        return DataLoader(ds, batch_size=self.batch_size, shuffle=shuffle, generator=gen)

    def per_step(self) -> dict:
        cats = self.model.categories
        report: Dict[str, Any] = {}
        for step in self.model.steps:
            train = self._loader(self.split["train"], [step], shuffle=True)
            val = self._loader(self.split["val"], [step], shuffle=False)
            for k, cat in enumerate(cats):
                key = per_step_key(cat, step)
                net = self.model.new_net()
                self._fit(net, train, column=k, description=f"{cat} step {step}")
                probs, targets = self._predict(net, val)
                thr, auc = fit_threshold(targets[:, k], probs[:, 0])
                self.model.thresholds.setdefault(cat, {})[str(step)] = thr
                report[key] = {"threshold": thr, "val_auc": auc}
                self.model.save_net(self.out, key, net)
        return report

    def conditioned(self) -> dict:
        train = self._loader(self.split["train"], self.model.steps, shuffle=True, per_video=self.steps_per_video)
        val = self._loader(self.split["val"], self.model.steps, shuffle=False)
        net = self.model.new_net()
        self._fit(net, train, column=None, description="conditioned")
        probs, targets = self._predict(net, val)
        report = {}
        for k, cat in enumerate(self.model.categories):
            thr, auc = fit_threshold(targets[:, k], probs[:, k])
            self.model.thresholds[cat] = thr
            report[cat] = {"threshold": thr, "val_auc": auc}
        self.model.save_net(self.out, "conditioned", net)
        return report

    def _fit(self, net: LVDNet, loader: DataLoader, column: Optional[int], description: str) -> None:
        from mmvgm.runtime import autocast_dtype

        net.to(self.device).train()
        targets = torch.stack([loader.dataset.targets[v] for v in loader.dataset.targets]) \
            if len(loader.dataset.targets) else torch.zeros(0, len(self.model.categories))
        if column is not None:
            targets = targets[:, column:column + 1]
        pos = targets.sum(0)
        # rare categories: weight positives by the negative/positive ratio (capped)
        pos_weight = ((len(targets) - pos) / pos.clamp_min(1)).clamp(1, 20).to(self.device)
        loss_fn = torch.nn.BCEWithLogitsLoss(pos_weight=pos_weight)
        opt = torch.optim.AdamW(net.parameters(), lr=self.lr, weight_decay=self.wd)
        amp = autocast_dtype(self.device)
        with make_progress(disable=not self.progress) as bar:
            task = bar.add_task(f"training {description}", total=self.epochs * len(loader))
            for _ in range(self.epochs):
                for x0, steps, y in loader:
                    frames = self.model.adapter(x0.to(self.device))
                    y = (y if column is None else y[:, column:column + 1]).to(self.device)
                    with torch.autocast(self.device.type, dtype=amp, enabled=amp is not None):
                        logits = net(frames, steps.to(self.device))
                    loss = loss_fn(logits.float(), y)
                    opt.zero_grad(set_to_none=True)
                    loss.backward()
                    opt.step()
                    bar.advance(task)
        net.eval()

    @torch.no_grad()
    def _predict(self, net: LVDNet, loader: DataLoader) -> Tuple[np.ndarray, np.ndarray]:
        probs, targets = [], []
        for x0, steps, y in loader:
            frames = self.model.adapter(x0.to(self.device))
            probs.append(torch.sigmoid(net(frames, steps.to(self.device)).float()).cpu())
            targets.append(y)
        if not probs:
            return np.zeros((0, 1)), np.zeros((0, len(self.model.categories)))
        return torch.cat(probs).numpy(), torch.cat(targets).numpy()


def fit_threshold(y: np.ndarray, p: np.ndarray) -> Tuple[float, Optional[float]]:
    """Threshold maximising Youden's J (TPR - FPR) on validation; 0.5 when a class is missing."""
    from sklearn.metrics import roc_auc_score, roc_curve

    y = np.asarray(y).astype(int)
    if len(y) == 0 or y.min() == y.max():
        return 0.5, None
    fpr, tpr, thr = roc_curve(y, p)
    finite = np.isfinite(thr)
    best = int(np.argmax(np.where(finite, tpr - fpr, -np.inf)))
    return float(min(thr[best], 1.0)), float(roc_auc_score(y, p))
