"""Image encoders of image-to-video models, as differentiable [0,1]-pixel -> embeddings maps.

An :class:`ImageEncoder` takes a float image batch (B,3,H,W) in [0,1] of any size and
returns ``{name: embedding (B, ...)}``. Its preprocessing (resize, normalisation) is inside
and differentiable, so attacks run in pixel space. Images are resized (never cropped) to what
the model needs, so every pixel of the user's image gets a gradient.

Built-ins, looked up by :func:`build_encoder` through a registry:

``model_path`` is a local folder or file, or a hub id (``org/name[@revision]``): from a
pipeline repo only the components an encoder uses are fetched (``mmvgm.checkpoint.hub``).

* ``svd``  - a diffusers Stable Video Diffusion folder (``image_encoder/``,
  ``feature_extractor/``, ``vae/``): CLIP image embedding at 224 + VAE latent with the
  pipeline's sigma=0.02 conditioning noise.
* ``wan``, ``cogvideox``, ``ltx``, ``i2vgen`` - diffusers folders of today's image-to-video
  pipelines (:mod:`mmvgm.attacks.i2v`).
* ``auto`` - the encoder of the pipeline a folder's ``model_index.json`` names
  (:data:`PIPELINE_ENCODERS`); also what ``None`` picks for a pipeline folder.
* ``clip`` - any Hugging Face CLIP vision folder.
* ``vae``  - any diffusers ``AutoencoderKL`` folder (or a pipeline folder with ``vae/``).
* ``timm:NAME`` - a timm model with a checkpoint (``model_path``).
* any ``torch.nn.Module`` from Python (:class:`ModuleEncoder`).

Add one with ``@register_encoder("name", pipelines=(...))`` on a factory
``(model_path, **options) -> ImageEncoder``; ``pipelines`` are the diffusers pipeline classes
(``model_index.json`` ``_class_name``) that ``auto`` maps to it.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Callable, Dict, Mapping, Optional, Sequence, Tuple, Union

import torch
import torch.nn.functional as F
from torch import nn

from mmvgm.checkpoint.hub import HubFiles, hf_model_files, is_hub_id, read_model_index, resolve, resolve_model
from mmvgm.errors import CheckpointError, InputError
from mmvgm.runtime import autocast_dtype

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
SVD_REPO = "stabilityai/stable-video-diffusion-img2vid-xt"
SVD_DOWNLOAD_HINT = (
    f"pass --model-path {SVD_REPO} (its image_encoder/, feature_extractor/ and vae/ are fetched into the "
    f"Hugging Face cache), or a local folder holding those three"
)

EncoderFactory = Callable[..., "ImageEncoder"]
_ENCODERS: Dict[str, EncoderFactory] = {}
# diffusers pipeline class (model_index.json "_class_name") -> encoder name; filled by register_encoder
PIPELINE_ENCODERS: Dict[str, str] = {}


def register_encoder(name: str, pipelines: Sequence[str] = ()) -> Callable[[EncoderFactory], EncoderFactory]:
    """Decorator: make ``factory(model_path, **options)`` available as ``build_encoder(name)``,
    and as what ``auto`` picks for a folder of any of the diffusers ``pipelines`` classes."""
    def deco(factory: EncoderFactory) -> EncoderFactory:
        _ENCODERS[name] = factory
        PIPELINE_ENCODERS.update({cls: name for cls in pipelines})
        return factory
    return deco


def list_encoders() -> list:
    return sorted(_ENCODERS)


class ImageEncoder(nn.Module):
    """Base class: [0,1] images (B,3,H,W) -> ``{name: embedding}``.

    ``weights`` (name -> float) weighs each embedding in the attack objective. ``stochastic``
    turns on randomness that the real pipeline applies (SVD's conditioning noise); reports
    switch it off so before/after cosines are comparable.
    """

    def __init__(self) -> None:
        super().__init__()
        self.weights: Dict[str, float] = {}
        self.stochastic = True

    @property
    def device(self) -> torch.device:
        for p in self.parameters():
            return p.device
        return torch.device("cpu")

    def encode(self, images: torch.Tensor) -> Dict[str, torch.Tensor]:  # pragma: no cover - abstract
        raise NotImplementedError

    def forward(self, images: torch.Tensor) -> Dict[str, torch.Tensor]:
        if images.ndim != 4 or images.shape[1] != 3:
            raise InputError(f"encoder input must be (B,3,H,W), got {tuple(images.shape)}")
        dtype = autocast_dtype(images.device)  # bf16 on CUDA that has it, else full precision
        with torch.autocast("cuda" if dtype is not None else "cpu", dtype=dtype, enabled=dtype is not None):
            out = self.encode(images)
        return {k: v.float().flatten(1) for k, v in out.items()}


def resize(images: torch.Tensor, size: Tuple[int, int], mode: str = "bilinear") -> torch.Tensor:
    """Differentiable antialiased resize to (H, W): bilinear is what SVD's pipeline does for CLIP;
    bicubic stands in for the PIL bicubic/lanczos/box resizes of other pipelines (the closest
    differentiable kernel torch has)."""
    if tuple(images.shape[-2:]) == tuple(size):
        return images
    return F.interpolate(images, size=tuple(size), mode=mode, align_corners=False, antialias=True)


def normalize(images: torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    m = images.new_tensor(mean).view(1, -1, 1, 1)
    s = images.new_tensor(std).view(1, -1, 1, 1)
    return (images - m) / s


def vae_size(height: int, width: int, multiple: int = 8, max_side: int = 1024) -> Tuple[int, int]:
    """Keep the aspect ratio, cap the long side at ``max_side``, round to the VAE's multiple."""
    scale = min(1.0, max_side / max(height, width))
    return (max(multiple, round(height * scale / multiple) * multiple),
            max(multiple, round(width * scale / multiple) * multiple))


class CLIPVisionEncoder(ImageEncoder):
    """A HF CLIP vision model: resize the whole image to size x size, CLIP mean/std, embeds."""

    def __init__(self, model: nn.Module, size: Optional[int] = None, mean: Sequence[float] = CLIP_MEAN,
                 std: Sequence[float] = CLIP_STD, name: str = "clip") -> None:
        super().__init__()
        size = size or getattr(getattr(model, "config", None), "image_size", 224)
        self.model, self.size, self.mean, self.std, self.name = model, int(size), tuple(mean), tuple(std), name
        self.weights = {name: 1.0}

    def encode(self, images: torch.Tensor) -> Dict[str, torch.Tensor]:
        pixels = normalize(resize(images, (self.size, self.size)), self.mean, self.std)
        out = self.model(pixel_values=pixels)
        emb = getattr(out, "image_embeds", None)
        if emb is None:
            emb = out.pooler_output
        return {self.name: emb}


class VAEEncoder(ImageEncoder):
    """A diffusers VAE encoder in [-1,1]; optional conditioning noise (SVD: sigma=0.02)."""

    def __init__(self, vae: nn.Module, noise_sigma: float = 0.0, max_side: int = 1024,
                 name: str = "vae") -> None:
        super().__init__()
        self.vae, self.noise_sigma, self.max_side, self.name = vae, float(noise_sigma), int(max_side), name
        blocks = len(getattr(vae.config, "block_out_channels", (0,) * 4))
        self.multiple = 2 ** max(0, blocks - 1)
        self.weights = {name: 1.0}

    def encode(self, images: torch.Tensor) -> Dict[str, torch.Tensor]:
        x = resize(images, vae_size(*images.shape[-2:], multiple=self.multiple, max_side=self.max_side))
        x = x * 2.0 - 1.0
        if self.stochastic and self.noise_sigma > 0:
            x = x + self.noise_sigma * torch.randn_like(x)
        return {self.name: self.vae.encode(x).latent_dist.mode()}


class MultiEncoder(ImageEncoder):
    """Several encoders as one: the union of their embeddings (SVD = CLIP + VAE)."""

    def __init__(self, parts: Mapping[str, ImageEncoder]) -> None:
        super().__init__()
        self.parts = nn.ModuleDict(dict(parts))
        self.weights = {k: w for p in self.parts.values() for k, w in p.weights.items()}

    @property
    def stochastic(self) -> bool:  # type: ignore[override]
        return all(p.stochastic for p in self.parts.values()) if "parts" in self._modules else True

    @stochastic.setter
    def stochastic(self, value: bool) -> None:
        if "parts" in self._modules:
            for p in self.parts.values():
                p.stochastic = value

    def encode(self, images: torch.Tensor) -> Dict[str, torch.Tensor]:
        out: Dict[str, torch.Tensor] = {}
        for part in self.parts.values():
            out.update(part.encode(images))
        return out


class TimmEncoder(ImageEncoder):
    """A timm model without its classifier: pooled features at the model's input size."""

    def __init__(self, model: nn.Module, name: str = "timm") -> None:
        super().__init__()
        from timm.data import resolve_data_config

        cfg = resolve_data_config({}, model=model)
        self.model, self.name = model, name
        self.size = tuple(cfg["input_size"][-2:])
        self.mean, self.std = tuple(cfg["mean"]), tuple(cfg["std"])
        self.weights = {name: 1.0}

    def encode(self, images: torch.Tensor) -> Dict[str, torch.Tensor]:
        return {self.name: self.model(normalize(resize(images, self.size), self.mean, self.std))}


class ModuleEncoder(ImageEncoder):
    """Any ``nn.Module`` that maps [0,1] images to a tensor, a dict of tensors or a HF output."""

    def __init__(self, module: nn.Module, name: str = "module",
                 size: Optional[Tuple[int, int]] = None) -> None:
        super().__init__()
        self.module, self.name, self.size = module, name, size
        self.weights = {name: 1.0}

    def encode(self, images: torch.Tensor) -> Dict[str, torch.Tensor]:
        out = self.module(resize(images, self.size) if self.size else images)
        if isinstance(out, torch.Tensor):
            return {self.name: out}
        if isinstance(out, Mapping):
            tensors = {k: v for k, v in out.items() if isinstance(v, torch.Tensor)}
            if tensors:
                if "image_embeds" in tensors:
                    return {self.name: tensors["image_embeds"]}
                return tensors if len(tensors) > 1 else {self.name: next(iter(tensors.values()))}
        for attr in ("image_embeds", "pooler_output", "last_hidden_state"):
            if getattr(out, attr, None) is not None:
                return {self.name: getattr(out, attr)}
        raise InputError(f"encoder module returned {type(out).__name__}; expected a tensor or a dict of tensors")


def build_encoder(spec: Union[str, nn.Module, None] = "svd", model_path: Optional[Union[str, Path]] = None,
                  device: Optional[Union[str, torch.device]] = None, **options) -> ImageEncoder:
    """An :class:`ImageEncoder` from a registry name (``svd``, ``wan``, ``clip``, ``vae``,
    ``timm:NAME``, ...), ``auto`` (from ``model_path``'s ``model_index.json``), a
    ``torch.nn.Module``, or ``None`` (guess from ``model_path``'s layout). Frozen, eval mode."""
    if isinstance(spec, ImageEncoder):
        encoder = spec
    elif isinstance(spec, nn.Module):
        encoder = ModuleEncoder(spec)
    else:
        name = spec or guess_encoder(model_path)
        if name == "auto":
            name = pipeline_encoder(model_path)
        key, _, arg = name.partition(":")
        factory = _ENCODERS.get(key)
        if factory is None:
            raise InputError(f"unknown encoder '{name}'; known: auto, {', '.join(list_encoders())} "
                             "(timm models as timm:NAME)")
        if arg:
            options["name"] = arg
        encoder = factory(model_path, **options)
    encoder.eval().requires_grad_(False)
    if device is not None:
        encoder.to(device)
    return encoder


def guess_encoder(model_path: Optional[Union[str, Path]]) -> str:
    """What ``auto`` picks for a pipeline folder (a ``model_index.json`` naming its class), else
    ``svd`` for an SVD layout (and as the default), ``clip``/``vae`` from a config.json; a hub
    id is judged by its ``model_index.json`` / ``config.json`` alone, fetched first."""
    if model_path is None:
        return "svd"
    path = Path(model_path).expanduser()
    if is_hub_id(model_path):
        path = resolve(model_path, HubFiles(optional=("model_index.json", "config.json")))
    index = _read_json(path / "model_index.json") if (path / "model_index.json").is_file() else {}
    if index.get("_class_name"):
        return _encoder_of(index, path)
    if (path / "image_encoder").is_dir() or (path / "vae").is_dir() and (path / "feature_extractor").is_dir() \
            or "image_encoder" in index:
        return "svd"
    config = _read_json(path / "config.json") if (path / "config.json").is_file() else {}
    if str(config.get("model_type", "")).startswith("clip"):
        return "clip"
    if "AutoencoderKL" in str(config.get("_class_name", "")) or (path / "vae").is_dir() or "vae" in index:
        return "vae"
    return "svd"


def pipeline_encoder(model_path: Optional[Union[str, Path]]) -> str:
    """The encoder name for the diffusers pipeline folder (or hub id) ``model_path``, from its
    ``model_index.json`` ``_class_name`` through :data:`PIPELINE_ENCODERS`."""
    if model_path is None:
        raise InputError("--encoder auto needs --model-path: a diffusers image-to-video pipeline folder or hub id")
    folder, index = read_model_index(model_path)
    if not folder.is_dir():
        raise CheckpointError("model folder not found; --encoder auto needs a diffusers pipeline folder", folder)
    if not index:
        raise InputError("--encoder auto needs a diffusers pipeline folder (no model_index.json); "
                         f"name the encoder: {', '.join(list_encoders())}", folder)
    return _encoder_of(index, folder)


def _encoder_of(index: Mapping, folder: Path) -> str:
    cls = str(index.get("_class_name", ""))
    if cls not in PIPELINE_ENCODERS:
        raise InputError(f"no encoder for pipeline class '{cls}'; supported: {', '.join(sorted(PIPELINE_ENCODERS))} "
                         "(or attack one component with --encoder clip or vae)", folder)
    return PIPELINE_ENCODERS[cls]


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        raise CheckpointError("cannot read JSON config", path) from None


def _need_dir(model_path, what: str, hint: str, components: Sequence[str],
              weight_names: Sequence[str] = ("model.safetensors", "pytorch_model.bin")) -> Path:
    """The local folder of ``model_path``; a hub id is fetched: only ``components`` of a pipeline
    repo, or the whole (weights + configs) of a single-model repo."""
    if model_path is None:
        raise CheckpointError(f"the {what} encoder needs weights: {hint}")
    path = resolve_model(model_path, components, weight_names)
    if not path.is_dir():
        raise CheckpointError(f"model folder not found; {hint}", path)
    return path


def _clip_preprocess(folder: Optional[Path]) -> Tuple[Optional[int], Tuple[float, ...], Tuple[float, ...]]:
    """Size, mean and std from a CLIPImageProcessor config (preprocessor_config.json);
    without one: CLIP's mean/std and the model's own image size (``None`` here)."""
    cfg_path = folder / "preprocessor_config.json" if folder is not None else None
    if cfg_path is None or not cfg_path.is_file():
        return None, CLIP_MEAN, CLIP_STD
    cfg = _read_json(cfg_path)
    crop = cfg.get("crop_size") or cfg.get("size") or 224
    if isinstance(crop, Mapping):
        crop = crop.get("height") or crop.get("shortest_edge") or 224
    return int(crop), tuple(cfg.get("image_mean", CLIP_MEAN)), tuple(cfg.get("image_std", CLIP_STD))


def _load_clip_vision(folder: Path, cls_name: str = "CLIPVisionModelWithProjection") -> nn.Module:
    """A transformers CLIP vision class (``cls_name``) from ``folder``, offline."""
    import transformers

    from mmvgm.progress import library_bars_off

    try:
        with library_bars_off():
            return getattr(transformers, cls_name).from_pretrained(folder, local_files_only=True)
    except (OSError, ValueError) as exc:
        raise CheckpointError(f"cannot load a CLIP vision model: {str(exc).splitlines()[0]}", folder) from None


@register_encoder("svd", pipelines=("StableVideoDiffusionPipeline",))
def _svd(model_path=None, noise_sigma: float = 0.02, vae_max_side: int = 1024, **_) -> ImageEncoder:
    root = _need_dir(model_path, "svd", SVD_DOWNLOAD_HINT, ("image_encoder", "vae", "feature_extractor"))
    missing = [d for d in ("image_encoder", "vae") if not (root / d).is_dir()]
    if missing:
        raise CheckpointError(f"not a Stable Video Diffusion folder (missing {', '.join(d + '/' for d in missing)}); "
                              f"{SVD_DOWNLOAD_HINT}", root)
    from diffusers import AutoencoderKLTemporalDecoder

    from mmvgm.progress import library_bars_off

    fe = root / "feature_extractor"
    size, mean, std = _clip_preprocess(fe if fe.is_dir() else None)
    clip = _load_clip_vision(root / "image_encoder")
    try:
        with library_bars_off():
            vae = AutoencoderKLTemporalDecoder.from_pretrained(root / "vae", local_files_only=True)
    except (OSError, ValueError, EnvironmentError) as exc:
        raise CheckpointError(f"cannot load the SVD VAE: {str(exc).splitlines()[0]}", root / "vae") from None
    return MultiEncoder({"clip": CLIPVisionEncoder(clip, size, mean, std, name="clip"),
                         "vae": VAEEncoder(vae, noise_sigma=noise_sigma, max_side=vae_max_side, name="vae")})


@register_encoder("clip")
def _clip(model_path=None, **_) -> ImageEncoder:
    folder = _need_dir(model_path, "clip", "pass --model-path to a Hugging Face CLIP (vision) folder "
                                           "with config.json and model.safetensors, or its hub id",
                       ("image_encoder", "feature_extractor"))
    if (folder / "image_encoder").is_dir():  # an SVD / I2V pipeline folder
        fe = folder / "feature_extractor"
        size, mean, std = _clip_preprocess(fe if fe.is_dir() else None)
        folder = folder / "image_encoder"
    else:
        size, mean, std = _clip_preprocess(folder)
    return CLIPVisionEncoder(_load_clip_vision(folder), size, mean, std, name="clip")


@register_encoder("vae")
def _vae(model_path=None, vae_max_side: int = 1024, **_) -> ImageEncoder:
    folder = _need_dir(model_path, "vae", "pass --model-path to a diffusers AutoencoderKL folder "
                                          "(config.json + diffusion_pytorch_model.safetensors), or its hub id",
                       ("vae",), ("diffusion_pytorch_model.safetensors", "diffusion_pytorch_model.bin"))
    if (folder / "vae").is_dir():
        folder = folder / "vae"
    config = _read_json(folder / "config.json") if (folder / "config.json").is_file() else {}
    import diffusers

    from mmvgm.progress import library_bars_off

    cls_name = str(config.get("_class_name", "AutoencoderKL"))
    cls = getattr(diffusers, cls_name, None) if cls_name.startswith("AutoencoderKL") else None
    if cls is None:
        raise CheckpointError(f"not a diffusers AutoencoderKL folder (class '{cls_name}')", folder)
    try:
        with library_bars_off():
            vae = cls.from_pretrained(folder, local_files_only=True)
    except (OSError, ValueError, EnvironmentError) as exc:
        raise CheckpointError(f"cannot load the VAE: {str(exc).splitlines()[0]}", folder) from None
    return VAEEncoder(vae, noise_sigma=0.0, max_side=vae_max_side, name="vae")


@register_encoder("timm")
def _timm(model_path=None, name: Optional[str] = None, **_) -> ImageEncoder:
    if not name:
        raise InputError("name the timm model as timm:NAME, e.g. timm:resnet50")
    hint = (f"timm:{name} needs --model-path to a checkpoint (.safetensors, or a .pth/.bin state dict) "
            "or a hub id (timm/NAME); mmvgm fetches nothing it is not told to")
    if model_path is None:
        raise CheckpointError(hint)
    path = resolve(model_path, hf_model_files())
    if path.is_dir():
        found = sorted(path.glob("*.safetensors")) + sorted(path.glob("*.bin")) + sorted(path.glob("*.pth"))
        if not found:
            raise CheckpointError(f"no checkpoint file in folder; {hint}", path)
        path = found[0]
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found; {hint}", path)
    import timm

    try:
        model = timm.create_model(name, pretrained=False, num_classes=0)
    except RuntimeError as exc:
        raise InputError(f"unknown timm model '{name}': {exc}") from None
    from mmvgm.models.pretrained import load_state_strict, read_state_dict

    state = read_state_dict(path)
    heads = getattr(model, "pretrained_cfg", {}).get("classifier") or ()  # "fc", or ("head", "head_dist")
    try:  # the classifier the user's checkpoint still has is the one thing it may hold beyond the model
        load_state_strict(model, state, source=path,
                          ignore_unexpected=[h + "." for h in ((heads,) if isinstance(heads, str) else heads)])
    except CheckpointError as exc:
        raise CheckpointError(f"checkpoint does not match timm:{name}: {exc.message}", path) from None
    return TimmEncoder(model, name=f"timm:{name}")


# The image-to-video pipelines' encoders register themselves on import (kept in their own module).
from mmvgm.attacks import i2v as _i2v  # noqa: E402,F401  (after every name i2v imports from here)
