"""X-CLIP video encoder (transformers ``XCLIPModel``: CLIP vision per frame + MIT over time).

Features are ``XCLIPModel.get_video_features(pixel_values).pooler_output`` (transformers 5
returns an output object), i.e. (B, projection_dim). Only the video side is kept: the text
tower, text projection, prompt generator and logit scale are removed after construction (they
never touch video features), and their keys are ignored when loading an HF X-CLIP dir.
``channels`` != 3 works (the patch embedding takes ``num_channels``) but has no pretrained weights.
"""
from __future__ import annotations

from typing import Dict

import torch

from mmvgm.config import check_keys
from mmvgm.errors import ConfigError
from mmvgm.models.registry import Backbone, register_backbone
from mmvgm.models.videomae import hf_model_keys

_TOP_LEVEL = ("projection_dim", "vision_config")
_TEXT_STUB = {"hidden_size": 8, "intermediate_size": 16, "num_hidden_layers": 1, "num_attention_heads": 1,
              "vocab_size": 8, "max_position_embeddings": 8}
_TEXT_SIDE = ("text_model", "text_projection", "prompts_generator", "prompts_visual_layernorm",
              "prompts_visual_projection", "logit_scale")


def complete_xclip(cfg: dict) -> dict:
    from transformers import XCLIPVisionConfig

    check_keys(cfg["model"], _TOP_LEVEL, "xclip 'model'")
    vision = cfg["model"].get("vision_config") or {}
    for key in ("image_size", "num_frames", "num_channels"):
        if key in vision:
            raise ConfigError(f"backbone config 'model.vision_config.{key}' is set from the top-level "
                              "frames/size/channels keys; set those instead")
    check_keys(vision, hf_model_keys(XCLIPVisionConfig), "xclip 'model.vision_config'")
    return cfg


class XCLIP(Backbone):
    """X-CLIP vision + multi-frame integration transformer -> (B, projection_dim)."""

    fixed_frames = True
    fixed_size = True
    hf_arch_fields = ("projection_dim",) + tuple(
        f"vision_config.{k}" for k in ("image_size", "num_frames", "num_channels", "patch_size", "hidden_size",
                                       "intermediate_size", "num_hidden_layers", "num_attention_heads",
                                       "mit_hidden_size", "mit_intermediate_size", "mit_num_hidden_layers",
                                       "mit_num_attention_heads", "hidden_act", "layer_norm_eps"))
    ignore_unexpected = tuple(f"xclip.{name}" + ("" if name in ("logit_scale", "prompts_visual_projection") else ".")
                              for name in _TEXT_SIDE)

    def __init__(self, cfg: dict) -> None:
        super().__init__(cfg)
        from transformers import XCLIPConfig, XCLIPModel

        model = dict(cfg["model"])
        vision = dict(model.pop("vision_config", None) or {}, image_size=self.size, num_frames=self.frames,
                      num_channels=self.channels)
        self.hf_config = XCLIPConfig(text_config=dict(_TEXT_STUB), vision_config=vision, **model)
        self.xclip = XCLIPModel(self.hf_config)
        for name in _TEXT_SIDE:
            delattr(self.xclip, name)
        self.num_features = self.hf_config.projection_dim

    def adapt_state_dict(self, state: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
        if any(k.startswith("xclip.") for k in state):
            return state
        return {f"xclip.{k}": v for k, v in state.items()}

    def forward(self, pixel_values: torch.Tensor) -> Dict[str, torch.Tensor]:
        return {"features": self.xclip.get_video_features(pixel_values=pixel_values).pooler_output}


@register_backbone("xclip", default_config="xclip_base_p32", complete=complete_xclip)
def build_xclip(cfg: dict) -> XCLIP:
    """X-CLIP video encoder (transformers), features from get_video_features."""
    return XCLIP(cfg)
