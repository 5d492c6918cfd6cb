"""Video backbones, task heads and ``build_model`` (see ``models.registry`` for configs).

    from mmvgm.models import build_model
    model = build_model({"backbone": "videomae_tiny", "task": "joint", "num_classes": 9})
    out = model(pixel_values)            # {"features", "detect", "trace"}
    loss = model.loss(out, labels)       # label encoding: mmvgm.models.heads
"""
from mmvgm.models.classifier import VideoClassifier, build_model
from mmvgm.models.pretrained import LoadReport, load_pretrained
from mmvgm.models.registry import (Backbone, build_backbone, list_backbones, list_configs, register_backbone,
                                   resolve_backbone_config)

__all__ = ["Backbone", "LoadReport", "VideoClassifier", "build_backbone", "build_model", "list_backbones",
           "list_configs", "load_pretrained", "register_backbone", "resolve_backbone_config"]
