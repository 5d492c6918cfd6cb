"""LVD (Latent Variable Defense): detect unsafe text-to-video generations from the predicted x0
latents of the first denoising steps, and stop the pipeline early.

Public API (imported lazily so ``import mmvgm.lvd`` stays light)::

    TrajectoryRecorder, import_research        record / import predicted-x0 trajectories
    TrajectoryStore, TrajectoryWriter          the on-disk float16 store
    apply_rule, sequential_rule, SequentialRule, Decision, compute_saved   the eta/lambda rule
    evaluate_flags, load_flags, sweep          rule metrics and compute saved
    train_lvd, LVDModel, load_lvd_model        per-step / step-conditioned detectors
    LatentGuard                                the diffusers ``callback_on_step_end`` guard
"""
from __future__ import annotations

import importlib

_EXPORTS = {
    "TrajectoryRecorder": "mmvgm.lvd.trajectories",
    "import_research": "mmvgm.lvd.trajectories",
    "TrajectoryStore": "mmvgm.lvd.store",
    "TrajectoryWriter": "mmvgm.lvd.store",
    "apply_rule": "mmvgm.lvd.rule",
    "sequential_rule": "mmvgm.lvd.rule",
    "SequentialRule": "mmvgm.lvd.rule",
    "Decision": "mmvgm.lvd.rule",
    "compute_saved": "mmvgm.lvd.rule",
    "evaluate_flags": "mmvgm.lvd.evaluate",
    "load_flags": "mmvgm.lvd.evaluate",
    "sweep": "mmvgm.lvd.evaluate",
    "train_lvd": "mmvgm.lvd.train",
    "LVDModel": "mmvgm.lvd.model",
    "load_lvd_model": "mmvgm.lvd.model",
    "LatentGuard": "mmvgm.lvd.guard",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'mmvgm.lvd' has no attribute '{name}'")
    return getattr(importlib.import_module(module), name)
