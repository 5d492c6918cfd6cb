"""Data: label sets, dataset discovery (folders, CSV/JSONL manifests), splits, transforms.

Submodules import torch lazily only where needed; import what you use, e.g.
``from mmvgm.data.dataset import discover, VideoDataset, make_loader``.
"""
from mmvgm.data.labels import LabelSet, require_all_classes

__all__ = ["LabelSet", "require_all_classes"]
