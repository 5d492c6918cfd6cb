"""A training-free detector: the spread of how a frozen backbone's embedding moves through a clip
(the D3 statistic, "detection by difference of differences"), standardised against real videos.

For a clip, the backbone gives a sequence of embeddings ``f_1..f_N``: one per frame for a
per-frame backbone (``frame_features``, e.g. ``timm:``), one per window of ``window`` frames
every ``stride`` frames for a clip backbone (VideoMAE, I3D, X-CLIP). Then

    d_t = distance(f_t, f_{t+1})              # first order: how far the embedding moves per step
    order 2: d'_t = d_{t+1} - d_t             # second order: how that motion changes (D3)
    s = log(std(d or d') + eps)               # its spread, on a log scale

Real motion changes irregularly; a generator's is too smooth (the D3 finding) or too jumpy
(flicker, dropped or repeated frames). ``direction`` says which side is suspect: ``low`` (D3's
rule), ``high`` or ``both``. ``center`` and ``scale`` (buffers, fitted on real videos by
``mmvgm.engine.fit_real``) standardise it: ``z = (s - center) / scale``, and the ``detect``
logit is ``log((1 - q) / q)`` for the tail probability ``q`` of ``z`` under a standard normal
(two-sided for ``both``). So the sigmoid of the logit says how atypical of the fitted real
videos a clip is; it is not a posterior probability of being generated. The decision threshold
is fitted on held-out real videos (``Calibration``), which also corrects for the statistic not
being exactly normal.

The model has no trained weights besides the backbone's: ``build_model`` rebuilds it from its
``config`` and ``model.safetensors`` holds the backbone and the two buffers.
"""
from __future__ import annotations

import copy
import math
from typing import Any, Callable, Dict, Mapping, Optional

import torch
import torch.nn.functional as F
from torch import nn

from mmvgm.config import check_keys, did_you_mean
from mmvgm.errors import ConfigError, PathLike
from mmvgm.models.registry import Backbone, build_backbone

KIND = "temporal_statistic"
CONFIG_KEYS = ("kind", "backbone", "task", "statistic", "embedding")
STATISTIC_KEYS = ("order", "distance", "direction")
EMBEDDING_KEYS = ("unit", "window", "stride")
ORDERS = (1, 2, 3)
EPS = 1e-8            # keeps log() finite for a clip whose embedding never moves (a still frame)
WINDOW_BATCH = 16     # clip windows per backbone call (see _window_sequence)
LOGIT_BOUND = 30.0    # sigmoid(30) is 1 in float32: beyond it nothing is more certain, and no inf
Tensor = torch.Tensor

#: distance between consecutive embeddings (unit vectors): (…, D), (…, D) -> (…)
DISTANCES: Dict[str, Callable[[Tensor, Tensor], Tensor]] = {
    "cosine": lambda a, b: 1.0 - (a * b).sum(-1),
    "l2": lambda a, b: (a - b).norm(dim=-1),
}

#: log tail probability of z on the suspect side (small: atypical of real videos)
DIRECTIONS: Dict[str, Callable[[Tensor], Tensor]] = {
    "low": lambda z: torch.special.log_ndtr(z),
    "high": lambda z: torch.special.log_ndtr(-z),
    "both": lambda z: torch.special.log_ndtr(-z.abs()) + math.log(2.0),
}

DEFAULT_STATISTIC = {"order": 2, "distance": "l2", "direction": "both"}  # l2: the D3 code's default


def check_statistic(statistic: Optional[Mapping[str, Any]]) -> dict:
    """A complete, validated statistic config (missing keys take the defaults)."""
    out = dict(DEFAULT_STATISTIC, **dict(statistic or {}))
    check_keys(out, STATISTIC_KEYS, "statistic")
    if isinstance(out["order"], bool) or out["order"] not in ORDERS:
        raise ConfigError(f"statistic order must be one of {', '.join(map(str, ORDERS))}, got {out['order']!r}")
    for key, table in (("distance", DISTANCES), ("direction", DIRECTIONS)):
        if out[key] not in table:
            raise ConfigError(f"unknown statistic {key} '{out[key]}'{did_you_mean(str(out[key]), table)}; "
                              f"use one of {', '.join(table)}")
    return out


def volatility(sequence: Tensor, order: int, distance: str) -> Tensor:
    """``log(std(order-th difference of consecutive distances) + eps)``: (B, N, D) -> (B,).

    Embeddings are compared as unit vectors, so the statistic does not depend on a backbone's
    feature scale. Needs ``N >= order + 2`` (two values to take a spread of)."""
    n = sequence.shape[1]
    if n < order + 2:
        raise ConfigError(f"a statistic of order {order} needs at least {order + 2} embeddings per clip, "
                          f"got {n}: use more frames")
    unit = F.normalize(sequence.float(), dim=-1)
    moves = DISTANCES[distance](unit[:, 1:], unit[:, :-1])
    for _ in range(order - 1):
        moves = moves[:, 1:] - moves[:, :-1]
    return torch.log(moves.std(dim=1, correction=1) + EPS)


def tail_logit(log_tail: Tensor) -> Tensor:
    """``log((1 - q) / q)`` from ``log q``, bounded: the logit whose sigmoid is ``1 - q``."""
    log_tail = log_tail.clamp(max=0.0)
    return (torch.log(-torch.expm1(log_tail)) - log_tail).clamp(-LOGIT_BOUND, LOGIT_BOUND)


