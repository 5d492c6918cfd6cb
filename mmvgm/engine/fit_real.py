"""Training-free detection calibrated on real videos only (``mmvgm fit-real``).

No generated video is needed. The real videos are split (seeded, by path, checked for
duplicates) into three parts:

* ``train`` fits the statistic's ``center`` and ``scale`` (median and MAD of the log spread of
  ``models.temporal``): two numbers, so a small part is enough;
* ``val`` fits the detection threshold at ``target_fpr`` on scores it never saw fitted
  (``checkpoint.calibration.fit_real_calibration``); a 5% target needs 20 or more of them,
  so it is the largest part by default;
* ``test`` is left alone: ``mmvgm eval`` on a folder holding these real videos plus generated
  ones recomputes the same split (same paths, seed and ratios; the split of one label does not
  depend on the others) and scores only real videos the detector never saw.

The result is an ordinary checkpoint (``mmvgm.yaml`` + ``model.safetensors``) of task
``detect``; ``config`` records the statistic, ``data`` the real videos (count, fingerprints of
each part) and ``calibration`` the threshold and what it can promise.
"""
from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence

import numpy as np
import torch

from mmvgm.errors import ConfigError, InputError, PathLike

DEFAULT_RATIOS = (0.5, 0.3, 0.2)   # train (center, scale) / val (threshold) / test (left for eval)
DEFAULT_SEED = 2024
DEFAULT_FRAMES = 16                # a per-frame backbone's clip: the research default of 16 frames
DEFAULT_WINDOWS = 8                # a clip backbone's embeddings per clip
MAD_TO_SD = 1.4826                 # the MAD of a normal distribution times this is its standard deviation
MIN_SCALE = 1e-6                   # all real clips alike: keep z finite (the threshold still decides)
REAL = "real"


@dataclass
class FitRealResult:
    checkpoint: Path
    meta: Any                                  # the saved CheckpointMeta
    split_sizes: Dict[str, int]
    skipped: List[Dict[str, str]] = field(default_factory=list)
    seconds: float = 0.0


def fit_real(data: PathLike, backbone: str, out: PathLike, *, weights: Optional[PathLike] = None,
             statistic: Optional[Mapping[str, Any]] = None, unit: Optional[str] = None,
             window: Optional[int] = None, stride: int = 1, frames: Optional[int] = None,
             sampling: str = "consecutive", target_fpr: float = 0.05, ratios: Sequence[float] = DEFAULT_RATIOS,
             seed: int = DEFAULT_SEED, duplicates: str = "warn", batch_size: int = 8, workers: int = 2,
             device: Optional[str] = None, precision: str = "auto", synthetic: bool = False,
             progress: bool = True, threads: Optional[int] = None,
             say: Callable[[str], None] = lambda message: None) -> FitRealResult:
    """Fit a training-free detector on the real videos under ``data`` (a folder, searched
    recursively, a manifest or a video: every one is taken as real) and save it to ``out``.

    ``statistic``: ``{"order": 1|2|3, "distance": "l2"|"cosine", "direction": "both"|"low"|"high"}``
    (``models.temporal``); ``unit``: ``frame`` or ``clip`` embeddings [default: ``frame`` when
    the backbone gives per-frame features]; ``window``/``stride``: a clip unit's windows.
    """
    from mmvgm.checkpoint.calibration import fit_real_calibration, sigmoid
    from mmvgm.checkpoint.files import save_checkpoint
    from mmvgm.data.transforms import VideoTransform
    from mmvgm.runtime import pick_device, precision_dtype, precision_name

    started = time.perf_counter()
    splits = real_splits(data, ratios, seed, duplicates)
    dev = pick_device(device)
    precision = precision_name(precision_dtype(precision, dev))
    with torch.random.fork_rng(devices=[]):  # a backbone without --weights starts from seeded random weights
        torch.manual_seed(int(seed))
        model = build_detector(backbone, weights, statistic, unit, window, stride).to(dev)
    frames = clip_frames(model, frames)
    if model.preprocess is None:
        raise ConfigError(f"backbone '{backbone}' has no preprocess config; pixels cannot be prepared")
    transform = VideoTransform.from_config(model.preprocess)
    run = dict(transform=transform, frames=frames, sampling=sampling, device=dev, precision=precision,
               batch_size=batch_size, workers=workers, progress=progress, threads=threads)
    fit = _statistics(model, splits["train"], "the statistic's center and scale", **run)
    model.center.fill_(float(np.median(fit.values)))
    model.scale.fill_(robust_scale(fit.values))
    val = _statistics(model, splits["val"], "the threshold", **run)
    with torch.no_grad():
        logits = model.logit(torch.as_tensor(val.values, device=dev)).cpu().numpy()
    calibration = fit_real_calibration(sigmoid(logits), target_fpr)
    skipped = fit.skipped + val.skipped
    for path, reason in skipped:
        say(f"skipped unreadable file {path}: {reason}")
    meta = _meta(model, calibration, data, splits, fit.values, precision, frames, sampling, synthetic, seed,
                 config={"method": "fit-real", "backbone": str(backbone),
                         "weights": None if weights is None else str(weights), "statistic": model.statistic,
                         "embedding": model.embedding, "frames": frames, "sampling": sampling,
                         "target_fpr": float(target_fpr), "ratios": [float(r) for r in ratios], "seed": int(seed),
                         "duplicates": duplicates}, skipped=len(skipped))
    dest = save_checkpoint(out, model.cpu(), meta)
    return FitRealResult(dest, meta, {k: len(v) for k, v in splits.items()},
                         [{"path": p, "reason": r} for p, r in skipped], time.perf_counter() - started)


