"""Training data from a trajectory store: seeded video-level splits, latent statistics, datasets.

Splits are made per *video* (never per step, so no trajectory leaks across splits) and are
stratified by label, normal videos included: the research code never held normal videos out.
"""
from __future__ import annotations

from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
from torch.utils.data import Dataset, Sampler

from mmvgm.errors import InputError
from mmvgm.lvd.store import NORMAL, TrajectoryStore

DEFAULT_RATIOS = (0.7, 0.15, 0.15)
SPLITS = ("train", "val", "test")


def parse_steps(spec: Optional[str], num_steps: int) -> List[int]:
    """``None``/"all" -> every step; "0-9" ranges and "0,5,10" lists (0-based, combinable)."""
    if spec is None or str(spec).strip().lower() == "all":
        return list(range(num_steps))
    steps: set = set()
    try:
        for part in str(spec).split(","):
            part = part.strip()
            if not part:
                continue
            if "-" in part:
                lo, hi = (int(x) for x in part.split("-", 1))
                if lo > hi:
                    raise ValueError
                steps.update(range(lo, hi + 1))
            else:
                steps.add(int(part))
    except ValueError:
        raise InputError(f"invalid --steps '{spec}': use e.g. 0-49 or 0,5,10") from None
    bad = [s for s in steps if not 0 <= s < num_steps]
    if bad or not steps:
        raise InputError(f"--steps '{spec}' is outside the recorded steps 0-{num_steps - 1}")
    return sorted(steps)


def parse_categories(spec: Optional[Sequence[str]], known: Sequence[str]) -> List[str]:
    if not spec:
        return list(known)
    names = [c.strip() for item in spec for c in str(item).split(",") if c.strip()]
    bad = [c for c in names if c not in known]
    if bad:
        raise InputError(f"unknown categories {bad}; the store has {list(known)}")
    return [c for c in known if c in names]


def split_videos(store: TrajectoryStore, ratios: Sequence[float] = DEFAULT_RATIOS,
                 seed: int = 2024) -> Dict[str, List[str]]:
    """Seeded video split (``mmvgm.data.split_samples``), stratified by a video's first category
    (or normal); every label with >= 3 videos reaches every split with a non-zero ratio."""
    from mmvgm.io.discovery import Sample
    from mmvgm.data.splits import split_samples

    if not isinstance(ratios, Sequence) or len(ratios) != 3:  # the rest is split_samples' to check
        raise InputError(f"split ratios must be three non-negative numbers summing to 1, got {ratios!r}")
    samples = [Sample(v.id, v.labels[0] if v.labels else NORMAL) for v in store.videos]
    # the ids stand in for paths: trajectories have no video files to hash for duplicates
    splits = split_samples(samples, ratios, seed, duplicates="off")
    out = {name: [s.path for s in splits[name]] for name in SPLITS}
    if not out["train"]:
        raise InputError("no training videos after splitting; record or import more videos", store.root)
    return out


def latent_stats(store: TrajectoryStore, ids: Sequence[str], steps: Sequence[int],
                 max_videos: int = 64, seed: int = 0) -> Tuple[List[float], List[float]]:
    """Per-channel mean/std of x0 over (a seeded sample of) training videos and steps."""
    ids = list(ids)
    if len(ids) > max_videos:
        ids = [ids[i] for i in np.random.default_rng(seed).choice(len(ids), max_videos, replace=False)]
    total = sq = None
    count = 0
    for vid in ids:
        x = store.load(vid, steps).float()  # (S, C, F, H, W)
        dims = (0, 2, 3, 4)
        s, q = x.sum(dims), (x * x).sum(dims)
        total = s if total is None else total + s
        sq = q if sq is None else sq + q
        count += x.numel() // x.shape[1]
    mean = total / count
    std = (sq / count - mean ** 2).clamp_min(1e-12).sqrt()
    return mean.tolist(), std.tolist()


class StepDataset(Dataset):
    """(video, step) items: x0 float16 (C, F, H, W), the step index, multi-hot targets (K,)."""

    def __init__(self, store: TrajectoryStore, ids: Sequence[str], steps: Sequence[int],
                 categories: Sequence[str]) -> None:
        self.store = store
        self.items = [(vid, int(s)) for vid in ids for s in steps]
        self.categories = list(categories)
        self.targets = {vid: torch.tensor(store.multi_hot(store.get(vid), categories), dtype=torch.float32)
                        for vid in ids}

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int):
        vid, step = self.items[i]
        return self.store.load(vid, [step])[0], step, self.targets[vid]


class StepsPerVideoSampler(Sampler):
    """Each epoch, ``per_video`` random steps of every video (diffusion-style timestep sampling).

    Lets the conditioned model see every video once per epoch at a random step instead of at
    all of them: an epoch then costs as much as one per-step model's epoch.
    """

    def __init__(self, dataset: StepDataset, per_video: int, seed: int = 0) -> None:
        n_steps = len(dataset) // max(len(dataset.targets), 1)
        if per_video < 1:
            raise InputError("--steps-per-video must be at least 1")
        self.n_videos, self.n_steps = len(dataset.targets), n_steps
        self.per_video = min(per_video, n_steps)
        self.generator = torch.Generator().manual_seed(seed)

    def __len__(self) -> int:
        return self.n_videos * self.per_video

    def __iter__(self):
        picks = [v * self.n_steps + int(s) for v in range(self.n_videos)
                 for s in torch.randperm(self.n_steps, generator=self.generator)[:self.per_video]]
        order = torch.randperm(len(picks), generator=self.generator).tolist()
        return iter([picks[i] for i in order])
