"""Encoders of today's image-to-video pipelines (diffusers), each with its pipeline's preprocessing.

Each maps a [0,1] image batch (B,3,H,W) of any size to ``{"clip": ..., "vae": ...}``,
differentiably, doing to the image what the pipeline does to a conditioning image:

* ``wan`` (``WanImageToVideoPipeline``): the CLIP vision model's penultimate hidden states
  (Wan 2.1; Wan 2.2 folders have no ``image_encoder/``, and then the VAE alone) and the
  ``AutoencoderKLWan`` latent of the image as the first frame of a clip, (B,3,1,H,W).
* ``cogvideox`` (``CogVideoXImageToVideoPipeline``): the ``AutoencoderKLCogVideoX`` latent.
* ``ltx`` (``LTXImageToVideoPipeline``, ``LTXConditionPipeline``): the ``AutoencoderKLLTXVideo`` latent.
* ``i2vgen`` (``I2VGenXLPipeline``): the CLIP image embedding of the image's centre square and
  the ``AutoencoderKL`` latent.

Working size: a pipeline resizes the image to the ``height`` x ``width`` it is called with. By
default that is the model's native pixel area at the image's aspect ratio, each side floored to
the multiple the VAE and the transformer's patches need (the rule of the diffusers Wan I2V
example); the ``height``/``width`` options pin the size the pipeline is run at, ``max_area``
changes the area (``720*1280`` for Wan 720P).

Some pipelines sample the VAE posterior (CogVideoX, LTX, I2VGen-XL), Wan takes its mode; these
encoders take the mode, the centre of those samples, so embeddings are deterministic.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, Optional, Sequence, Tuple, Union

import torch
from torch import nn

from mmvgm.attacks.budget import parse_positive_int
from mmvgm.attacks.encoders import (ImageEncoder, MultiEncoder, _clip_preprocess, _load_clip_vision, _need_dir,
                                    _read_json, normalize, register_encoder, resize)
from mmvgm.errors import CheckpointError, InputError

WAN_REPO = "Wan-AI/Wan2.1-I2V-14B-480P-Diffusers"
COGVIDEOX_REPO = "THUDM/CogVideoX-5b-I2V"
LTX_REPO = "Lightricks/LTX-Video"
I2VGEN_REPO = "ali-vilab/i2vgen-xl"
DIFFUSERS_WEIGHTS = ("diffusion_pytorch_model.safetensors", "diffusion_pytorch_model.bin")

LatentNorm = Callable[[nn.Module, torch.Tensor], torch.Tensor]


# ---------------------------------------------------------------- preprocessing


def fit_area(height: int, width: int, area: int, multiple: int) -> Tuple[int, int]:
    """``area`` pixels at the aspect ratio ``height/width``, each side floored to ``multiple``
    (the ``max_area`` rule of the diffusers ``WanImageToVideoPipeline`` example)."""
    aspect = height / width
    return (max(multiple, round(math.sqrt(area * aspect)) // multiple * multiple),
            max(multiple, round(math.sqrt(area / aspect)) // multiple * multiple))


def cover_crop(images: torch.Tensor, size: Tuple[int, int], mode: str = "bilinear") -> torch.Tensor:
    """Resize to cover ``size`` (H, W) keeping the aspect ratio, then take the centre: I2VGen-XL's
    ``_center_crop_wide``, and CLIPImageProcessor's shortest-edge resize + centre crop. Never
    padded: ``_center_crop_wide`` floors a float ratio, can come out one pixel short and pads a
    black line, which holds nothing of the image, so it is not mirrored."""
    h0, w0 = images.shape[-2:]
    h, w = size
    scale = min(w0 / w, h0 / h)
    nh, nw = max(h, int(h0 // scale)), max(w, int(w0 // scale))
    x = resize(images, (nh, nw), mode)
    top, left = (nh - h) // 2, (nw - w) // 2
    return x[..., top:top + h, left:left + w]


@dataclass(frozen=True)
class WorkingSize:
    """The ``height`` x ``width`` a pipeline runs at for an image: pinned, or ``area`` at its aspect ratio."""

    area: int
    multiple: int
    height: Optional[int] = None
    width: Optional[int] = None

    def __call__(self, height: int, width: int) -> Tuple[int, int]:
        if self.height and self.width:
            return self.height, self.width
        return fit_area(height, width, self.area, self.multiple)


def working_size(area: int, multiple: int, height=None, width=None, max_area=None) -> WorkingSize:
    """A :class:`WorkingSize` from the encoder options (``height``/``width``, ``max_area``)."""
    if (height is None) != (width is None):
        raise InputError("give both height and width (the size the pipeline runs at), or neither")
    if max_area is not None:
        area = math.prod(parse_positive_int(v, "max_area") for v in str(max_area).split("*"))
    if height is None:
        return WorkingSize(area, multiple)
    h, w = (parse_positive_int(v, k) // multiple * multiple for k, v in (("height", height), ("width", width)))
    if min(h, w) < multiple:
        raise InputError(f"height and width must be at least {multiple} (this VAE's multiple), got {height}x{width}")
    return WorkingSize(area, multiple, h, w)


# ---------------------------------------------------------------- encoders


class PipelineCLIPEncoder(ImageEncoder):
    """A CLIP image embedding as a pipeline takes it: the image cover-cropped to the processor's
    square, CLIP mean/std; ``hidden_layer`` takes that hidden state (Wan: -2) instead of the
    projected ``image_embeds``."""

    def __init__(self, model: nn.Module, size: int, mean: Sequence[float], std: Sequence[float],
                 mode: str = "bicubic", hidden_layer: Optional[int] = None, name: str = "clip") -> None:
        super().__init__()
        self.model, self.size, self.mean, self.std = model, int(size), tuple(mean), tuple(std)
        self.mode, self.hidden_layer, self.name = mode, hidden_layer, name
        self.weights = {name: 1.0}

    def encode(self, images: torch.Tensor) -> Dict[str, torch.Tensor]:
        pixels = normalize(cover_crop(images, (self.size, self.size), self.mode), self.mean, self.std)
        if self.hidden_layer is None:
            return {self.name: self.model(pixel_values=pixels).image_embeds}
        return {self.name: self.model(pixel_values=pixels, output_hidden_states=True).hidden_states[self.hidden_layer]}


class PipelineVAEEncoder(ImageEncoder):
    """The VAE latent a pipeline conditions on: the image at its working size in [-1,1], the
    first frame of a clip (B,3,1,H,W) for a video VAE, normalised as the pipeline does it."""

    def __init__(self, vae: nn.Module, size: WorkingSize, norm: LatentNorm, video: bool = True,
                 crop: bool = False, name: str = "vae") -> None:
        super().__init__()
        self.vae, self.size, self.norm, self.video, self.crop, self.name = vae, size, norm, video, crop, name
        self.weights = {name: 1.0}

    def encode(self, images: torch.Tensor) -> Dict[str, torch.Tensor]:
        size = self.size(*images.shape[-2:])
        # I2VGen-XL crops to cover the size (PIL box); the others' VaeImageProcessor stretches (PIL lanczos)
        x = cover_crop(images, size, "bicubic") if self.crop else resize(images, size, "bicubic")
        x = x * 2.0 - 1.0
        if self.video:
            x = x.unsqueeze(2)
        return {self.name: self.norm(self.vae, self.vae.encode(x).latent_dist.mode())}


def _channels(values, like: torch.Tensor) -> torch.Tensor:
    """Per-channel constants shaped to broadcast over a (B,C,F,H,W) latent."""
    return torch.as_tensor(values).to(like).view(1, -1, *([1] * (like.ndim - 2)))


def _wan_norm(vae: nn.Module, z: torch.Tensor) -> torch.Tensor:
    # WanImageToVideoPipeline.prepare_latents: (z - latents_mean) * (1 / latents_std)
    return (z - _channels(vae.config.latents_mean, z)) / _channels(vae.config.latents_std, z)


def _cogvideox_norm(vae: nn.Module, z: torch.Tensor) -> torch.Tensor:
    # CogVideoXImageToVideoPipeline.prepare_latents; CogVideoX 1.5 sets invert_scale_latents
    scale = vae.config.scaling_factor
    return z / scale if vae.config.invert_scale_latents else z * scale


def _ltx_norm(vae: nn.Module, z: torch.Tensor) -> torch.Tensor:
    # LTXImageToVideoPipeline._normalize_latents with the VAE's own buffers, scaling factor 1
    return (z - _channels(vae.latents_mean, z)) / _channels(vae.latents_std, z)


def _scaled(vae: nn.Module, z: torch.Tensor) -> torch.Tensor:
    # I2VGenXLPipeline.prepare_image_latents
    return z * vae.config.scaling_factor


# ---------------------------------------------------------------- loading


def _pipeline_root(model_path, name: str, title: str, repo: str, components: Sequence[str]) -> Path:
    hint = (f"pass --model-path {repo} (its {', '.join(c + '/' for c in components)} are fetched into the "
            "Hugging Face cache), or a local diffusers folder holding them")
    root = _need_dir(model_path, name, hint, components, DIFFUSERS_WEIGHTS)
    if not (root / "vae").is_dir():
        raise CheckpointError(f"not a {title} folder (missing vae/); {hint}", root)
    return root


def _load_vae(root: Path, cls_name: str) -> nn.Module:
    """``root/vae`` as ``cls_name``; a VAE of another class is refused before loading, since
    diffusers would load it with random weights and only warn."""
    folder = root / "vae"
    config = _read_json(folder / "config.json") if (folder / "config.json").is_file() else {}
    found = config.get("_class_name")
    if found != cls_name:
        raise CheckpointError(f"vae/ holds {found or 'no diffusers config'}, not {cls_name}: another pipeline? "
                              "(--encoder auto picks the encoder from model_index.json)", folder)
    import diffusers

    from mmvgm.progress import library_bars_off

    try:
        with library_bars_off():
            return getattr(diffusers, cls_name).from_pretrained(folder, local_files_only=True)
    except (OSError, ValueError, EnvironmentError) as exc:
        raise CheckpointError(f"cannot load the {cls_name}: {_first_line(exc)}", folder) from None


def _pipeline_clip(root: Path, processor: str, cls_name: str, mode: str,
                   hidden_layer: Optional[int] = None) -> PipelineCLIPEncoder:
    folder = root / processor
    size, mean, std = _clip_preprocess(folder if folder.is_dir() else None)
    model = _load_clip_vision(root / "image_encoder", cls_name)
    return PipelineCLIPEncoder(model, size or model.config.image_size, mean, std, mode, hidden_layer)


def _first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else type(exc).__name__


# ---------------------------------------------------------------- the registered encoders

Size = Union[int, str, None]


@register_encoder("wan", pipelines=("WanImageToVideoPipeline",))
def _wan(model_path=None, height: Size = None, width: Size = None, max_area: Size = None, **_) -> ImageEncoder:
    """Mirrors ``WanImageToVideoPipeline.encode_image`` (``image_processor`` + ``image_encoder``,
    ``hidden_states[-2]``) and ``prepare_latents`` (the image as the first frame of the clip,
    ``vae.encode`` mode, ``(z - latents_mean) / latents_std``)."""
    root = _pipeline_root(model_path, "wan", "Wan image-to-video", WAN_REPO,
                          ("image_encoder", "image_processor", "vae"))
    vae = _load_vae(root, "AutoencoderKLWan")
    # __call__ floors height/width to vae_scale_factor_spatial x the transformer's patch (2 in every Wan release)
    multiple = int(vae.config.scale_factor_spatial or 8) * 2
    parts: Dict[str, ImageEncoder] = {}
    if (root / "image_encoder").is_dir():  # Wan 2.1; Wan 2.2's transformers take no image embedding
        # CLIPImageProcessor: bicubic shortest-edge resize, centre crop
        parts["clip"] = _pipeline_clip(root, "image_processor", "CLIPVisionModel", "bicubic", hidden_layer=-2)
    parts["vae"] = PipelineVAEEncoder(vae, working_size(480 * 832, multiple, height, width, max_area), _wan_norm)
    return MultiEncoder(parts)


@register_encoder("cogvideox", pipelines=("CogVideoXImageToVideoPipeline",))
def _cogvideox(model_path=None, height: Size = None, width: Size = None, max_area: Size = None,
               **_) -> ImageEncoder:
    """Mirrors ``CogVideoXImageToVideoPipeline``: ``video_processor.preprocess`` to height x width,
    then ``prepare_latents`` (a one-frame clip, ``vae.encode``, times ``scaling_factor``)."""
    root = _pipeline_root(model_path, "cogvideox", "CogVideoX image-to-video", COGVIDEOX_REPO, ("vae",))
    vae = _load_vae(root, "AutoencoderKLCogVideoX")
    # vae_scale_factor_spatial x the transformer's patch_size 2, so the latent splits into patches
    multiple = 2 ** (len(vae.config.block_out_channels) - 1) * 2
    size = working_size(480 * 720, multiple, height, width, max_area)  # 480x720: CogVideoX-5b-I2V's resolution
    return MultiEncoder({"vae": PipelineVAEEncoder(vae, size, _cogvideox_norm)})


# The LTX-Video repos' model_index.json names LTXPipeline; LTXImageToVideoPipeline loads them as they are.
@register_encoder("ltx", pipelines=("LTXImageToVideoPipeline", "LTXConditionPipeline", "LTXPipeline"))
def _ltx(model_path=None, height: Size = None, width: Size = None, max_area: Size = None, **_) -> ImageEncoder:
    """Mirrors ``LTXImageToVideoPipeline``: ``video_processor.preprocess`` to height x width, then
    ``prepare_latents`` (``vae.encode`` of ``img.unsqueeze(0).unsqueeze(2)``, ``_normalize_latents``)."""
    root = _pipeline_root(model_path, "ltx", "LTX-Video", LTX_REPO, ("vae",))
    vae = _load_vae(root, "AutoencoderKLLTXVideo")
    multiple = math.lcm(32, int(vae.spatial_compression_ratio))  # check_inputs wants multiples of 32
    size = working_size(512 * 704, multiple, height, width, max_area)  # the pipeline's default 512x704
    return MultiEncoder({"vae": PipelineVAEEncoder(vae, size, _ltx_norm)})


@register_encoder("i2vgen", pipelines=("I2VGenXLPipeline",))
def _i2vgen(model_path=None, height: Size = None, width: Size = None, max_area: Size = None,
            **_) -> ImageEncoder:
    """Mirrors ``I2VGenXLPipeline.__call__`` step 3.2: CLIP ``image_embeds`` of the centre square
    (``_center_crop_wide`` to width x width, ``_resize_bilinear`` to the feature extractor's crop,
    its mean/std) and the ``AutoencoderKL`` latent of the image cover-cropped to height x width
    (``_center_crop_wide``), times ``scaling_factor`` (``prepare_image_latents``)."""
    root = _pipeline_root(model_path, "i2vgen", "I2VGen-XL", I2VGEN_REPO, ("image_encoder", "feature_extractor", "vae"))
    if not (root / "image_encoder").is_dir():
        raise CheckpointError(f"not an I2VGen-XL folder (missing image_encoder/); pass --model-path {I2VGEN_REPO}",
                              root)
    vae = _load_vae(root, "AutoencoderKL")
    multiple = math.lcm(8, 2 ** (len(vae.config.block_out_channels) - 1))  # check_inputs wants multiples of 8
    size = working_size(704 * 1280, multiple, height, width, max_area)  # the pipeline's default 704x1280
    return MultiEncoder({"clip": _pipeline_clip(root, "feature_extractor", "CLIPVisionModelWithProjection", "bilinear"),
                         "vae": PipelineVAEEncoder(vae, size, _scaled, video=False, crop=True)})
