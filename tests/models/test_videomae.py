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


def test_fast_position_table_is_bit_identical_to_transformers():
    from transformers.models.videomae import modeling_videomae as hf

    from mmvgm.models.videomae import sinusoid_table

    for n_position, d_hid in [(1, 2), (7, 5), (392, 768), (64, 96)]:
        ours, theirs = sinusoid_table(n_position, d_hid), hf.get_sinusoid_encoding_table(n_position, d_hid)
        assert ours.dtype == theirs.dtype and ours.shape == theirs.shape
        assert torch.equal(ours, theirs), (n_position, d_hid)


def test_a_built_model_has_transformers_table_and_leaves_transformers_unpatched():
    from transformers.models.videomae import modeling_videomae as hf

    original = hf.get_sinusoid_encoding_table
    backbone = build_backbone(resolve_backbone_config("videomae_tiny"))
    assert hf.get_sinusoid_encoding_table is original
    table = backbone.videomae.embeddings.position_embeddings
    assert torch.equal(table, original(table.shape[1], table.shape[2]))
