import torch

from mmvgm.models import build_backbone, build_model

from .conftest import clip


def test_frame_scores_average_to_the_video_score():
    model = build_model({"backbone": "timm_tiny", "task": "joint", "num_classes": 3}).eval()
    with torch.no_grad():
        out = model(clip(frames=8))
    assert out["frame_detect"].shape == (2, 8) and out["frame_trace"].shape == (2, 8, 3)
    assert torch.allclose(out["frame_detect"].mean(1), out["detect"], atol=1e-5)
    assert torch.allclose(out["frame_trace"].mean(1), out["trace"], atol=1e-5)


def test_any_frame_count_for_cnns():
    backbone = build_backbone("timm_tiny")
    assert backbone(clip(batch=1, frames=3))["frame_features"].shape == (1, 3, backbone.num_features)


def test_vit_gets_the_configured_image_size():
    backbone = build_backbone("timm:test_vit", size=32, frames=2)
    out = backbone(clip(batch=1, frames=2, size=32))
    assert out["features"].shape == (1, backbone.num_features) and backbone.fixed_size