class TemporalDetector(nn.Module):
    """A frozen backbone + the D3-style statistic: ``forward(pixel_values (B,T,C,H,W))`` ->
    ``{"features": (B,D) mean embedding, "statistic": (B,) log spread, "detect": (B,) logit}``."""

    task = "detect"

    def __init__(self, backbone: Backbone, statistic: Optional[Mapping[str, Any]] = None,
                 embedding: Optional[Mapping[str, Any]] = None) -> None:
        super().__init__()
        self.backbone = backbone.eval().requires_grad_(False)
        self.statistic = check_statistic(statistic)
        self.embedding = self._check_embedding(embedding or {"unit": "frame"})
        # fitted on real videos (engine.fit_real); saved in model.safetensors with the backbone
        self.register_buffer("center", torch.zeros(()))
        self.register_buffer("scale", torch.ones(()))

    def _check_embedding(self, embedding: Mapping[str, Any]) -> dict:
        out = {"unit": "frame", "window": None, "stride": 1, **dict(embedding)}
        check_keys(out, EMBEDDING_KEYS, "embedding")
        if out["unit"] not in SEQUENCES:
            raise ConfigError(f"unknown embedding unit '{out['unit']}'; use one of {', '.join(SEQUENCES)}")
        if out["unit"] == "clip":
            out["window"] = int(out["window"] or self.backbone.frames)
        for key in ("window", "stride"):
            if out[key] is not None and int(out[key]) < 1:
                raise ConfigError(f"embedding {key} must be >= 1, got {out[key]}")
        return out

    def train(self, mode: bool = True) -> "TemporalDetector":
        super().train(mode)
        self.backbone.eval()  # frozen: dropout and batch-norm statistics stay as fitted
        return self

    @property
    def frames_needed(self) -> int:
        """The fewest frames a clip needs for the statistic."""
        need = self.statistic["order"] + 2
        if self.embedding["unit"] == "frame":
            return need
        return int(self.embedding["window"]) + (need - 1) * int(self.embedding["stride"])

    @property
    def config(self) -> dict:
        """The ``build_model`` config of this model (JSON/YAML-safe)."""
        backbone = copy.deepcopy(self.backbone.cfg)
        backbone["weights"] = None  # the checkpoint's own state dict holds them
        return {"kind": KIND, "backbone": backbone, "task": self.task, "statistic": dict(self.statistic),
                "embedding": dict(self.embedding)}

    @property
    def preprocess(self) -> Optional[dict]:
        return copy.deepcopy(self.backbone.cfg.get("preprocess"))

    def sequence(self, pixel_values: Tensor) -> Tensor:
        """The clip's embedding sequence (B, N, D)."""
        return SEQUENCES[self.embedding["unit"]](self, pixel_values)

    def logit(self, statistic: Tensor) -> Tensor:
        """The ``detect`` logit of raw statistics (B,), with the fitted center and scale."""
        z = (statistic - self.center) / self.scale
        return tail_logit(DIRECTIONS[self.statistic["direction"]](z))

    def forward(self, pixel_values: Tensor) -> Dict[str, Tensor]:
        sequence = self.sequence(pixel_values)
        stat = volatility(sequence, self.statistic["order"], self.statistic["distance"])
        return {"features": sequence.float().mean(1), "statistic": stat, "detect": self.logit(stat)}


def _frame_sequence(model: TemporalDetector, pixel_values: Tensor) -> Tensor:
    model.backbone.check_input(pixel_values)
    out = model.backbone(pixel_values)
    if "frame_features" not in out:
        raise ConfigError(f"backbone '{model.backbone.cfg['backbone']}' gives one embedding per clip, not per "
                          "frame: use embedding unit 'clip'")
    return out["frame_features"]


def _window_sequence(model: TemporalDetector, pixel_values: Tensor) -> Tensor:
    b, t = pixel_values.shape[:2]
    window, stride = int(model.embedding["window"]), int(model.embedding["stride"])
    if t < window:
        raise ConfigError(f"clips of {t} frames are shorter than the embedding window ({window})")
    starts = range(0, t - window + 1, stride)
    windows = torch.stack([pixel_values[:, s:s + window] for s in starts], dim=1).flatten(0, 1)
    model.backbone.check_input(windows)
    # B*N windows in backbone batches of at most WINDOW_BATCH: all at once would hold N times a
    # batch's activations (a VideoMAE-base's attention maps alone run to gigabytes)
    features = [model.backbone(chunk)["features"] for chunk in windows.split(WINDOW_BATCH)]
    return torch.cat(features).view(b, len(starts), -1)


SEQUENCES: Dict[str, Callable[[TemporalDetector, Tensor], Tensor]] = {
    "frame": _frame_sequence, "clip": _window_sequence,
}


def build_temporal(cfg: Mapping[str, Any], *, weights: Optional[PathLike] = None,
                   scoring: bool = False) -> TemporalDetector:
    """A ``TemporalDetector`` from its ``config`` (``weights``: the backbone's pretrained weights)."""
    check_keys(cfg, CONFIG_KEYS, "model config")
    if cfg.get("task", "detect") != "detect":
        raise ConfigError(f"a {KIND} model detects (task 'detect'), got task '{cfg.get('task')}'")
    if "backbone" not in cfg:
        raise ConfigError("model config is missing 'backbone'")
    backbone = build_backbone(cfg["backbone"], weights=weights, scoring=scoring)
    return TemporalDetector(backbone, cfg.get("statistic"), cfg.get("embedding"))
