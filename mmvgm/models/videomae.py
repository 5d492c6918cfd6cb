"""VideoMAE (transformers' VideoMAE modules): tubelet patches, mean-pooled (or first-token) features.

The encoder is ``VideoMAEBody``, ``VideoMAEModel``'s unmasked forward composed from
transformers' VideoMAE modules, with the same parameter names, initialisation and outputs.
Pooling follows ``VideoMAEForVideoClassification`` exactly (``use_mean_pooling``: mean of the
tokens + ``fc_norm``; otherwise the model's final layernorm + token 0), so a fine-tuned HF
classification checkpoint loads with only its ``classifier`` dropped.

A checkpoint loaded to score builds the same backbone on ``models.videomae_native``'s
encoder instead (``build_videomae_for_scoring``): same state dict and outputs, no transformers.
"""
from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Dict, Tuple

import numpy as np
import torch
from torch import nn

from mmvgm.config import check_keys
from mmvgm.models.pretrained import hf_renamed
from mmvgm.models.registry import Backbone, register_backbone
from mmvgm.models.videomae_native import VIDEOMAE_DEFAULTS, NativeVideoMAEBody, native_supported, videomae_arch

if TYPE_CHECKING:
    from transformers import VideoMAEConfig

# HF config fields that are not architecture or are set from frames/size/channels.
_HF_BOOKKEEPING = {"transformers_version", "architectures", "output_hidden_states", "return_dict", "dtype",
                   "chunk_size_feed_forward", "is_encoder_decoder", "id2label", "label2id", "problem_type",
                   "_name_or_path", "model_type", "output_attentions", "image_size", "num_frames",
                   "num_channels"}


def hf_model_keys(config_cls) -> list:
    return [k for k in config_cls().to_dict() if k not in _HF_BOOKKEEPING]


def complete_videomae(cfg: dict) -> dict:
    # VideoMAEConfig's fields, kept here: scoring a checkpoint should not import transformers
    check_keys(cfg["model"], list(VIDEOMAE_DEFAULTS), "videomae 'model'")
    return cfg


def _videomae_classes() -> Tuple[type, type, type]:
    """transformers' VideoMAE building blocks, imported on first use (transformers is slow to import)."""
    from transformers import VideoMAEPreTrainedModel
    from transformers.models.videomae.modeling_videomae import VideoMAEEncoder, VideoMAEPatchEmbeddings

    return VideoMAEPreTrainedModel, VideoMAEEncoder, VideoMAEPatchEmbeddings


class VideoMAEPositionalEmbeddings(nn.Module):
    """Tubelet projection plus VideoMAE's fixed sin-cos table.

    transformers computes that table with a Python loop per (position, channel) in every
    ``VideoMAEModel`` build and keeps it as a plain CPU tensor, copied to the input's device in
    every forward (a host-to-device copy per batch that cannot be captured in a CUDA graph).
    Here it is computed once, vectorised, as a non-persistent buffer: it moves with ``.to()``
    and stays out of the state dict, as HF checkpoints lack it."""

    def __init__(self, config: VideoMAEConfig) -> None:
        super().__init__()
        _, _, VideoMAEPatchEmbeddings = _videomae_classes()
        self.patch_embeddings = VideoMAEPatchEmbeddings(config)
        table = sinusoid_table(self.patch_embeddings.num_patches, config.hidden_size)
        self.register_buffer("position_embeddings", table, persistent=False)

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        embeddings = self.patch_embeddings(pixel_values)
        return embeddings + self.position_embeddings.type_as(embeddings)


@functools.cache
def _body_class() -> type:
    VideoMAEPreTrainedModel, VideoMAEEncoder, _ = _videomae_classes()

    class VideoMAEBody(VideoMAEPreTrainedModel):
        """``VideoMAEModel`` without masking: same submodules and names (``embeddings.patch_embeddings``,
        ``encoder.layer.N``, ``layernorm``), so HF checkpoints and ours load unchanged, and the same
        ``post_init`` weight initialisation; a PreTrainedModel, so ``save_pretrained`` works."""

        def __init__(self, config: VideoMAEConfig) -> None:
            super().__init__(config)
            self.embeddings = VideoMAEPositionalEmbeddings(config)
            self.encoder = VideoMAEEncoder(config)
            self.layernorm = (None if config.use_mean_pooling
                              else nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps))
            self.post_init()

        def get_input_embeddings(self) -> nn.Module:
            return self.embeddings.patch_embeddings

        def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
            """(B, T, C, H, W) -> last hidden state (B, tokens, hidden)."""
            tokens = self.encoder(self.embeddings(pixel_values)).last_hidden_state
            return self.layernorm(tokens) if self.layernorm is not None else tokens

    VideoMAEBody.__module__, VideoMAEBody.__qualname__ = __name__, "VideoMAEBody"  # picklable by name
    return VideoMAEBody


