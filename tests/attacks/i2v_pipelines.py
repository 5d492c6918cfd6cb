"""Tiny random image-to-video pipeline folders (Wan, CogVideoX, LTX-Video, I2VGen-XL, SVD), saved
with ``save_pretrained`` in the layout of the real hub repos.

The transformer / unet and the text encoder are not saved (an encoder never loads them), but
``model_index.json`` names them as the real repos do. Each builder returns the folder; the
in-memory pipeline (for comparing with its own preprocessing) comes from :func:`load_pipeline`.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Callable, Dict

import torch

CLIP_SIZE = 32
# the components a real repo's model_index.json names but these folders leave out
NOT_SAVED = {
    "WanImageToVideoPipeline": {"transformer": ["diffusers", "WanTransformer3DModel"],
                                "text_encoder": ["transformers", "UMT5EncoderModel"],
                                "tokenizer": ["transformers", "T5TokenizerFast"]},
    "CogVideoXImageToVideoPipeline": {"transformer": ["diffusers", "CogVideoXTransformer3DModel"],
                                      "text_encoder": ["transformers", "T5EncoderModel"],
                                      "tokenizer": ["transformers", "T5Tokenizer"]},
    "LTXImageToVideoPipeline": {"transformer": ["diffusers", "LTXVideoTransformer3DModel"],
                                "text_encoder": ["transformers", "T5EncoderModel"],
                                "tokenizer": ["transformers", "T5TokenizerFast"]},
    "I2VGenXLPipeline": {"unet": ["diffusers", "I2VGenXLUNet"], "text_encoder": ["transformers", "CLIPTextModel"],
                         "tokenizer": ["transformers", "CLIPTokenizer"]},
}


def _clip(with_projection: bool):
    from transformers import CLIPVisionConfig, CLIPVisionModel, CLIPVisionModelWithProjection

    cfg = CLIPVisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                           image_size=CLIP_SIZE, patch_size=8, projection_dim=16)
    return (CLIPVisionModelWithProjection if with_projection else CLIPVisionModel)(cfg)


def _processor():
    from transformers import CLIPImageProcessor

    return CLIPImageProcessor(size={"shortest_edge": CLIP_SIZE}, crop_size={"height": CLIP_SIZE, "width": CLIP_SIZE})


def wan_pipeline(with_clip: bool = True):
    from diffusers import AutoencoderKLWan, FlowMatchEulerDiscreteScheduler, WanImageToVideoPipeline

    vae = AutoencoderKLWan(base_dim=8, z_dim=4, dim_mult=[1, 1, 1, 1], num_res_blocks=1,
                           temperal_downsample=[False, True, True], latents_mean=[0.1, -0.2, 0.3, 0.0],
                           latents_std=[1.5, 0.5, 2.0, 1.0])
    return WanImageToVideoPipeline(tokenizer=None, text_encoder=None, vae=vae,
                                   scheduler=FlowMatchEulerDiscreteScheduler(),
                                   image_processor=_processor() if with_clip else None,
                                   image_encoder=_clip(False) if with_clip else None, transformer=None)


def cogvideox_pipeline():
    from diffusers import AutoencoderKLCogVideoX, CogVideoXDDIMScheduler, CogVideoXImageToVideoPipeline

    vae = AutoencoderKLCogVideoX(block_out_channels=(8,) * 4, latent_channels=4, layers_per_block=1,
                                 norm_num_groups=4, down_block_types=("CogVideoXDownBlock3D",) * 4,
                                 up_block_types=("CogVideoXUpBlock3D",) * 4)
    return CogVideoXImageToVideoPipeline(tokenizer=None, text_encoder=None, vae=vae, transformer=None,
                                         scheduler=CogVideoXDDIMScheduler())


def ltx_pipeline():
    from diffusers import AutoencoderKLLTXVideo, FlowMatchEulerDiscreteScheduler, LTXImageToVideoPipeline

    vae = AutoencoderKLLTXVideo(latent_channels=8, block_out_channels=(8,) * 4, decoder_block_out_channels=(8,) * 4,
                                layers_per_block=(1,) * 5, decoder_layers_per_block=(1,) * 5,
                                spatio_temporal_scaling=(True, True, False, False),
                                decoder_spatio_temporal_scaling=(True, True, False, False),
                                decoder_inject_noise=(False,) * 5, upsample_residual=(False,) * 4,
                                upsample_factor=(1,) * 4, patch_size=1)
    with torch.no_grad():  # not the identity normalisation, so the test sees it applied
        vae.latents_mean.copy_(torch.linspace(-0.5, 0.5, 8))
        vae.latents_std.copy_(torch.linspace(0.5, 2.0, 8))
    return LTXImageToVideoPipeline(scheduler=FlowMatchEulerDiscreteScheduler(), vae=vae, text_encoder=None,
                                   tokenizer=None, transformer=None)


def i2vgen_pipeline():
    from diffusers import AutoencoderKL, DDIMScheduler, I2VGenXLPipeline

    vae = AutoencoderKL(block_out_channels=(8, 8), down_block_types=("DownEncoderBlock2D",) * 2,
                        up_block_types=("UpDecoderBlock2D",) * 2, latent_channels=4, norm_num_groups=4,
                        layers_per_block=1)
    return I2VGenXLPipeline(vae=vae, text_encoder=None, tokenizer=None, image_encoder=_clip(True),
                            feature_extractor=_processor(), unet=None, scheduler=DDIMScheduler())


BUILDERS: Dict[str, Callable] = {"wan": wan_pipeline, "wan22": lambda: wan_pipeline(with_clip=False),
                                 "cogvideox": cogvideox_pipeline, "ltx": ltx_pipeline, "i2vgen": i2vgen_pipeline}


def save_pipeline(pipe, folder: Path) -> Path:
    """``pipe.save_pretrained(folder)``, with the unsaved components named in model_index.json."""
    pipe.save_pretrained(folder)
    index_path = folder / "model_index.json"
    index = json.loads(index_path.read_text())
    for name, entry in NOT_SAVED.get(index["_class_name"], {}).items():
        if index.get(name) in (None, [None, None]):
            index[name] = entry
    index_path.write_text(json.dumps(index, indent=2))
    return folder


def make_pipelines(root: Path) -> Dict[str, Path]:
    """Every tiny pipeline folder under ``root`` (``svd`` included), by encoder-test name."""
    from tests.attacks.conftest import make_svd_dir

    torch.manual_seed(0)
    folders = {name: save_pipeline(build(), root / name) for name, build in BUILDERS.items()}
    svd = make_svd_dir(root / "svd")
    (svd / "model_index.json").write_text(json.dumps({
        "_class_name": "StableVideoDiffusionPipeline", "feature_extractor": ["transformers", "CLIPImageProcessor"],
        "image_encoder": ["transformers", "CLIPVisionModelWithProjection"],
        "scheduler": ["diffusers", "EulerDiscreteScheduler"],
        "unet": ["diffusers", "UNetSpatioTemporalConditionModel"],
        "vae": ["diffusers", "AutoencoderKLTemporalDecoder"]}))
    folders["svd"] = svd
    return folders


# ---------------------------------------------------------------- tiny full pipelines that run

def svd_video_pipeline(root: Path) -> Path:
    """A runnable tiny Stable Video Diffusion folder: the SVD parts of ``make_svd_dir`` (CLIP at
    224, the size the pipeline resizes to) and a two-level spatio-temporal UNet."""
    from diffusers import (AutoencoderKLTemporalDecoder, EulerDiscreteScheduler, StableVideoDiffusionPipeline,
                           UNetSpatioTemporalConditionModel)
    from transformers import CLIPImageProcessor, CLIPVisionModelWithProjection

    from tests.attacks.conftest import make_svd_dir

    parts = make_svd_dir(root / "parts", clip_size=224)
    torch.manual_seed(0)
    unet = UNetSpatioTemporalConditionModel(
        sample_size=4, in_channels=8, out_channels=4, block_out_channels=(32, 32), layers_per_block=1,
        down_block_types=("CrossAttnDownBlockSpatioTemporal", "DownBlockSpatioTemporal"),
        up_block_types=("UpBlockSpatioTemporal", "CrossAttnUpBlockSpatioTemporal"),
        cross_attention_dim=16, num_attention_heads=(2, 2), addition_time_embed_dim=8,
        projection_class_embeddings_input_dim=24, num_frames=2)
    # the real SVD scheduler config
    scheduler = EulerDiscreteScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                                       interpolation_type="linear", prediction_type="v_prediction",
                                       sigma_max=700.0, sigma_min=0.002, steps_offset=1, timestep_spacing="leading",
                                       timestep_type="continuous", use_karras_sigmas=True)
    pipe = StableVideoDiffusionPipeline(
        vae=AutoencoderKLTemporalDecoder.from_pretrained(parts / "vae"),
        image_encoder=CLIPVisionModelWithProjection.from_pretrained(parts / "image_encoder"),
        unet=unet, scheduler=scheduler,
        feature_extractor=CLIPImageProcessor.from_pretrained(parts / "feature_extractor"))
    folder = root / "svd-video"
    pipe.save_pretrained(folder)
    return folder


def _text_parts():
    """A CLIP text encoder and a tokenizer built without files (its vocabulary: the special tokens,
    enough for the empty prompt purifiers use)."""
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    tokenizer = CLIPTokenizer(model_max_length=8)
    cfg = CLIPTextConfig(vocab_size=8, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                         num_attention_heads=2, max_position_embeddings=8, bos_token_id=0, eos_token_id=1,
                         pad_token_id=2, projection_dim=16)
    return CLIPTextModel(cfg), tokenizer


def _unet(in_channels: int, **extra):
    from diffusers import UNet2DConditionModel

    return UNet2DConditionModel(sample_size=8, in_channels=in_channels, out_channels=4, block_out_channels=(16, 32),
                                layers_per_block=1, norm_num_groups=8, cross_attention_dim=16, attention_head_dim=4,
                                down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
                                up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"), **extra)


def _vae(levels: int, **extra):
    from diffusers import AutoencoderKL

    return AutoencoderKL(block_out_channels=(8,) * levels, down_block_types=("DownEncoderBlock2D",) * levels,
                         up_block_types=("UpDecoderBlock2D",) * levels, latent_channels=4, norm_num_groups=4,
                         layers_per_block=1, **extra)


def upscale_pipeline(root: Path) -> Path:
    """A runnable tiny ``StableDiffusionUpscalePipeline`` folder: a 3-level VAE (x4, as the real
    upscaler's), a UNet taking latents + the low-res image (7 channels) and the noise level as class."""
    from diffusers import DDIMScheduler, DDPMScheduler, StableDiffusionUpscalePipeline

    torch.manual_seed(0)
    text_encoder, tokenizer = _text_parts()
    pipe = StableDiffusionUpscalePipeline(
        vae=_vae(3, scaling_factor=0.08333), text_encoder=text_encoder, tokenizer=tokenizer,
        unet=_unet(7, num_class_embeds=351), low_res_scheduler=DDPMScheduler(), scheduler=DDIMScheduler(),
        max_noise_level=350)
    pipe.save_pretrained(root / "upscale")
    return root / "upscale"


def img2img_pipeline(root: Path) -> Path:
    """A runnable tiny Stable Diffusion folder (saved as ``StableDiffusionPipeline``, as the hub
    repos are; ``AutoPipelineForImage2Image`` loads it for img2img)."""
    from diffusers import DDIMScheduler, StableDiffusionPipeline

    torch.manual_seed(0)
    text_encoder, tokenizer = _text_parts()
    pipe = StableDiffusionPipeline(vae=_vae(2), text_encoder=text_encoder, tokenizer=tokenizer, unet=_unet(4),
                                   scheduler=DDIMScheduler(), safety_checker=None, feature_extractor=None,
                                   requires_safety_checker=False)
    pipe.save_pretrained(root / "sd")
    return root / "sd"
