"""A model's outputs over a list of samples: embeddings for ``mmvgm enrol``, a training-free
detector's raw statistic for ``mmvgm fit-real``.

The same dataset, loader, thread policy and scoring path (``engine.evaluate.predict`` ->
``predict.scoring.forward_outputs``) as validation and ``eval``, so the numbers fitted here are
the ones ``trace`` and ``scan`` compute later.
"""
from __future__ import annotations

from typing import Mapping, Optional, Sequence

import torch

from mmvgm.engine.evaluate import Predictions, predict


def model_outputs(model: torch.nn.Module, samples: Sequence, transform, frames: int, sampling: str,
                  outputs: Sequence[str], *, label_to_index: Optional[Mapping[str, int]] = None,
                  device: Optional[torch.device] = None, precision: str = "auto", batch_size: int = 8,
                  workers: int = 0, progress: bool = True, desc: str = "embedding",
                  threads: Optional[int] = None) -> Predictions:
    """``outputs`` of ``model`` (e.g. ``("features", "trace")``) for every readable sample, in
    ``Predictions.logits``; unreadable files are in ``Predictions.skipped``. Samples without a
    label (or with one outside ``label_to_index``'s keys: pass none) get label -1."""
    from mmvgm.data.dataset import VideoDataset, make_loader
    from mmvgm.runtime.threads import resolve_threads

    device = device if device is not None else next(model.parameters()).device
    dataset = VideoDataset(samples, dict(label_to_index or {}), num_frames=frames, sampling=sampling,
                           transform=transform)
    loader = make_loader(dataset, batch_size, workers=workers, pin_memory=False)
    with resolve_threads(device, workers, threads).loop():
        return predict(model, loader, transform, device=device, precision=precision, desc=desc,
                       progress=progress, outputs=outputs)
