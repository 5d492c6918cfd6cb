"""Task heads, the label encoding of each task, its loss and its probabilities.

Label encoding (what the engine feeds as ``labels``: one int per video, an index into the
task's label set):

* ``detect``: the ``detect`` label set, ``0 = real``, ``1 = fake``. One logit per video
  (``outputs["detect"]`` (B,), sigmoid = P(fake)); loss: binary cross-entropy.
* ``trace``: index of the source among the N classes of the label file (e.g. vgmshield9).
  ``outputs["trace"]`` (B,N); loss: cross-entropy.
* ``joint``: the label set is ``real`` (index 0) followed by the N source classes
  (``mmvgm.engine.tasks`` builds it). Every video trains the detection head (target: label
  != 0); only generated videos train the tracing head, whose target is the source's position
  among the fake classes (label - 1). Loss: BCE + CE (mean over the generated videos; an exact
  0 when a batch holds only real videos). ``num_classes`` of a joint model is N, the number
  of trace logits.

Turning logits into calibrated probabilities is ``mmvgm.checkpoint.calibration``'s job.

Per-frame backbones (``timm:``) also get ``frame_detect`` (B,T) and ``frame_trace`` (B,T,N):
the same linear heads applied to each frame's features. Because the heads are linear and the
video feature is the temporal mean, the video logit is exactly the mean of the frame logits.
"""
from __future__ import annotations

from typing import Dict, Mapping, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import nn

from mmvgm.errors import ConfigError

TASKS: Dict[str, Tuple[str, ...]] = {"detect": ("detect",), "trace": ("trace",),
                                     "joint": ("detect", "trace")}
IGNORE_INDEX = -100
REAL_INDEX = 0  # position of ``real`` in detect and joint label sets


class DetectHead(nn.Module):
    """Binary real/fake head: features (..., D) -> one logit (...)."""

    def __init__(self, num_features: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.dropout = nn.Dropout(dropout)
        self.proj = nn.Linear(num_features, 1)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.proj(self.dropout(features)).squeeze(-1)


class TraceHead(nn.Module):
    """Source-attribution head: features (..., D) -> N logits (..., N)."""

    def __init__(self, num_features: int, num_classes: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.dropout = nn.Dropout(dropout)
        self.proj = nn.Linear(num_features, num_classes)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.proj(self.dropout(features))


def check_task(task: str, num_classes: Optional[int]) -> int:
    """Validate a task and its class count; returns the number of trace logits (0 for detect)."""
    if task not in TASKS:
        raise ConfigError(f"unknown task '{task}'; use one of {', '.join(TASKS)}")
    if task == "detect":
        if num_classes not in (None, 1, 2):
            raise ConfigError(f"task 'detect' is binary (real/fake); got num_classes={num_classes}")
        return 0
    minimum = 2 if task == "trace" else 1
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < minimum:
        what = "source classes" if task == "joint" else "classes"
        raise ConfigError(f"task '{task}' needs num_classes >= {minimum} ({what}), got {num_classes!r}")
    return num_classes


def make_heads(task: str, num_features: int, num_classes: Optional[int], dropout: float = 0.0) -> nn.ModuleDict:
    n = check_task(task, num_classes)
    heads = nn.ModuleDict()
    for head in TASKS[task]:
        heads[head] = DetectHead(num_features, dropout) if head == "detect" else TraceHead(num_features, n, dropout)
    return heads


def label_space_size(task: str, num_classes: Optional[int]) -> int:
    """How many names the task's label set has (2 for detect, N for trace, N+1 for joint)."""
    n = check_task(task, num_classes)
    return {"detect": 2, "trace": n, "joint": n + 1}[task]


def joint_targets(labels: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
    """Joint label indices (0 real, 1..N sources) -> (detect target float (B,), trace target
    long (B,): the source index 0..N-1, or -100 (ignored) for real videos)."""
    labels = labels.long()
    is_fake = labels != REAL_INDEX
    trace = torch.where(is_fake, labels - 1, torch.full_like(labels, IGNORE_INDEX))
    return is_fake.float(), trace


def _check_range(labels: torch.Tensor, size: Optional[int], task: str) -> None:
    # Reading a value back from an accelerator stalls its queue on every training step, so only
    # host-side labels are checked here; the engine maps every label to an index of the label
    # file before training, which is where a mismatch on a GPU run is caught.
    if size is None or labels.device.type != "cpu":
        return
    if labels.numel() and (int(labels.min()) < 0 or int(labels.max()) >= size):
        raise ConfigError(f"label index out of range for task '{task}' with {size} classes: "
                          f"got {sorted(set(labels.tolist()))}; does the label file match the model?")


def _num_targets(outputs: Mapping[str, torch.Tensor], task: str) -> Optional[int]:
    """Label indices the task accepts (joint: real + N sources); None for an unknown task."""
    sizes = {"detect": lambda: 2, "trace": lambda: outputs["trace"].shape[-1],
             "joint": lambda: outputs["trace"].shape[-1] + 1}
    return sizes[task]() if task in sizes else None


def loss_terms(outputs: Mapping[str, torch.Tensor], labels: torch.Tensor, task: str) -> Dict[str, torch.Tensor]:
    """The task's loss and its parts: ``{"loss": total, "detect": ..., "trace": ...}``."""
    _check_range(labels, _num_targets(outputs, task), task)  # before the copy to the device
    labels = labels.to(next(iter(outputs.values())).device).long()
    terms: Dict[str, torch.Tensor] = {}
    if task == "detect":
        terms["detect"] = F.binary_cross_entropy_with_logits(outputs["detect"].float(), labels.float())
    elif task == "trace":
        terms["trace"] = F.cross_entropy(outputs["trace"].float(), labels)
    elif task == "joint":
        detect_t, trace_t = joint_targets(labels)
        terms["detect"] = F.binary_cross_entropy_with_logits(outputs["detect"].float(), detect_t)
        # Sum over fakes / their count: a batch of only real videos adds an exact 0 (not NaN).
        n_fake = (trace_t != IGNORE_INDEX).sum().clamp(min=1)
        terms["trace"] = F.cross_entropy(outputs["trace"].float(), trace_t, ignore_index=IGNORE_INDEX,
                                         reduction="sum") / n_fake
    else:
        check_task(task, None)
    terms["loss"] = sum(terms.values())
    return terms
