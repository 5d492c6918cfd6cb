"""A tiny labelled video dataset whose classes differ visibly (background colour per class)."""
from __future__ import annotations

from pathlib import Path
from typing import Dict, Sequence

from tests.media import make_frames, write_video

COLORS: Dict[str, Sequence[int]] = {"real": (0, 0, 0), "lavie": (190, 0, 0), "show-1": (0, 190, 0),
                                    "hotshot-xl": (0, 0, 190)}


def make_dataset(root: Path, per_class: int = 8, classes: Sequence[str] = ("real", "lavie", "show-1"),
                 frames: int = 8, size: int = 32) -> Path:
    for ci, label in enumerate(classes):
        for i in range(per_class):
            write_video(root / label / f"{label}_{i:02d}.mp4",
                        make_frames(frames, size, size, seed=100 * ci + i, color=COLORS[label]))
    return root


def write_labels(path: Path, classes: Sequence[str] = ("lavie", "show-1")) -> Path:
    path.write_text("name: two\ntask: trace\nclasses: [" + ", ".join(classes) + "]\n")
    return path


def tiny_config(data: Path, out: Path, labels: Path, **over) -> dict:
    """joint task, tiny VideoMAE; a 50/25/25 split so the test split has several videos per class."""
    cfg = {"backbone": "videomae_tiny", "task": "joint", "data": str(data), "labels": str(labels),
           "epochs": 2, "batch_size": 4, "lr": 2e-3, "workers": 0, "out": str(out), "progress": False,
           "dropout": 0.1, "split": {"ratios": [0.5, 0.25, 0.25], "seed": 2024},
           "cpu": True}  # exact-equality tests (resume, reproducibility) are promised on CPU
    cfg.update(over)
    return cfg
