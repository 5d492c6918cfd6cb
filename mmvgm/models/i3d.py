"""I3D ResNet-50 (pytorchvideo ``create_resnet``, the ``i3d_r50`` hub layout) with an adaptive pool.

pytorchvideo's own head pools with a fixed (4,7,7) kernel, i.e. 8 frames at 224 px only; here
the network ends at the last stage and an ``AdaptiveAvgPool3d(1)`` gives (B, 2048) features for
any clip length (8/16/32 frames) and size. Only ``pytorchvideo.models`` is imported
(``pytorchvideo.transforms`` breaks with torchvision >= 0.17).
"""
from __future__ import annotations

import inspect
import warnings
from typing import Dict

import torch
from torch import nn

from mmvgm.config import check_keys
from mmvgm.models.registry import Backbone, register_backbone

# The i3d_r50 entry point of pytorchvideo.models.hub.resnet, as create_resnet options.
I3D_R50 = {
    "stem_conv_kernel_size": (5, 7, 7),
    "stage_conv_a_kernel_size": ((3, 1, 1), ((3, 1, 1), (1, 1, 1)), ((3, 1, 1), (1, 1, 1)),
                                 ((1, 1, 1), (3, 1, 1))),
}
# Set by this module or by frames/channels; callables cannot come from YAML.
_NOT_CONFIGURABLE = {"input_channel", "model_num_class", "dropout_rate", "norm", "activation", "stem",
                     "stem_pool", "stage1_pool", "bottleneck", "head", "head_pool", "head_pool_kernel_size",
                     "head_output_size", "head_activation", "head_output_with_global_average"}


def _create_resnet():
    with warnings.catch_warnings():  # pytorchvideo decorates with the deprecated torch.jit.script
        warnings.simplefilter("ignore", FutureWarning)
        from pytorchvideo.models.resnet import create_resnet
    return create_resnet


def _model_options() -> list:
    create_resnet = _create_resnet()
    return [p for p in inspect.signature(create_resnet).parameters if p not in _NOT_CONFIGURABLE]


def _tuples(value):
    return tuple(_tuples(v) for v in value) if isinstance(value, (list, tuple)) else value


def complete_i3d(cfg: dict) -> dict:
    check_keys(cfg["model"], _model_options(), "i3d_r50 'model'")
    return cfg


class I3D(Backbone):
    """pytorchvideo I3D R50 body + adaptive average pool -> (B, 2048) (scaled by stem_dim_out)."""

    def __init__(self, cfg: dict) -> None:
        super().__init__(cfg)
        create_resnet = _create_resnet()
        options = dict(I3D_R50)
        options.update({k: _tuples(v) for k, v in cfg["model"].items()})
        self.net = create_resnet(input_channel=self.channels, stage1_pool=nn.MaxPool3d, head=None, **options)
        self.pool = nn.AdaptiveAvgPool3d(1)
        self.num_features = [m for m in self.net.modules() if isinstance(m, nn.Conv3d)][-1].out_channels
        # A pytorchvideo checkpoint's classification head is the block after the last stage.
        self.ignore_unexpected = (f"net.blocks.{len(self.net.blocks)}.",)

    def adapt_state_dict(self, state: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
        if any(k.startswith("net.") for k in state):
            return state
        return {f"net.{k}": v for k, v in state.items()}

    def forward(self, pixel_values: torch.Tensor) -> Dict[str, torch.Tensor]:
        x = self.net(pixel_values.transpose(1, 2))  # (B,T,C,H,W) -> (B,C,T,H,W)
        return {"features": self.pool(x).flatten(1)}


@register_backbone("i3d_r50", default_config="i3d_r50", complete=complete_i3d)
def build_i3d(cfg: dict) -> I3D:
    """I3D ResNet-50 (pytorchvideo), adaptive pool: any frame count and size."""
    return I3D(cfg)
