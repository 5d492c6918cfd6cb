"""Data: label sets, datasets, splits, transforms (finding the videos: ``mmvgm.io.discovery``).

Submodules import torch lazily only where needed; import what you use, e.g.
``from mmvgm.io.discovery import discover`` and
``from mmvgm.data.dataset import VideoDataset, make_loader``.
"""
from mmvgm.data.labels import LabelSet, require_all_classes

__all__ = ["LabelSet", "require_all_classes"]
