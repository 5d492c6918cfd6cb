"""``timm:<name>``: any timm image model applied to every frame, then temporal mean pooling.

A UnivFD-style per-frame baseline. The backbone returns ``frame_features`` (B,T,D) as well as
their mean ``features`` (B,D), so the classifier can report per-frame scores. ``preprocess``
defaults to the model's timm ``pretrained_cfg`` (mean/std, interpolation, crop_pct), else ImageNet.
A timm checkpoint's classifier (``pretrained_cfg["classifier"]``) is dropped on load, and a
3-channel first conv is adapted to ``channels`` with timm's ``adapt_input_conv``.
"""
from __future__ import annotations

import math
from typing import Dict, Optional

import torch

from mmvgm.errors import ConfigError
from mmvgm.config import _did_you_mean
from mmvgm.models.registry import Backbone, register_backbone

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def _pretrained_cfg(name: str) -> Optional[dict]:
    import timm

    pcfg = timm.get_pretrained_cfg(name, allow_unregistered=True)
    return pcfg.to_dict() if pcfg is not None else None


def complete_timm(cfg: dict) -> dict:
    import timm

    name = cfg["model"].get("name")
    if not name:
        raise ConfigError("a timm backbone needs model.name (or use the name form timm:<model>)")
    if not timm.is_model(name):
        raise ConfigError(f"unknown timm model '{name}'{_did_you_mean(name, timm.list_models())}; "
                          "see timm.list_models()")
    pcfg = _pretrained_cfg(name) or {}
    crop_pct = pcfg.get("crop_pct") or 0.875
    defaults = {"resize_shortest": int(math.floor(cfg["size"] / crop_pct)), "crop": cfg["size"],
                "mean": list(pcfg.get("mean") or IMAGENET_MEAN), "std": list(pcfg.get("std") or IMAGENET_STD),
                "resample": pcfg.get("interpolation") or "bicubic",
                "crop_offset": "round"}  # torchvision's CenterCrop, as in timm's eval transform
    cfg["preprocess"] = dict(defaults, **(cfg.get("preprocess") or {}))
    return cfg


class FrameModel(Backbone):
    """A timm image model per frame (batched as B*T images) + temporal mean pooling."""

    def __init__(self, cfg: dict) -> None:
        super().__init__(cfg)
        import timm

        kwargs = dict(cfg["model"])
        self.timm_name = kwargs.pop("name")
        pcfg = _pretrained_cfg(self.timm_name) or {}
        native = (pcfg.get("input_size") or (None,))[-1]
        self.model = None
        if native is not None and native != self.size and "img_size" not in kwargs:
            # Transformers need img_size for their position embeddings; CNNs take any size
            # and refuse the argument.
            try:
                self.model = self._create(kwargs, img_size=self.size)
                self.fixed_size = True
            except TypeError:
                self.model = None
        if self.model is None:
            self.model = self._create(kwargs)
            self.fixed_size = bool(pcfg.get("fixed_input_size")) and native == self.size
        self.num_features = int(getattr(self.model, "head_hidden_size", None) or self.model.num_features)
        classifiers = pcfg.get("classifier") or ()
        classifiers = (classifiers,) if isinstance(classifiers, str) else tuple(classifiers)
        self.ignore_unexpected = tuple(f"model.{c}." for c in classifiers)
        first = pcfg.get("first_conv") or ()
        self._first_convs = (first,) if isinstance(first, str) else tuple(first)

    def _create(self, kwargs: dict, **extra) -> torch.nn.Module:
        import timm

        try:
            return timm.create_model(self.timm_name, pretrained=False, num_classes=0, in_chans=self.channels,
                                     **kwargs, **extra)
        except TypeError:
            if extra:
                raise
            raise ConfigError(f"timm model '{self.timm_name}' rejects model options {sorted(kwargs)}") from None

    def adapt_state_dict(self, state: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
        if not any(k.startswith("model.") for k in state):
            state = {f"model.{k}": v for k, v in state.items()}
        from timm.models import adapt_input_conv

        for conv in self._first_convs:
            key = f"model.{conv}.weight"
            if key in state and state[key].dim() == 4 and state[key].shape[1] != self.channels:
                state[key] = adapt_input_conv(self.channels, state[key])
        return state

    def forward(self, pixel_values: torch.Tensor) -> Dict[str, torch.Tensor]:
        b, t = pixel_values.shape[:2]
        frame_features = self.model(pixel_values.flatten(0, 1)).view(b, t, -1)
        return {"features": frame_features.mean(1), "frame_features": frame_features}


@register_backbone("timm", default_config="timm", complete=complete_timm)
def build_timm(cfg: dict) -> FrameModel:
    """Any timm image model per frame + temporal mean pooling (timm:<name>); frame-level scores."""
    return FrameModel(cfg)
