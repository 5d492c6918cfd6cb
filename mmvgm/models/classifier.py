"""``VideoClassifier`` (backbone + task heads) and ``build_model``, the one door to it."""
from __future__ import annotations

import copy
from typing import Any, Callable, Dict, Mapping, Optional

import torch
from torch import nn

from mmvgm.config import check_keys
from mmvgm.errors import ConfigError, PathLike
from mmvgm.models import heads as H
from mmvgm.models.registry import Backbone, build_backbone

MODEL_KEYS = ("backbone", "task", "num_classes", "dropout")


class VideoClassifier(nn.Module):
    """A backbone with the heads of one task (see ``models.heads`` for the label encoding).

    ``forward(pixel_values (B,T,C,H,W) float)`` -> ``{"features": (B,D), "detect": (B,),
    "trace": (B,N)}`` (the heads of the task), plus ``frame_features``/``frame_detect``/
    ``frame_trace`` for per-frame backbones. ``config`` rebuilds the same architecture with
    ``build_model`` (pretrained ``weights`` are not repeated there: the model's own
    state dict supersedes them; ``pretrained`` remembers where they came from).
    """

    def __init__(self, backbone: Backbone, task: str, num_classes: Optional[int] = None,
                 dropout: float = 0.0) -> None:
        super().__init__()
        self.backbone = backbone
        self.task = task
        self.num_classes = H.check_task(task, num_classes) or None
        self.dropout = float(dropout)
        self.heads = H.make_heads(task, backbone.num_features, num_classes, dropout)
        self.pretrained: Optional[str] = backbone.cfg.get("weights")

    @property
    def backbone_config(self) -> dict:
        cfg = copy.deepcopy(self.backbone.cfg)
        cfg["weights"] = None
        return cfg

    @property
    def config(self) -> dict:
        """The ``build_model`` config of this model (JSON/YAML-safe)."""
        return {"backbone": self.backbone_config, "task": self.task, "num_classes": self.num_classes,
                "dropout": self.dropout}

    @property
    def preprocess(self) -> Optional[dict]:
        return copy.deepcopy(self.backbone.cfg.get("preprocess"))

    @property
    def frames(self) -> int:
        return self.backbone.frames

    @property
    def num_labels(self) -> int:
        """Size of the task's label set (2 detect, N trace, N+1 joint)."""
        return H.label_space_size(self.task, self.num_classes)

    def forward(self, pixel_values: torch.Tensor) -> Dict[str, torch.Tensor]:
        self.backbone.check_input(pixel_values)
        out = dict(self.backbone(pixel_values))
        frame_features = out.get("frame_features")
        for name, head in self.heads.items():
            out[name] = head(out["features"])
            if frame_features is not None:
                out[f"frame_{name}"] = head(frame_features)
        return out

    def loss_terms(self, outputs: Mapping[str, torch.Tensor], labels: torch.Tensor) -> Dict[str, torch.Tensor]:
        return H.loss_terms(outputs, labels, self.task)

    def loss(self, outputs: Mapping[str, torch.Tensor], labels: torch.Tensor) -> torch.Tensor:
        """The task's training loss (joint: BCE on every video + CE on generated ones)."""
        return self.loss_terms(outputs, labels)["loss"]


#: Model kinds besides the classifier: ``kind`` in a model config -> ``"module:builder"``,
#: imported on first use (like the backbones), so a new kind is one module and one line here.
MODEL_KINDS: Dict[str, str] = {"temporal_statistic": "mmvgm.models.temporal:build_temporal"}


def build_model(cfg: Mapping[str, Any], *, weights: Optional[PathLike] = None, scoring: bool = False) -> nn.Module:
    """Build a ``VideoClassifier`` from ``{"backbone", "task", "num_classes"[, "dropout"]}``;
    ``backbone`` is a config name/path/dict (see ``models.registry``), ``num_classes`` the
    number of trace logits (trace: N classes; joint: N sources, the label set minus ``real``).
    A config with a ``kind`` builds that kind of model instead (``MODEL_KINDS``: e.g.
    ``temporal_statistic``, the training-free detector of ``models.temporal``).

    ``weights`` (or the backbone config's ``weights:``) loads local pretrained backbone weights.
    ``scoring``: a checkpoint fills the model next (see ``build_backbone``), as in ``load_checkpoint``.
    """
    if not isinstance(cfg, Mapping):
        raise ConfigError(f"model config must be a mapping, got {type(cfg).__name__}")
    if "kind" in cfg:
        return _kind_builder(cfg["kind"])(cfg, weights=weights, scoring=scoring)
    check_keys(cfg, MODEL_KEYS, "model config")
    if "backbone" not in cfg:
        raise ConfigError("model config is missing 'backbone'")
    task = cfg.get("task", "detect")
    H.check_task(task, cfg.get("num_classes"))
    backbone = build_backbone(cfg["backbone"], weights=weights, scoring=scoring)
    return VideoClassifier(backbone, task, cfg.get("num_classes"), dropout=cfg.get("dropout", 0.0))


def _kind_builder(kind: Any) -> Callable[..., nn.Module]:
    import importlib

    from mmvgm.config import did_you_mean

    if kind not in MODEL_KINDS:
        raise ConfigError(f"unknown model kind '{kind}'{did_you_mean(str(kind), MODEL_KINDS)}; "
                          f"known: {', '.join(MODEL_KINDS)}")
    module, name = MODEL_KINDS[kind].split(":")
    return getattr(importlib.import_module(module), name)
