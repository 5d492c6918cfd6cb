"""Task heads, the label encoding of each task, its loss and its probabilities.

Label encoding (what the engine feeds as ``labels``: one int per video, an index into the
task's label set):

* ``detect``: the ``detect`` label set, ``0 = real``, ``1 = fake``. One logit per video
  (``outputs["detect"]`` (B,), sigmoid = P(fake)); loss: binary cross-entropy.
* ``trace``: index of the source among the N classes of the label file (e.g. vgmshield9).
  ``outputs["trace"]`` (B,N); loss: cross-entropy.
* ``joint``: the label set is ``real`` plus the N source classes (N+1 names; ``real`` at
  ``real_index``, 0 by default). Every video trains the detection head (target: label !=
  real_index); only generated videos train the tracing head, whose target is the source's
  position among the fake classes (the label index with ``real`` removed). Loss: BCE + CE.
  ``num_classes`` of a joint model is N, the number of trace logits.

Per-frame backbones (``timm:``) also get ``frame_detect`` (B,T) and ``frame_trace`` (B,T,N):
the same linear heads applied to each frame's features. Because the heads are linear and the
video feature is the temporal mean, the video logit is exactly the mean of the frame logits.
"""
from __future__ import annotations

from typing import Dict, Mapping, Optional, Sequence, Tuple, Union

import torch
import torch.nn.functional as F
from torch import nn

from mmvgm.errors import ConfigError

TASKS: Dict[str, Tuple[str, ...]] = {"detect": ("detect",), "trace": ("trace",),
                                     "joint": ("detect", "trace")}
IGNORE_INDEX = -100
Temperature = Union[float, Mapping[str, float]]


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


def split_joint_labels(names: Sequence[str], real: str = "real") -> Tuple[int, list]:
    """For a joint label set: (index of ``real``, the source names in trace-head order)."""
    names = list(names)
    if real not in names:
        raise ConfigError(f"a joint label set needs a '{real}' class; got {', '.join(names)}")
    return names.index(real), [n for n in names if n != real]


def joint_targets(labels: torch.Tensor, real_index: int = 0) -> Tuple[torch.Tensor, torch.Tensor]:
    """Joint label indices -> (detect target float (B,), trace target long (B,), -100 for real)."""
    labels = labels.long()
    is_fake = labels != real_index
    trace = torch.where(labels > real_index, labels - 1, labels)
    trace = torch.where(is_fake, trace, torch.full_like(trace, IGNORE_INDEX))
    return is_fake.float(), trace


def _check_range(labels: torch.Tensor, size: int, task: str) -> None:
    if labels.numel() and (int(labels.min()) < 0 or int(labels.max()) >= size):
        raise ConfigError(f"label index out of range for task '{task}' with {size} classes: "
                          f"got {sorted(set(labels.tolist()))}; does the label file match the model?")


def loss_terms(outputs: Mapping[str, torch.Tensor], labels: torch.Tensor, task: str,
               real_index: int = 0) -> Dict[str, torch.Tensor]:
    """The task's loss and its parts: ``{"loss": total, "detect": ..., "trace": ...}``."""
    labels = labels.to(next(iter(outputs.values())).device).long()
    terms: Dict[str, torch.Tensor] = {}
    if task == "detect":
        _check_range(labels, 2, task)
        terms["detect"] = F.binary_cross_entropy_with_logits(outputs["detect"].float(), labels.float())
    elif task == "trace":
        _check_range(labels, outputs["trace"].shape[-1], task)
        terms["trace"] = F.cross_entropy(outputs["trace"].float(), labels)
    elif task == "joint":
        _check_range(labels, outputs["trace"].shape[-1] + 1, task)
        detect_t, trace_t = joint_targets(labels, real_index)
        terms["detect"] = F.binary_cross_entropy_with_logits(outputs["detect"].float(), detect_t)
        # Sum over fakes / their count: a batch of only real videos adds an exact 0 (not NaN).
        n_fake = (trace_t != IGNORE_INDEX).sum().clamp(min=1)
        terms["trace"] = F.cross_entropy(outputs["trace"].float(), trace_t, ignore_index=IGNORE_INDEX,
                                         reduction="sum") / n_fake
    else:
        check_task(task, None)
    terms["loss"] = sum(terms.values())
    return terms


def _temperature(temperature: Temperature, head: str) -> float:
    if isinstance(temperature, Mapping):
        return float(temperature.get(head, 1.0))
    return float(temperature)


def probabilities(outputs: Mapping[str, torch.Tensor], task: str, real_index: int = 0,
                  temperature: Temperature = 1.0) -> torch.Tensor:
    """Per-video probabilities over the task's label set (B, K), temperature-scaled.

    ``detect``: [P(real), P(fake)]; ``trace``: softmax; ``joint``: P(real) = 1 - P(fake) at
    ``real_index`` and P(source k) = P(fake) * softmax(trace)_k elsewhere (sums to 1).
    ``temperature`` is a float or ``{"detect": t, "trace": t}``.
    """
    if task == "trace":
        return torch.softmax(outputs["trace"].float() / _temperature(temperature, "trace"), dim=-1)
    p_fake = torch.sigmoid(outputs["detect"].float() / _temperature(temperature, "detect"))
    if task == "detect":
        return torch.stack([1 - p_fake, p_fake], dim=-1)
    if task != "joint":
        check_task(task, None)
    sources = torch.softmax(outputs["trace"].float() / _temperature(temperature, "trace"), dim=-1)
    sources = sources * p_fake.unsqueeze(-1)
    real = (1 - p_fake).unsqueeze(-1)
    return torch.cat([sources[..., :real_index], real, sources[..., real_index:]], dim=-1)
