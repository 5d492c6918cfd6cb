"""The one scoring path: uint8 clips -> logits -> calibrated probabilities -> ``Verdict``.

Validation during training, ``mmvgm eval``, ``Predictor`` (and so ``trace``, ``scan`` and the
service) all score through :func:`forward_logits`, which owns device placement and precision
(autocast), and turn logits into probabilities and decisions through :class:`Scorer`. So the
numbers ``eval`` certifies are the numbers the other verbs give, for the same precision.

The training package (``mmvgm.engine``) uses this module; nothing here imports it.
"""
from __future__ import annotations

from contextlib import nullcontext
from typing import Callable, Dict, List, Optional, Sequence

import numpy as np
import torch

from mmvgm.checkpoint.calibration import Calibration, calibrate_outputs, is_fake, is_unknown
from mmvgm.checkpoint.meta import CheckpointMeta
from mmvgm.predict.verdict import NOT_ASSESSED, UNKNOWN, Source, Verdict

HEADS = ("detect", "trace")
Logits = Dict[str, np.ndarray]


def autocast(device: torch.device, dtype: Optional[torch.dtype]):
    """``torch.autocast`` for ``dtype`` on ``device``, or nothing for fp32."""
    if dtype is None:
        return nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


def forward_logits(model: torch.nn.Module, pixels_uint8: torch.Tensor, transform, device: torch.device,
                   dtype: Optional[torch.dtype]) -> Dict[str, torch.Tensor]:
    """The heads' float32 logits (on ``device``) for a uint8 batch (B,T,3,S,S) that already went
    through ``transform.geometric``; no gradients, ``dtype`` autocast (``None``: fp32)."""
    return forward_outputs(model, pixels_uint8, transform, device, dtype, HEADS)


def forward_outputs(model: torch.nn.Module, pixels_uint8: torch.Tensor, transform, device: torch.device,
                    dtype: Optional[torch.dtype], keys: Sequence[str]) -> Dict[str, torch.Tensor]:
    """``forward_logits`` for any of the model's outputs (``features``, a detector's raw
    ``statistic``): those of ``keys`` it has, as float32."""
    with torch.inference_mode(), autocast(device, dtype):
        x = transform.normalize(pixels_uint8.to(device, non_blocking=True))
        out = model(x)
        return {k: out[k].float() for k in keys if k in out}


class Scorer:
    """A model with its checkpoint's transform and calibration, on one device and precision."""

    def __init__(self, model: torch.nn.Module, meta: CheckpointMeta, transform, device: torch.device,
                 dtype: Optional[torch.dtype]) -> None:
        self.model, self.meta, self.transform = model, meta, transform
        self.device, self.dtype = device, dtype
        self.task = meta.task
        self.calibration: Calibration = meta.calibration
        self.source_labels = meta.source_labels

    def submit(self, pixels_uint8: torch.Tensor) -> Callable[[], Logits]:
        """Start scoring a batch; returns a function that waits for its logits (numpy).

        On CUDA the logits are copied to pinned host memory behind the batch's own kernels, so
        a caller can submit the next batch before collecting this one and the GPU never idles
        while the host turns results into verdicts.
        """
        if self.device.type != "cuda":
            heads = forward_logits(self.model, pixels_uint8, self.transform, self.device, self.dtype)
            host = {k: v.cpu().numpy() for k, v in heads.items()}
            return lambda: host
        # Our device current (cuda:K under torchrun or --device cuda:1): the event must follow
        # the copy on its stream, and pinning must not open a context on another GPU.
        with torch.cuda.device(self.device):
            heads = forward_logits(self.model, pixels_uint8, self.transform, self.device, self.dtype)
            pinned = {k: torch.empty(v.shape, dtype=v.dtype, pin_memory=True) for k, v in heads.items()}
            for k, v in heads.items():
                pinned[k].copy_(v, non_blocking=True)
            done = torch.cuda.Event()
            done.record()

        def collect() -> Logits:
            done.synchronize()
            return {k: v.numpy() for k, v in pinned.items()}
        return collect

    def logits(self, pixels_uint8: torch.Tensor) -> Logits:
        return self.submit(pixels_uint8)()

    def probabilities(self, logits: Logits) -> Dict[str, np.ndarray]:
        """Calibrated ``p_fake`` (B,) and/or ``trace_probs`` (B, N)."""
        return calibrate_outputs(logits, self.calibration, self.task)

    def verdicts(self, paths: Sequence[str], logits: Logits, padded: Sequence[int], frames: int,
                 sampling: str) -> List[Verdict]:
        probs = self.probabilities(logits)
        p_fake, trace = probs.get("p_fake"), probs.get("trace_probs")
        return [self.verdict(path, None if p_fake is None else p_fake[i], None if trace is None else trace[i],
                             frames, sampling, padded[i]) for i, path in enumerate(paths)]

    def verdict(self, path: str, p_fake: Optional[float], trace_probs: Optional[np.ndarray], frames: int,
                sampling: str, padded: int = 0) -> Verdict:
        """The decision for calibrated probabilities: the fitted threshold for real/fake, the
        open-set threshold for ``unknown``. A trace-only checkpoint cannot judge real vs fake
        (``not-assessed``) unless one of its classes is ``real``."""
        result = Verdict(path=str(path), verdict=NOT_ASSESSED, frames=int(frames), sampling=sampling,
                         padded=int(padded), warning=self.meta.warning)
        if p_fake is not None:
            result.fake_probability = round(float(p_fake), 6)
            result.verdict = "fake" if is_fake(p_fake, self.calibration) else "real"
        if trace_probs is not None:
            self._rank_sources(result, np.asarray(trace_probs))
        return result

    def _rank_sources(self, result: Verdict, trace_probs: np.ndarray) -> None:
        order = np.argsort(-trace_probs, kind="stable")
        result.sources = {self.source_labels[i]: round(float(trace_probs[i]), 6) for i in order}
        top = int(order[0])
        result.best_source = Source(self.source_labels[top], round(float(trace_probs[top]), 6))
        unknown = bool(is_unknown(trace_probs[top], self.calibration))
        result.source = Source(UNKNOWN, None) if unknown else result.best_source
        if self.task == "trace" and "real" in self.source_labels:
            result.verdict = "real" if result.best_source.label == "real" else "fake"
