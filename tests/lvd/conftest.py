"""A tiny random AnimateDiff text-to-video pipeline, built from configs and saved to disk once."""
from __future__ import annotations

import json
import string

import pytest
import torch

from tests.torch_threads import one_torch_thread

LATENT = {"channels": 4, "frames": 4, "size": 8}  # latents of a 4-frame 16x16 video


def write_tiny_clip_tokenizer(folder):
    """vocab.json + merges.txt for a character-level CLIP BPE (with a couple of merges)."""
    folder.mkdir(parents=True, exist_ok=True)
    letters = list(string.ascii_lowercase + string.digits)
    tokens = letters + [c + "</w>" for c in letters] + ["th", "the</w>", "<|startoftext|>", "<|endoftext|>"]
    (folder / "vocab.json").write_text(json.dumps({t: i for i, t in enumerate(tokens)}))
    (folder / "merges.txt").write_text("#version: 0.2\nt h\nth e</w>\n")
    from transformers import CLIPTokenizer

    return CLIPTokenizer(str(folder / "vocab.json"), str(folder / "merges.txt"), model_max_length=16)


def build_tiny_animatediff(workdir):
    from diffusers import (AnimateDiffPipeline, AutoencoderKL, DDIMScheduler, MotionAdapter,
                           UNet2DConditionModel)
    from transformers import CLIPTextConfig, CLIPTextModel

    torch.manual_seed(0)
    tokenizer = write_tiny_clip_tokenizer(workdir / "tok")
    text_encoder = CLIPTextModel(CLIPTextConfig(
        vocab_size=tokenizer.vocab_size, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
        num_attention_heads=2, max_position_embeddings=16, projection_dim=16,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id))
    unet = UNet2DConditionModel(
        block_out_channels=(8, 16), layers_per_block=1, sample_size=LATENT["size"], in_channels=4,
        out_channels=4, down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"), cross_attention_dim=16,
        attention_head_dim=4, norm_num_groups=4)
    adapter = MotionAdapter(block_out_channels=(8, 16), motion_layers_per_block=1,
                            motion_num_attention_heads=2, motion_norm_num_groups=4,
                            motion_max_seq_length=8, use_motion_mid_block=False)
    vae = AutoencoderKL(block_out_channels=(8, 8), in_channels=3, out_channels=3,
                        down_block_types=("DownEncoderBlock2D",) * 2, up_block_types=("UpDecoderBlock2D",) * 2,
                        latent_channels=4, norm_num_groups=4, sample_size=16)
    scheduler = DDIMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="linear", clip_sample=False)
    pipe = AnimateDiffPipeline(vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, unet=unet,
                               motion_adapter=adapter, scheduler=scheduler)
    out = workdir / "pipe"
    pipe.save_pretrained(out)
    return out


@pytest.fixture(autouse=True)
def single_thread_torch():
    """Tiny models on a shared 2-core machine: one thread avoids oversubscription stalls."""
    with one_torch_thread():
        yield


@pytest.fixture(scope="session")
def tiny_pipeline_dir(tmp_path_factory):
    return build_tiny_animatediff(tmp_path_factory.mktemp("animatediff"))


@pytest.fixture()
def tiny_pipeline(tiny_pipeline_dir):
    from diffusers import AnimateDiffPipeline

    pipe = AnimateDiffPipeline.from_pretrained(tiny_pipeline_dir, local_files_only=True)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def run_tiny(pipe, steps=6, prompt="the cat", **kwargs):
    return pipe(prompt, num_frames=LATENT["frames"], height=16, width=16, num_inference_steps=steps,
                guidance_scale=2.0, output_type="latent",
                generator=torch.Generator().manual_seed(0), **kwargs)
