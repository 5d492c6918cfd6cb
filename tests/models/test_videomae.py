"""The VideoMAE wrapper's own fixes on top of transformers."""
import torch

from mmvgm.models import build_backbone
from mmvgm.models.registry import resolve_backbone_config


def test_position_table_moves_with_the_model_and_stays_out_of_the_state_dict():
    backbone = build_backbone(resolve_backbone_config("videomae_tiny"))
    embeddings = backbone.videomae.embeddings
    assert "position_embeddings" in dict(embeddings.named_buffers())
    assert not any("position_embeddings" in k for k in backbone.state_dict())  # HF checkpoints lack it
    x = torch.randn(1, backbone.frames, 3, backbone.size, backbone.size)
    before = backbone(x)["features"]
    backbone.to(torch.float64)  # moved (and cast) with the module, as .cuda() moves it
    assert embeddings.position_embeddings.dtype == torch.float64
    assert torch.allclose(backbone(x.double())["features"].float(), before, atol=1e-4)