def real_splits(data: PathLike, ratios: Sequence[float], seed: int, duplicates: str) -> Dict[str, list]:
    """The real videos under ``data`` (every one labelled ``real``), split and checked for
    copies across the parts; the train and val parts must not be empty."""
    from mmvgm.data.splits import split_samples
    from mmvgm.io.discovery import Sample, list_inputs

    paths, _ = list_inputs(data)
    splits = split_samples([Sample(p, REAL) for p in paths], ratios=ratios, seed=seed, duplicates=duplicates)
    for name, role in (("train", "the statistic's center and scale"), ("val", "the threshold")):
        if not splits[name]:
            raise InputError(f"too few real videos ({len(paths)}): the {name} part, which fits {role}, is "
                             f"empty (split {'/'.join(f'{r:g}' for r in ratios)}); add videos", data)
    return splits


def build_detector(backbone: str, weights: Optional[PathLike] = None, statistic: Optional[Mapping[str, Any]] = None,
                   unit: Optional[str] = None, window: Optional[int] = None, stride: int = 1):
    """A ``TemporalDetector`` with the backbone ``backbone`` (``window`` frames per clip
    embedding for a clip unit), its center and scale not fitted yet."""
    from mmvgm.models.registry import build_backbone
    from mmvgm.models.temporal import TemporalDetector

    built = build_backbone(backbone, weights=weights, **({"frames": int(window)} if window else {}))
    unit = unit or embedding_unit(built)
    return TemporalDetector(built, statistic, {"unit": unit, "window": window, "stride": stride})


def embedding_unit(backbone: torch.nn.Module) -> str:
    """``frame`` when ``backbone`` gives one embedding per frame (``frame_features``), else
    ``clip``: asked of the backbone itself, with one blank clip, so any registered one works."""
    shape = (1, backbone.frames, backbone.channels, backbone.size, backbone.size)
    with torch.no_grad():
        out = backbone(torch.zeros(shape))
    return "frame" if "frame_features" in out else "clip"


def clip_frames(model, frames: Optional[int]) -> int:
    """The frames a clip reads: ``frames``, else 16 per-frame embeddings or 8 windows."""
    if frames is None:
        unit, window, stride = (model.embedding[k] for k in ("unit", "window", "stride"))
        frames = DEFAULT_FRAMES if unit == "frame" else int(window) + (DEFAULT_WINDOWS - 1) * int(stride)
    if frames < model.frames_needed:
        raise InputError(f"--frames {frames} is too few for this statistic: it needs at least "
                         f"{model.frames_needed} frames per clip")
    return int(frames)


def robust_scale(values: np.ndarray) -> float:
    """The spread of the real videos' log statistic: MAD, as a standard deviation (one odd real
    video must not widen it), else the standard deviation, never below ``MIN_SCALE``."""
    values = np.asarray(values, np.float64)
    mad = MAD_TO_SD * float(np.median(np.abs(values - np.median(values))))
    if mad <= MIN_SCALE and len(values) > 1:
        mad = float(values.std(ddof=1))
    return max(mad, MIN_SCALE)


@dataclass
class _Part:
    values: np.ndarray
    skipped: list


def _statistics(model, samples: Sequence, fits: str, **run: Any) -> _Part:
    """The raw statistic of every readable video of one part (``fits``: what it is for)."""
    from mmvgm.engine.embed import model_outputs

    preds = model_outputs(model, samples, run.pop("transform"), run.pop("frames"), run.pop("sampling"),
                          ("statistic",), label_to_index={REAL: 0}, desc=f"real videos for {fits}", **run)
    if len(preds.labels) == 0:
        reasons = "; ".join(f"{p}: {r}" for p, r in preds.skipped[:3])
        raise InputError(f"none of the {len(samples)} real videos for {fits} could be read: {reasons}")
    return _Part(preds.logits["statistic"].astype(np.float64), list(preds.skipped))


def real_fingerprint(samples: Sequence) -> str:
    """The fingerprint of a part's real videos by absolute path, so that ``eval`` can tell the
    same real videos apart from a dataset that also holds generated ones."""
    from mmvgm.engine.tasks import samples_fingerprint
    from mmvgm.io.discovery import Sample

    return samples_fingerprint([Sample(os.path.abspath(s.path), REAL) for s in samples if s.label == REAL])


def _meta(model, calibration, data: PathLike, splits: Mapping[str, list], fit_values: np.ndarray, precision: str,
          frames: int, sampling: str, synthetic: bool, seed: int, config: dict, skipped: int):
    from mmvgm.checkpoint.meta import CheckpointMeta
    from mmvgm.data.labels import LabelSet
    from mmvgm.engine.tasks import samples_fingerprint
    from mmvgm.runtime import package_versions

    every = [s for part in splits.values() for s in part]
    root = data if Path(data).is_dir() else Path(data).parent
    info = {"path": os.path.abspath(data), "n": len(every), "n_real": len(every), "real_only": True,
            "fingerprint": samples_fingerprint(every, root), "skipped": skipped,
            "split": {"ratios": config["ratios"], "seed": int(seed)},
            "split_sizes": {k: len(v) for k, v in splits.items()},
            "split_fingerprints": {k: real_fingerprint(v) for k, v in splits.items()}}
    q05, q50, q95 = (float(q) for q in np.percentile(fit_values, [5, 50, 95]))
    fitted = {"center": float(model.center), "scale": float(model.scale), "n_fit": int(len(fit_values)),
              "log_statistic_percentiles": {"5": q05, "50": q50, "95": q95}}
    return CheckpointMeta(model_cfg=model.config, task="detect", labels=LabelSet.load("detect").to_dict(),
                          preprocess=model.preprocess, frames=frames, sampling=sampling, calibration=calibration,
                          precision=precision, versions=package_versions(), data=info, seed=int(seed),
                          config=config, val_metrics=fitted, synthetic=bool(synthetic))
