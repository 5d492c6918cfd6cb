"""VideoMAE (transformers ``VideoMAEModel``): tubelet patches, mean-pooled (or first-token) features.

Pooling follows ``VideoMAEForVideoClassification`` exactly (``use_mean_pooling``: mean of the
tokens + ``fc_norm``; otherwise the model's final layernorm + token 0), so a fine-tuned HF
classification checkpoint loads with only its ``classifier`` dropped.
"""
from __future__ import annotations

import threading
from contextlib import contextmanager
from typing import Dict, Iterator

import numpy as np
import torch
from torch import nn

from mmvgm.config import check_keys
from mmvgm.models.pretrained import hf_renamed
from mmvgm.models.registry import Backbone, register_backbone

# HF config fields that are not architecture or are set from frames/size/channels.
_HF_BOOKKEEPING = {"transformers_version", "architectures", "output_hidden_states", "return_dict", "dtype",
                   "chunk_size_feed_forward", "is_encoder_decoder", "id2label", "label2id", "problem_type",
                   "_name_or_path", "model_type", "output_attentions", "image_size", "num_frames",
                   "num_channels"}


def hf_model_keys(config_cls) -> list:
    return [k for k in config_cls().to_dict() if k not in _HF_BOOKKEEPING]


def complete_videomae(cfg: dict) -> dict:
    from transformers import VideoMAEConfig

    check_keys(cfg["model"], hf_model_keys(VideoMAEConfig), "videomae 'model'")
    return cfg


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

    def __init__(self, cfg: dict) -> None:
        super().__init__(cfg)
        from transformers import VideoMAEConfig, VideoMAEModel

        self.hf_config = VideoMAEConfig(image_size=self.size, num_frames=self.frames,
                                        num_channels=self.channels, **cfg["model"])
        with _fast_position_table():
            self.videomae = VideoMAEModel(self.hf_config)
        _position_table_as_buffer(self.videomae.embeddings)
        hidden = self.hf_config.hidden_size
        # Default eps, as in VideoMAEForVideoClassification (not config.layer_norm_eps).
        self.fc_norm = nn.LayerNorm(hidden) if self.hf_config.use_mean_pooling else None
        self.num_features = hidden

    def adapt_state_dict(self, state: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
        state = hf_renamed(state, "videomae")
        if any(k.startswith("videomae.") for k in state):  # *ForVideoClassification / *ForPreTraining
            return state
        return {f"videomae.{k}": v for k, v in state.items()}  # a bare VideoMAEModel

    def forward(self, pixel_values: torch.Tensor) -> Dict[str, torch.Tensor]:
        tokens = self.videomae(pixel_values=pixel_values).last_hidden_state
        features = self.fc_norm(tokens.mean(1)) if self.fc_norm is not None else tokens[:, 0]
        return {"features": features}


def sinusoid_table(n_position: int, d_hid: int) -> torch.Tensor:
    """transformers' VideoMAE ``get_sinusoid_encoding_table``, value for value, without its
    Python loop over every (position, channel) pair, which took 1.3-1.5 s of each VideoMAE-base
    build on the 2-core machine and 2.5 s on the H100 machine (1568 x 768 entries). Each
    entry is the same float64 division, so the float32 table is bit-identical."""
    denominators = np.array([np.power(10000, 2 * (j // 2) / d_hid) for j in range(d_hid)])
    table = np.arange(n_position, dtype=np.float64)[:, None] / denominators[None, :]
    table[:, 0::2] = np.sin(table[:, 0::2])
    table[:, 1::2] = np.cos(table[:, 1::2])
    return torch.tensor(table, dtype=torch.float32).unsqueeze(0)


_PATCH_LOCK = threading.Lock()


@contextmanager
def _fast_position_table() -> Iterator[None]:
    """Builds inside use :func:`sinusoid_table` for transformers' own (left as it is if a
    transformers release renames it). Locked: two threads must not interleave the swap."""
    from transformers.models.videomae import modeling_videomae as hf

    with _PATCH_LOCK:
        original = getattr(hf, "get_sinusoid_encoding_table", None)
        if original is None:
            yield
            return
        hf.get_sinusoid_encoding_table = sinusoid_table
        try:
            yield
        finally:
            hf.get_sinusoid_encoding_table = original


def _position_table_as_buffer(embeddings: nn.Module) -> None:
    """transformers keeps VideoMAE's fixed sin-cos table as a plain CPU tensor and copies it to the
    input's device in every forward: a host-to-device copy per batch that waits for the host and
    cannot be captured in a CUDA graph. As a (non-persistent) buffer it moves with ``.to()``."""
    table = embeddings.position_embeddings
    if isinstance(table, torch.Tensor) and "position_embeddings" not in dict(embeddings.named_buffers()):
        del embeddings.position_embeddings
        embeddings.register_buffer("position_embeddings", table, persistent=False)


@register_backbone("videomae", default_config="videomae", complete=complete_videomae)
def build_videomae(cfg: dict) -> VideoMAE:
    """VideoMAE (transformers), tubelet patches, mean-pooled features."""
    return VideoMAE(cfg)
