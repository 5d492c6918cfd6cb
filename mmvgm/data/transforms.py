"""Per-backbone video preprocessing: resize the shortest edge, center crop, rescale, normalise.

Two stages, so that the heavy part runs where it is cheapest:

* ``geometric`` (uint8 -> uint8): resize + center crop. Runs in DataLoader workers, so clips
  of any size stack into a batch while staying uint8 (4x less memory than float).
* ``normalize`` (uint8 -> float): ``(x * rescale - mean) / std``. Runs batched on the model's
  device.

``VideoTransform(...)(clip)`` does both. The arithmetic is the one of the transformers
image processors (``VideoMAEImageProcessor``, the X-CLIP processor, which is a
VideoMAEImageProcessor with CLIP statistics): the new size is ``(s, int(s * long / short))``,
the resize gives the pixels of ``torchvision.transforms.v2.functional.resize`` on uint8 with
antialiasing (:func:`resize_uint8`, which does not import torchvision),
the crop offset is ``int((H - h) / 2)`` and a too-small frame is zero-padded first.
torchvision's ``CenterCrop`` (used by timm and pytorchvideo) rounds that offset instead:
``crop_offset: round`` reproduces it (a one-pixel shift matters on noisy frames). The
tests check the output against those processors (mean absolute difference < 0.01).

The ``preprocess:`` dict of a backbone YAML (``configs/backbones/*.yaml``) is exactly the
argument of :meth:`VideoTransform.from_config`::

    preprocess:
      preset: videomae          # optional: start from PRESETS[name], the keys below override it
      resize_shortest: 224      # int: target length of the shortest edge; null = no resize
      crop: 224                 # int (square) or [height, width]; null = no crop
      mean: [0.5, 0.5, 0.5]     # one value per channel, in the rescaled (0..1) range
      std: [0.5, 0.5, 0.5]
      resample: bilinear        # bilinear | bicubic | nearest
      rescale: 0.00392156862745098   # optional, default 1/255
      crop_offset: floor        # optional: floor (transformers, default) | round (torchvision, timm)

Presets (``PRESETS``):

* ``videomae``: the default ``VideoMAEImageProcessor()``: shortest 224, crop 224, bilinear,
  mean = std = 0.5 (IMAGENET_STANDARD_*).
* ``xclip``: the processor of ``microsoft/xclip-base-patch32`` (a VideoMAEImageProcessor
  with ``size=224``, CLIP mean/std and ``resample=2``, i.e. PIL bilinear). Weights given as an
  HF directory bring their own ``preprocessor_config.json``, whose mean/std/resample then win
  (:func:`pixel_statistics_from_hf_processor`, applied by ``resolve_backbone_config``).
* ``i3d``: pytorchvideo's Kinetics-400 recipe for 224-pixel models: shortest edge 256, center
  crop 224, mean 0.45 / std 0.225 per channel, bilinear, torchvision-style (rounded) crop offset. (pytorchvideo's own hub examples crop
  256 for slow_r50; 256 -> 224 is the standard Kinetics evaluation protocol for 224 inputs and
  what ``i3d_r50`` was trained at.)
* ``timm``: ImageNet statistics (0.485, 0.456, 0.406) / (0.229, 0.224, 0.225), shortest 256,
  crop 224 (crop_pct 0.875), bicubic, rounded crop offset: timm's default eval transform. For a
  specific model prefer :func:`from_timm_data_config` with ``timm.data.resolve_data_config``.
"""
from __future__ import annotations

import math
import platform
from pathlib import Path
from typing import Any, Mapping, Optional, Sequence, Tuple, Union

import numpy as np
import torch
import torch.nn.functional as F

from mmvgm.config import check_keys
from mmvgm.errors import ConfigError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
IMAGENET_STANDARD = (0.5, 0.5, 0.5)
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
KINETICS_MEAN = (0.45, 0.45, 0.45)
KINETICS_STD = (0.225, 0.225, 0.225)