def __getattr__(name: str) -> type:
    """``VideoMAEBody`` is defined on first use: its base class lives in transformers, which this
    package imports only when a model is built."""
    if name == "VideoMAEBody":
        return _body_class()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


class VideoMAE(Backbone):
    """VideoMAE encoder -> (B, hidden_size) video features."""

    fixed_frames = True
    fixed_size = True
    # Pretraining decoders, classification heads and the pooling norm of the other pooling mode.
    ignore_unexpected = ("classifier.", "decoder.", "encoder_to_decoder.", "mask_token", "fc_norm.",
                         "videomae.layernorm.")
    allow_missing = ("fc_norm.", "videomae.layernorm.")
    hf_arch_fields = ("image_size", "num_frames", "num_channels", "patch_size", "tubelet_size", "hidden_size",
                      "num_hidden_layers", "num_attention_heads", "intermediate_size", "hidden_act",
                      "layer_norm_eps")

    def __init__(self, cfg: dict, native: bool = False) -> None:
        """``native``: the encoder of ``models.videomae_native`` (for a checkpoint to fill: no
        transformers import, no initialisation) instead of transformers' modules."""
        super().__init__(cfg)
        arch = videomae_arch(cfg["model"])
        if native:
            self.hf_config = None
            self.videomae = NativeVideoMAEBody(arch, self.frames, self.size, self.channels)
        else:
            from transformers import VideoMAEConfig

            self.hf_config = VideoMAEConfig(image_size=self.size, num_frames=self.frames,
                                            num_channels=self.channels, **cfg["model"])
            self.videomae = _body_class()(self.hf_config)
        hidden = arch["hidden_size"]
        # Default eps, as in VideoMAEForVideoClassification (not config.layer_norm_eps).
        self.fc_norm = nn.LayerNorm(hidden) if arch["use_mean_pooling"] else None
        self.num_features = hidden

    def adapt_state_dict(self, state: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
        state = hf_renamed(state, "videomae")
        if any(k.startswith("videomae.") for k in state):  # *ForVideoClassification / *ForPreTraining
            return state
        return {f"videomae.{k}": v for k, v in state.items()}  # a bare VideoMAEModel

    def forward(self, pixel_values: torch.Tensor) -> Dict[str, torch.Tensor]:
        tokens = self.videomae(pixel_values)
        features = self.fc_norm(tokens.mean(1)) if self.fc_norm is not None else tokens[:, 0]
        return {"features": features}


def sinusoid_table(n_position: int, d_hid: int) -> torch.Tensor:
    """transformers' VideoMAE ``get_sinusoid_encoding_table``, value for value, without its
    Python loop over every (position, channel) pair, which dominates a VideoMAE-base build.
    Each entry is the same float64 division, so the float32 table is bit-identical."""
    denominators = np.array([np.power(10000, 2 * (j // 2) / d_hid) for j in range(d_hid)])
    table = np.arange(n_position, dtype=np.float64)[:, None] / denominators[None, :]
    table[:, 0::2] = np.sin(table[:, 0::2])
    table[:, 1::2] = np.cos(table[:, 1::2])
    return torch.tensor(table, dtype=torch.float32).unsqueeze(0)


def build_videomae_for_scoring(cfg: dict) -> VideoMAE:
    """The same VideoMAE on ``models.videomae_native``'s encoder, where it covers the config."""
    return VideoMAE(cfg, native=native_supported(videomae_arch(cfg["model"])))


@register_backbone("videomae", default_config="videomae", complete=complete_videomae,
                   scoring_builder=build_videomae_for_scoring)
def build_videomae(cfg: dict) -> VideoMAE:
    """VideoMAE (transformers), tubelet patches, mean-pooled features."""
    return VideoMAE(cfg)
