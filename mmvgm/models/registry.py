"""Backbone registry and backbone configs (the timm ``register_model`` / ``create_model`` idea).

A backbone is one file with a builder decorated by ``@register_backbone(name)`` plus a YAML
in ``configs/backbones/``. ``build_backbone(spec)`` is the one door: ``spec`` is a shipped
config name (``videomae_tiny``), a YAML path, a registered backbone name (``xclip``: its
default config), ``timm:<timm model name>``, or an already loaded config dict.

Backbone config keys (all validated, a typo is a ``ConfigError`` with a did-you-mean)::

    backbone:   registered builder name (i3d_r50, videomae, xclip, timm)
    frames:     clip length T the model is built for
    size:       square input side S (after the crop)
    channels:   input channels C (3 for RGB, 4 for LVD latents)
    model:      builder options (HF config fields for videomae/xclip, create_resnet options
                for i3d_r50, create_model kwargs + ``name`` for timm); never frames/size/channels
    preprocess: {resize_shortest, crop, mean, std, resample, rescale, crop_offset} for
                data.transforms (or null)
    weights:    optional pretrained weights: a local file or directory, or a hub id
                (org/name[@revision], hf://org/name/file), see models.pretrained;
                an HF directory's preprocessor_config.json sets preprocess mean/std/resample/rescale
"""
from __future__ import annotations

import copy
import importlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, List, Mapping, Optional, Union

import torch
from torch import nn

from mmvgm.config import _did_you_mean, check_keys, configs_dir, load_config, load_yaml, merge
from mmvgm.errors import ConfigError, PathLike

BACKBONE_KEYS = ("backbone", "frames", "size", "channels", "model", "preprocess", "weights")
PREPROCESS_KEYS = ("resize_shortest", "crop", "mean", "std", "resample", "rescale", "crop_offset")
CONFIG_GROUP = "backbones"
TIMM_PREFIX = "timm:"

# Modules whose import registers the built-in backbones (imported on first registry use).
_BUILTIN_MODULES = ("mmvgm.models.i3d", "mmvgm.models.videomae", "mmvgm.models.xclip",
                    "mmvgm.models.frames")

BackboneSpec = Union[str, PathLike, Mapping[str, Any]]


