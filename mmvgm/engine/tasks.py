"""Training's view of the data: the task's samples, split and fingerprinted.

Which labels each task trains on and how data labels map onto them lives in
:mod:`mmvgm.data.tasks` (one home, shared with ``mmvgm dataset``); it is re-exported here.
Every class of the task must have videos, else an ``InputError`` names the empty ones.
"""
from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

from mmvgm.data.labels import LabelSet, require_all_classes
from mmvgm.data.tasks import (DEFAULT_TRACE_LABELS, FAKE, REAL, TASKS, check_task, map_label, relabel,
                              split_used, task_label_set, unused_message)
from mmvgm.errors import PathLike

__all__ = ["DEFAULT_TRACE_LABELS", "FAKE", "REAL", "TASKS", "check_task", "map_label", "prepare_samples",
           "relabel", "samples_fingerprint", "split_used", "task_label_set", "task_splits", "unused_message"]


def prepare_samples(samples: Sequence, task: str, label_set: LabelSet,
                    where: str = "the dataset") -> Tuple[List, Dict[str, int]]:
    """Check the data against the task; returns (samples used, with their *data* labels,
    and {unused label: count}).

    Raises ``InputError`` when a class of the task has no video (or a joint/trace dataset
    has only the generic label ``fake``, which names no source).
    """
    used, unused = split_used(samples, task, label_set)
    require_all_classes(relabel(used, task, label_set), label_set, where=where)
    return used, unused


def task_splits(data: PathLike, task: str, label_set: LabelSet, ratios: Sequence[float],
                seed: int, duplicates: str = "warn", exclude: Sequence[str] = ()) -> Tuple[Dict[str, List], dict]:
    """Discover ``data``, keep what the task uses, split it, relabel: ``({split: samples}, info)``.

    Splitting happens on the *data* labels, so for ``detect`` every source is stratified on
    its own (each generator reaches val and test). Train and eval both call this, so eval
    recomputes exactly the training split from the seed and ratios in the checkpoint.
    ``exclude``: data labels left out entirely (a held-out source).
    """
    from mmvgm.io.discovery import discover
    from mmvgm.data.splits import split_samples

    samples = [s for s in discover(data) if s.label not in set(exclude)]
    used, unused = prepare_samples(samples, task, label_set, where=str(data))
    raw = split_samples(used, ratios=ratios, seed=seed, duplicates=duplicates)
    splits = {name: relabel(items, task, label_set) for name, items in raw.items()}
    root = data if Path(data).is_dir() else Path(data).parent
    info = {"path": os.path.abspath(data), "n": len(used), "unused": unused,
            "fingerprint": samples_fingerprint(used, root),
            "split": {"ratios": [float(r) for r in ratios], "seed": int(seed)},
            "split_sizes": {k: len(v) for k, v in splits.items()},
            "split_fingerprints": {k: samples_fingerprint(v, root) for k, v in raw.items()}}
    return splits, info


def samples_fingerprint(samples: Sequence, root: Optional[PathLike] = None) -> str:
    """sha256 over sorted (relative path, label, size): detects changed data cheaply."""
    digest = hashlib.sha256()
    base = None if root is None else Path(root)
    for s in sorted(samples):
        p = Path(s.path)
        rel = p
        if base is not None:
            try:
                rel = Path(os.path.relpath(p, base))
            except ValueError:
                pass
        try:
            size = p.stat().st_size if p.is_file() else sum(f.stat().st_size for f in p.iterdir())
        except OSError:
            size = -1
        digest.update(f"{rel.as_posix()}\t{s.label}\t{size}\n".encode())
    return digest.hexdigest()