PRESETS: dict = {
    "videomae": {"resize_shortest": 224, "crop": 224, "mean": list(IMAGENET_STANDARD),
                 "std": list(IMAGENET_STANDARD), "resample": "bilinear"},
    "xclip": {"resize_shortest": 224, "crop": 224, "mean": list(CLIP_MEAN), "std": list(CLIP_STD),
              "resample": "bilinear"},
    "i3d": {"resize_shortest": 256, "crop": 224, "mean": list(KINETICS_MEAN), "std": list(KINETICS_STD),
            "resample": "bilinear", "crop_offset": "round"},
    "timm": {"resize_shortest": 256, "crop": 224, "mean": list(IMAGENET_MEAN), "std": list(IMAGENET_STD),
             "resample": "bicubic", "crop_offset": "round"},
}

_RESAMPLE = ("bilinear", "bicubic", "nearest")
# PIL's integer codes, as stored in transformers' preprocessor_config.json files.
_PIL_RESAMPLE = {0: "nearest", 2: "bilinear", 3: "bicubic"}

CONFIG_KEYS = ("preset", "resize_shortest", "crop", "mean", "std", "resample", "rescale", "crop_offset")
CROP_OFFSETS = ("floor", "round")

ArrayLike = Union[np.ndarray, torch.Tensor]