class Backbone(nn.Module):
    """Base class: ``forward(pixel_values (B,T,C,H,W) float) -> {"features": (B,D), ...}``.

    Per-frame backbones also return ``"frame_features"`` (B,T,D). Subclasses set
    ``num_features`` and, for pretrained loading (``models.pretrained``), may override
    ``adapt_state_dict`` (rename checkpoint keys to this module's), ``ignore_unexpected``
    (checkpoint keys that belong to a classification/pretraining head and are dropped) and
    ``allow_missing`` (own keys a checkpoint may lack, e.g. a pooling norm: kept as initialised).
    """

    num_features: int = 0
    fixed_frames: bool = False  # position embeddings tie the model to cfg["frames"]
    fixed_size: bool = False  # ... and to cfg["size"]
    ignore_unexpected: tuple = ()
    allow_missing: tuple = ()
    weight_files: tuple = ("model.safetensors", "pytorch_model.bin")

    def __init__(self, cfg: Mapping[str, Any]) -> None:
        super().__init__()
        self.cfg = copy.deepcopy(dict(cfg))
        self.frames = int(cfg["frames"])
        self.size = int(cfg["size"])
        self.channels = int(cfg["channels"])

    def adapt_state_dict(self, state: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
        return state

    def check_input(self, pixel_values: torch.Tensor) -> None:
        """One clear error instead of a shape mismatch deep inside the network."""
        if pixel_values.dim() != 5:
            raise ConfigError(f"{self.cfg['backbone']} expects pixel_values (B,T,C,H,W), "
                              f"got shape {tuple(pixel_values.shape)}")
        _, t, c, h, w = pixel_values.shape
        if c != self.channels:
            raise ConfigError(f"{self.cfg['backbone']} was built for {self.channels} channels, "
                              f"got {c} (input shape {tuple(pixel_values.shape)})")
        if self.fixed_frames and t != self.frames:
            raise ConfigError(f"{self.cfg['backbone']} was built for {self.frames} frames, got {t}; "
                              "set frames in the backbone config")
        if self.fixed_size and (h, w) != (self.size, self.size):
            raise ConfigError(f"{self.cfg['backbone']} was built for {self.size}x{self.size} input, "
                              f"got {h}x{w}; set size in the backbone config")


@dataclass(frozen=True)
class BackboneEntry:
    name: str
    builder: Callable[[dict], Backbone]
    default_config: Optional[str]
    description: str
    complete: Optional[Callable[[dict], dict]] = None
    scoring_builder: Optional[Callable[[dict], Backbone]] = None


_REGISTRY: Dict[str, BackboneEntry] = {}
_builtins_loaded = False


def register_backbone(name: str, *, default_config: Optional[str] = None, description: str = "",
                      complete: Optional[Callable[[dict], dict]] = None,
                      scoring_builder: Optional[Callable[[dict], Backbone]] = None) -> Callable:
    """Decorator for ``builder(cfg: dict) -> Backbone``; ``cfg`` is a resolved backbone config.

    ``complete(cfg) -> cfg`` (optional) validates the ``model:`` section and fills defaults at
    resolve time, so a typo fails before anything is built and checkpoints record full configs.
    ``scoring_builder(cfg)`` (optional) builds the same network for a checkpoint to fill
    (``build_backbone(..., scoring=True)``): same state dict, same outputs, cheaper to import
    and build; it need not initialise its weights.
    """

    def decorator(builder: Callable[[dict], Backbone]) -> Callable[[dict], Backbone]:
        if name in _REGISTRY and _REGISTRY[name].builder is not builder:
            raise ValueError(f"backbone '{name}' is already registered")
        doc_lines = (builder.__doc__ or "").strip().splitlines()
        summary = description or (doc_lines[0] if doc_lines else "")
        _REGISTRY[name] = BackboneEntry(name, builder, default_config, summary, complete, scoring_builder)
        return builder

    return decorator


def _load_builtins() -> None:
    global _builtins_loaded
    if not _builtins_loaded:
        _builtins_loaded = True
        for module in _BUILTIN_MODULES:
            importlib.import_module(module)


def list_backbones() -> List[str]:
    """Registered backbone names (``timm`` stands for ``timm:<any timm model>``)."""
    _load_builtins()
    return sorted(_REGISTRY)


def backbone_entries() -> List[BackboneEntry]:
    _load_builtins()
    return [_REGISTRY[name] for name in sorted(_REGISTRY)]


def list_configs() -> List[str]:
    """Names of the shipped backbone configs (``configs/backbones/*.yaml``)."""
    return sorted(p.stem for p in (configs_dir() / CONFIG_GROUP).glob("*.yaml"))


def _known_names() -> List[str]:
    return sorted(set(list_configs()) | set(list_backbones()) | {"timm:<name>"})


def _load_named(spec: str) -> dict:
    if spec.startswith(TIMM_PREFIX):
        timm_name = spec[len(TIMM_PREFIX):].strip()
        if not timm_name:
            raise ConfigError("'timm:' needs a timm model name, e.g. timm:resnet18")
        cfg = load_config("timm", CONFIG_GROUP)
        cfg.setdefault("model", {})
        cfg["model"] = dict(cfg["model"] or {}, name=timm_name)
        return cfg
    path = Path(spec).expanduser()
    if path.suffix in (".yaml", ".yml"):
        return load_config(path, CONFIG_GROUP)
    # Names win over paths: a weights folder called videomae/ in the cwd must not shadow the config.
    if spec in list_configs():
        return load_config(spec, CONFIG_GROUP)
    _load_builtins()
    entry = _REGISTRY.get(spec)
    if entry is not None and entry.default_config:
        return load_config(entry.default_config, CONFIG_GROUP)
    if path.is_file():
        return load_config(path, CONFIG_GROUP)
    known = _known_names()
    raise ConfigError(f"unknown backbone '{spec}'{_did_you_mean(spec, known)}; "
                      f"known: {', '.join(known)}")


def resolve_backbone_config(spec: BackboneSpec, *, frames: Optional[int] = None,
                            size: Optional[int] = None, channels: Optional[int] = None,
                            weights: Optional[PathLike] = None) -> dict:
    """A complete, validated backbone config dict from a name, a path or a dict.

    ``frames``/``size``/``channels``/``weights`` override the config; a new ``size`` also
    moves ``preprocess.crop`` to it and scales ``preprocess.resize_shortest`` in proportion,
    so the transform and the model always agree.
    """
    if isinstance(spec, Mapping):
        cfg = copy.deepcopy(dict(spec))
        base = cfg.pop("base", None)
        if base is not None:
            cfg = merge(resolve_backbone_config(base), cfg)
    elif isinstance(spec, (str, Path)):
        cfg = _load_named(str(spec))
    else:
        raise ConfigError(f"backbone must be a name, a YAML path or a mapping, got {type(spec).__name__}")
    cfg.pop("base", None)
    check_keys(cfg, BACKBONE_KEYS, "backbone config")
    for key in ("backbone", "frames", "size", "channels"):
        if cfg.get(key) is None:
            raise ConfigError(f"backbone config is missing '{key}'")
    if frames is not None:
        cfg["frames"] = frames
    if channels is not None:
        cfg["channels"] = channels
    if weights is not None:
        cfg["weights"] = str(weights)
    for key in ("frames", "size", "channels"):
        value = cfg[key]
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ConfigError(f"backbone config '{key}' must be a positive integer, got {value!r}")
    if size is not None and size != cfg["size"]:
        _resize_preprocess(cfg, int(size))
    cfg["model"] = dict(cfg.get("model") or {})
    cfg.setdefault("preprocess", None)
    cfg.setdefault("weights", None)
    if cfg["preprocess"] is not None:
        if not isinstance(cfg["preprocess"], Mapping):
            raise ConfigError("backbone config 'preprocess' must be a mapping or null")
        check_keys(cfg["preprocess"], PREPROCESS_KEYS, "backbone config 'preprocess'")
        processor = weights_processor_file(cfg["weights"])
        if processor is not None:  # the statistics the weights were trained with win over the YAML's
            from mmvgm.data.transforms import pixel_statistics_from_hf_processor

            cfg["preprocess"] = {**cfg["preprocess"], **pixel_statistics_from_hf_processor(processor)}
    for key in ("frames", "size", "channels", "image_size", "num_frames", "num_channels",
                "in_chans", "input_channel", "img_size"):
        if key in cfg["model"]:
            raise ConfigError(f"backbone config 'model.{key}' is set from the top-level "
                              "frames/size/channels keys; set those instead")
    _load_builtins()
    name = cfg["backbone"]
    if name not in _REGISTRY:
        known = sorted(_REGISTRY)
        raise ConfigError(f"unknown backbone '{name}'{_did_you_mean(str(name), known)}; "
                          f"known: {', '.join(known)}")
    complete = _REGISTRY[name].complete
    return complete(cfg) if complete is not None else cfg


def weights_processor_file(weights: Optional[PathLike]) -> Optional[Path]:
    """The ``preprocessor_config.json`` an HF-format weights directory (or hub repo) ships with, if any."""
    from mmvgm.checkpoint.hub import resolve
    from mmvgm.data.transforms import HF_PROCESSOR_FILE

    if not weights:
        return None
    path = resolve(weights) / HF_PROCESSOR_FILE
    return path if path.is_file() else None


def _resize_preprocess(cfg: dict, size: int) -> None:
    old = cfg["size"]
    cfg["size"] = size
    pre = cfg.get("preprocess")
    if isinstance(pre, Mapping):
        pre = dict(pre)
        if pre.get("resize_shortest") and pre.get("crop"):
            pre["resize_shortest"] = int(round(pre["resize_shortest"] * size / pre["crop"]))
        elif pre.get("resize_shortest"):
            pre["resize_shortest"] = int(round(pre["resize_shortest"] * size / old))
        pre["crop"] = size
        cfg["preprocess"] = pre


def build_backbone(spec: BackboneSpec, *, weights: Optional[PathLike] = None, scoring: bool = False,
                   **overrides: Any) -> Backbone:
    """Build a backbone from a name/path/dict; loads ``weights`` (argument or config) if given.

    ``scoring``: the backbone is about to be filled from a checkpoint and used to score (the
    entry's ``scoring_builder`` where it has one; its weights may be uninitialised)."""
    cfg = resolve_backbone_config(spec, weights=weights, **overrides)
    entry = _REGISTRY[cfg["backbone"]]
    backbone = (entry.scoring_builder if scoring and entry.scoring_builder else entry.builder)(cfg)
    if cfg.get("weights"):
        from mmvgm.models.pretrained import load_pretrained

        load_pretrained(backbone, cfg["weights"])
    return backbone


def describe_config(name: str) -> dict:
    """A one-line summary of a shipped config (for ``mmvgm models``), without building it."""
    raw = load_yaml(configs_dir() / CONFIG_GROUP / f"{name}.yaml")
    cfg = resolve_backbone_config(name)
    model = cfg.get("model") or {}
    summary = {"config": name, "backbone": cfg["backbone"], "frames": cfg["frames"],
               "size": cfg["size"], "channels": cfg["channels"],
               "base": raw.get("base"), "weights": cfg.get("weights")}
    if cfg["backbone"] == "timm":
        summary["timm_model"] = model.get("name")
    return summary


def summarize_backbone(spec: BackboneSpec) -> dict:
    """Build a backbone (random init) and report its size: ``{"num_features", "parameters"}``."""
    backbone = build_backbone(spec)
    return {"num_features": int(backbone.num_features),
            "parameters": int(sum(p.numel() for p in backbone.parameters()))}
