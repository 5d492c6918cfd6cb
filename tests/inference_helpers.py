"""Tiny checkpoints and videos for the inference, scan, explain and trace tests (no training)."""
from __future__ import annotations

from pathlib import Path
from typing import Optional, Sequence

import torch

from tests.media import make_frames, write_video

SOURCES = ("lavie", "show-1", "svd-xt")


def make_checkpoint(directory: Path, task: str = "joint", sources: Sequence[str] = SOURCES,
                    threshold: float = 0.5, open_set_threshold: Optional[float] = None,
                    temperature: float = 1.0, backbone: str = "videomae_tiny", seed: int = 0) -> Path:
    """An untrained tiny model saved with the engine's ``save_checkpoint`` and hand-set calibration."""
    from mmvgm.checkpoint.files import save_checkpoint
    from mmvgm.checkpoint.meta import CheckpointMeta
    from mmvgm.models import build_model

    torch.manual_seed(seed)
    labels = {"detect": ["real", "fake"], "trace": list(sources), "joint": ["real", *sources]}[task]
    num_classes = None if task == "detect" else len(sources)
    model = build_model({"backbone": backbone, "task": task, "num_classes": num_classes})
    meta = CheckpointMeta(
        model_cfg=model.config, task=task, labels=labels, preprocess=model.preprocess,
        frames=model.frames, sampling="consecutive",
        calibration={"temperature": temperature, "threshold": threshold,
                     "open_set_threshold": open_set_threshold,
                     "trace_temperature": temperature if task == "joint" else None})
    return save_checkpoint(directory, model, meta)


def make_videos(folder: Path, n: int, frames: int = 10, size=(40, 48), prefix: str = "v") -> list:
    folder.mkdir(parents=True, exist_ok=True)
    return [write_video(folder / f"{prefix}{i:03d}.mp4",
                        make_frames(frames, size[0], size[1], seed=i, color=(40 * (i % 4), 0, 0)))
            for i in range(n)]


def spy_render(monkeypatch) -> dict:
    """Record the keyword arguments ``predict.explain.render`` is called with (it still renders)."""
    import mmvgm.predict.explain as module

    seen: dict = {}
    real = module.render

    def spy(frames, saliency, out, **kwargs):
        seen.update(kwargs)
        return real(frames, saliency, out, **kwargs)

    monkeypatch.setattr(module, "render", spy)
    return seen


# A DecodePool's decode and collate for tests that start workers from a fresh interpreter: this
# module imports no decoder, so the interpreter's own imports stay what the test measures.
def backend_read(request) -> str:
    """The backend that ``read_clip`` chose for ``request``'s path."""
    from mmvgm.io import read_clip

    return read_clip(request[0], 3).backend


def as_list(items: list) -> list:
    return items