class VideoTransform:
    """Resize shortest edge -> center crop (uint8) -> rescale + mean/std (float), batched.

    ``layout`` of the input: ``"auto"`` (channels-last when the last axis has ``channels``
    entries and the third-to-last does not), ``"channels_last"`` (…,T,H,W,C) or
    ``"channels_first"`` (…,T,C,H,W). Output is always channels-first (…,T,C,S,S).
    """

    def __init__(self, resize_shortest: Optional[int] = 224, crop: Union[int, Sequence[int], None] = 224,
                 mean: Sequence[float] = IMAGENET_STANDARD, std: Sequence[float] = IMAGENET_STANDARD,
                 resample: Union[str, int] = "bilinear", rescale: float = 1 / 255,
                 crop_offset: str = "floor") -> None:
        self.resize_shortest = _positive_int_or_none(resize_shortest, "resize_shortest")
        self.crop = _crop_size(crop)
        self.mean = tuple(float(m) for m in _as_sequence(mean, "mean"))
        self.std = tuple(float(s) for s in _as_sequence(std, "std"))
        if len(self.mean) != len(self.std):
            raise ConfigError(f"preprocess: mean has {len(self.mean)} values but std has {len(self.std)}")
        if any(s <= 0 for s in self.std):
            raise ConfigError("preprocess: every std value must be > 0")
        self.resample = _resample_name(resample)
        try:
            self.rescale = float(rescale)
        except (TypeError, ValueError):
            raise ConfigError(f"preprocess: rescale must be a number, got {rescale!r}") from None
        if crop_offset not in CROP_OFFSETS:
            raise ConfigError(f"preprocess: crop_offset must be floor or round, got {crop_offset!r}")
        self.crop_offset = crop_offset
        self._stats_cache: dict = {}

    # -- construction -------------------------------------------------------------------
    @classmethod
    def from_config(cls, cfg: Union[Mapping[str, Any], str, None]) -> "VideoTransform":
        """From a backbone YAML's ``preprocess:`` dict (see the module docstring) or a preset name."""
        if cfg is None:
            raise ConfigError("preprocess config is missing")
        if isinstance(cfg, str):
            cfg = {"preset": cfg}
        if not isinstance(cfg, Mapping):
            raise ConfigError(f"preprocess must be a mapping or a preset name, got {type(cfg).__name__}")
        check_keys(cfg, CONFIG_KEYS, where="preprocess")
        merged = dict(cfg)
        preset = merged.pop("preset", None)
        if preset is not None:
            if preset not in PRESETS:
                raise ConfigError(f"unknown preprocess preset '{preset}'; known: {', '.join(sorted(PRESETS))}")
            merged = {**PRESETS[preset], **merged}
        for key in ("mean", "std"):
            if key not in merged:
                raise ConfigError(f"preprocess: '{key}' is required (or give a preset: "
                                  f"{', '.join(sorted(PRESETS))})")
        return cls(**merged)

    @classmethod
    def preset(cls, name: str, **overrides: Any) -> "VideoTransform":
        return cls.from_config({"preset": name, **overrides})

    def to_config(self) -> dict:
        """The ``from_config`` dict (stored in checkpoints so inference preprocesses identically)."""
        crop = None if self.crop is None else (self.crop[0] if self.crop[0] == self.crop[1] else list(self.crop))
        return {"resize_shortest": self.resize_shortest, "crop": crop, "mean": list(self.mean),
                "std": list(self.std), "resample": self.resample, "rescale": self.rescale,
                "crop_offset": self.crop_offset}

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.to_config().items())
        return f"VideoTransform({args})"

    @property
    def channels(self) -> int:
        return len(self.mean)

    def output_size(self, height: int, width: int) -> Tuple[int, int]:
        """(H, W) after the geometric stage for an input frame of ``height`` x ``width``."""
        if self.crop is not None:
            return self.crop
        if self.resize_shortest is not None:
            return _shortest_edge_size(height, width, self.resize_shortest)
        return height, width

    # -- stages ---------------------------------------------------------------------------
    def geometric(self, video: ArrayLike, layout: str = "auto") -> torch.Tensor:
        """uint8 (…,T,H,W,C) or (…,T,C,H,W), numpy or torch, any device -> uint8 (…,T,C,h,w)."""
        x = _to_uint8_tensor(video)
        x = self._channels_first(x, layout)
        lead = x.shape[:-3]
        c, h, w = x.shape[-3:]
        x = x.reshape(-1, c, h, w)
        if self.resize_shortest is not None:
            new_h, new_w = _shortest_edge_size(h, w, self.resize_shortest)
            x = resize_uint8(x, (new_h, new_w), self.resample)
        if self.crop is not None:
            x = _center_crop(x, self.crop, self.crop_offset)
        return x.reshape(*lead, *x.shape[-3:])

    def normalize(self, video: torch.Tensor, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """uint8 (…,C,H,W) -> ``dtype`` ``(x * rescale - mean) / std`` on the tensor's device."""
        if not isinstance(video, torch.Tensor):
            video = _to_uint8_tensor(video)
        if video.dtype != torch.uint8:
            raise TypeError(f"normalize expects a uint8 tensor (keep clips uint8 until here), got {video.dtype}")
        c = video.shape[-3]
        if c != self.channels:
            raise ConfigError(f"preprocess has {self.channels} mean/std values but the video has {c} channels")
        scale, shift = self._affine(video.device, c)
        # (x * r - m) / s == x * (r / s) - m / s, one fused multiply-add in float32
        out = torch.addcmul(shift, video.to(torch.float32), scale)
        return out if dtype == torch.float32 else out.to(dtype)

    def __call__(self, video: ArrayLike, layout: str = "auto", dtype: torch.dtype = torch.float32) -> torch.Tensor:
        return self.normalize(self.geometric(video, layout=layout), dtype=dtype)

    # -- helpers --------------------------------------------------------------------------
    def _affine(self, device: torch.device, channels: int) -> Tuple[torch.Tensor, torch.Tensor]:
        key = (str(device), channels)
        if key not in self._stats_cache:
            mean = torch.tensor(self.mean, dtype=torch.float64)
            std = torch.tensor(self.std, dtype=torch.float64)
            scale = (self.rescale / std).to(torch.float32).view(channels, 1, 1).to(device)
            shift = (-mean / std).to(torch.float32).view(channels, 1, 1).to(device)
            self._stats_cache[key] = (scale, shift)
        return self._stats_cache[key]

    def _channels_first(self, x: torch.Tensor, layout: str) -> torch.Tensor:
        if x.dim() < 3:
            raise ValueError(f"expected frames (…,H,W,C) or (…,C,H,W), got shape {tuple(x.shape)}")
        if layout == "auto":
            last, third = x.shape[-1], x.shape[-3]
            layout = "channels_last" if last == self.channels and third != self.channels else "channels_first"
            if last == self.channels and third == self.channels:
                layout = "channels_last"  # read_clip's (T,H,W,3); a 3-pixel-high frame is not a video
        if layout == "channels_last":
            return x.movedim(-1, -3)
        if layout == "channels_first":
            return x
        raise ValueError(f"layout must be auto, channels_last or channels_first, got {layout!r}")

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state["_stats_cache"] = {}  # device tensors do not travel to DataLoader workers
        return state


def from_timm_data_config(data_config: Mapping[str, Any]) -> VideoTransform:
    """Build from ``timm.data.resolve_data_config(model=...)``: input_size, crop_pct, mean, std, interpolation."""
    _, height, width = data_config["input_size"]
    crop_pct = float(data_config.get("crop_pct", 0.875) or 1.0)
    shortest = int(math.floor(min(height, width) / crop_pct))
    interpolation = data_config.get("interpolation", "bicubic")
    if interpolation not in _RESAMPLE:
        interpolation = "bicubic"
    return VideoTransform(resize_shortest=shortest, crop=(height, width), mean=data_config["mean"],
                          std=data_config["std"], resample=interpolation, crop_offset="round")


HF_PROCESSOR_FILE = "preprocessor_config.json"


def pixel_statistics_from_hf_processor(path: Path) -> dict:
    """``mean``, ``std``, ``resample`` and ``rescale`` from a transformers image processor's
    ``preprocessor_config.json`` (the file that ships with HF weights), as preprocess keys.

    Only what the file states is returned. Geometry (resize, crop) is not: it is tied to the
    model's ``size``, which the weights themselves fix. ``do_normalize: false`` means mean 0,
    std 1; ``do_rescale: false`` means rescale 1.
    """
    import json

    try:
        cfg = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ConfigError(f"cannot read {path}: {str(exc).splitlines()[0]}") from None
    if not isinstance(cfg, Mapping):
        raise ConfigError(f"{path} is not a JSON object")
    out: dict = {}
    if cfg.get("do_normalize", True) is False:
        out["mean"], out["std"] = [0.0, 0.0, 0.0], [1.0, 1.0, 1.0]
    else:
        for ours, theirs in (("mean", "image_mean"), ("std", "image_std")):
            value = cfg.get(theirs)
            if value is None:
                continue
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                value = [value] * 3  # one number for every channel
            out[ours] = list(_as_sequence(value, f"{path.name} {theirs}"))
    if cfg.get("resample") is not None:
        try:
            out["resample"] = _resample_name(cfg["resample"])
        except ConfigError as exc:
            raise ConfigError(f"{path}: {exc.message}") from None
    if cfg.get("do_rescale", True) is False:
        out["rescale"] = 1.0
    elif cfg.get("rescale_factor") is not None:
        out["rescale"] = float(cfg["rescale_factor"])
    return out


# -- small pure functions ------------------------------------------------------------------
def _shortest_edge_size(height: int, width: int, shortest: int) -> Tuple[int, int]:
    # transformers.image_transforms.get_resize_output_image_size(default_to_square=False)
    short, long = (width, height) if width <= height else (height, width)
    new_short, new_long = shortest, int(shortest * long / short)
    return (new_long, new_short) if width <= height else (new_short, new_long)


def _native_uint8_resize(x: torch.Tensor, mode: str) -> bool:
    """Whether torch resizes this uint8 tensor itself, by the rule torchvision's v2 ``resize`` uses:
    nearest anywhere, bicubic on the CPU, bilinear on CPUs with torch's vectorised uint8 kernel."""
    if mode == "nearest":
        return True
    if x.device.type != "cpu":
        return False
    if mode == "bicubic":
        return True
    return (torch.backends.cpu.get_cpu_capability() in ("AVX2", "AVX512")
            or platform.machine() in ("aarch64", "arm64"))


def resize_uint8(x: torch.Tensor, size: Tuple[int, int], mode: str = "bilinear") -> torch.Tensor:
    """uint8 (N,C,H,W) -> uint8 (N,C,h,w), antialiased: the pixels of torchvision's
    ``transforms.v2.functional.resize`` (its kernel choice and rounding), without importing
    torchvision, whose package import loads its whole model zoo and ops."""
    if tuple(size) == tuple(x.shape[-2:]) or x.numel() == 0:
        return x
    smooth = mode != "nearest"
    native = _native_uint8_resize(x, mode)
    y = F.interpolate(x if native else x.float(), size=list(size), mode=mode,
                      align_corners=False if smooth else None, antialias=smooth)
    if native:
        return y
    if mode == "bicubic":
        y = y.clamp_(0, 255)  # bicubic overshoots; the native kernel saturates
    return y.round_().to(torch.uint8)


def _center_crop(x: torch.Tensor, size: Tuple[int, int], offset: str = "floor") -> torch.Tensor:
    crop_h, crop_w = size
    h, w = x.shape[-2:]
    if crop_h > h or crop_w > w:
        pad = [(crop_w - w) // 2 if crop_w > w else 0, (crop_h - h) // 2 if crop_h > h else 0,
               (crop_w - w + 1) // 2 if crop_w > w else 0, (crop_h - h + 1) // 2 if crop_h > h else 0]
        x = F.pad(x, (pad[0], pad[2], pad[1], pad[3]), value=0)
        h, w = x.shape[-2:]
    align = int if offset == "floor" else round  # round: torchvision's CenterCrop (half to even)
    top, left = int(align((h - crop_h) / 2.0)), int(align((w - crop_w) / 2.0))
    return x[..., top:top + crop_h, left:left + crop_w]


def _to_uint8_tensor(video: ArrayLike) -> torch.Tensor:
    if isinstance(video, np.ndarray):
        if video.dtype != np.uint8:
            raise TypeError(f"expected uint8 frames, got {video.dtype}")
        return torch.from_numpy(np.ascontiguousarray(video))
    if isinstance(video, torch.Tensor):
        if video.dtype != torch.uint8:
            raise TypeError(f"expected uint8 frames, got {video.dtype}")
        return video
    raise TypeError(f"expected a numpy array or torch tensor, got {type(video).__name__}")


def _positive_int_or_none(value: Any, name: str) -> Optional[int]:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value <= 0:
        raise ConfigError(f"preprocess: {name} must be a positive integer or null, got {value!r}")
    return int(value)


def _crop_size(crop: Any) -> Optional[Tuple[int, int]]:
    if crop is None:
        return None
    if isinstance(crop, Mapping):
        crop = (crop.get("height"), crop.get("width"))
    if isinstance(crop, (int, np.integer)) and not isinstance(crop, bool):
        crop = (crop, crop)
    if (not isinstance(crop, Sequence) or len(crop) != 2
            or not all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) and v > 0 for v in crop)):
        raise ConfigError(f"preprocess: crop must be a positive integer or [height, width], got {crop!r}")
    return int(crop[0]), int(crop[1])


def _as_sequence(value: Any, name: str) -> Sequence[float]:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return (float(value),) * 3
    try:
        values = [float(v) for v in value]
    except (TypeError, ValueError):
        raise ConfigError(f"preprocess: {name} must be a list of numbers, got {value!r}") from None
    if not values:
        raise ConfigError(f"preprocess: {name} is empty")
    return values


def _resample_name(resample: Union[str, int]) -> str:
    if isinstance(resample, (int, np.integer)) and not isinstance(resample, bool):
        if int(resample) not in _PIL_RESAMPLE:
            raise ConfigError(f"preprocess: unsupported PIL resample code {resample} (use 0, 2 or 3)")
        return _PIL_RESAMPLE[int(resample)]
    name = str(resample).lower()
    if name not in _RESAMPLE:
        raise ConfigError(f"preprocess: resample must be one of {', '.join(_RESAMPLE)}, got {resample!r}")
    return name
