"""Tiny random encoders for the protection tests, saved in the layouts users point --model-path at."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch


def make_svd_dir(root: Path, clip_size: int = 32) -> Path:
    """A diffusers Stable Video Diffusion folder layout with tiny random models."""
    from diffusers import AutoencoderKLTemporalDecoder
    from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

    torch.manual_seed(0)
    cfg = CLIPVisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2,
                           image_size=clip_size, patch_size=8, projection_dim=16)
    CLIPVisionModelWithProjection(cfg).save_pretrained(root / "image_encoder")
    (root / "feature_extractor").mkdir(parents=True, exist_ok=True)
    (root / "feature_extractor" / "preprocessor_config.json").write_text(json.dumps({
        "image_processor_type": "CLIPImageProcessor", "do_resize": True, "size": {"shortest_edge": clip_size},
        "do_center_crop": True, "crop_size": {"height": clip_size, "width": clip_size},
        "do_normalize": True, "image_mean": [0.48145466, 0.4578275, 0.40821073],
        "image_std": [0.26862954, 0.26130258, 0.27577711], "do_convert_rgb": True}))
    vae = AutoencoderKLTemporalDecoder(block_out_channels=(32,) * 4, down_block_types=("DownEncoderBlock2D",) * 4,
                                       layers_per_block=1, latent_channels=4, sample_size=32)
    vae.save_pretrained(root / "vae")
    return root


@pytest.fixture(scope="session")
def svd_dir(tmp_path_factory) -> Path:
    return make_svd_dir(tmp_path_factory.mktemp("svd"))


@pytest.fixture(scope="session")
def svd_encoder(svd_dir):
    from mmvgm.attacks.encoders import build_encoder

    return build_encoder("svd", model_path=svd_dir, device="cpu", vae_max_side=64)


@pytest.fixture(scope="session")
def fast_config(tmp_path_factory) -> Path:
    """A protect config that keeps the tiny VAE cheap on CPU (it sees at most 64 px)."""
    path = tmp_path_factory.mktemp("cfg") / "fast.yaml"
    path.write_text("base: default\nsteps: 8\nencoder_options:\n  vae_max_side: 64\n")
    return path


def random_image(h: int, w: int, seed: int = 0):
    import numpy as np

    rng = np.random.default_rng(seed)
    base = rng.integers(0, 256, (max(1, h // 8), max(1, w // 8), 3), dtype=np.uint8)
    import cv2

    smooth = cv2.resize(base, (w, h), interpolation=cv2.INTER_LINEAR)  # photo-like, with some structure
    noise = rng.integers(-20, 21, (h, w, 3))
    return np.clip(smooth.astype(int) + noise, 0, 255).astype(np.uint8)
