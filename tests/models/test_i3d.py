import pytest

from mmvgm.models import build_backbone, build_model

from .conftest import clip


@pytest.mark.parametrize("frames", [8, 16, 32])
def test_adaptive_pool_takes_any_clip_length(frames):
    model = build_model({"backbone": "i3d_r50_tiny", "task": "detect"})
    out = model(clip(batch=1, frames=frames))
    out["detect"].sum().backward()
    assert out["features"].shape == (1, 256)


def test_any_spatial_size():
    backbone = build_backbone("i3d_r50_tiny")
    assert backbone(clip(batch=1, size=48))["features"].shape == (1, 256)
    assert not backbone.fixed_frames and not backbone.fixed_size


def test_base_config_is_the_pytorchvideo_i3d_r50_layout():
    from pytorchvideo.models.hub.resnet import i3d_r50

    reference = i3d_r50(pretrained=False)
    ours = build_backbone({"base": "i3d_r50_tiny", "model": {"stem_dim_out": 64}})
    ref_shapes = {k: v.shape for k, v in reference.state_dict().items() if not k.startswith("blocks.6.")}
    our_shapes = {k[len("net."):]: v.shape for k, v in ours.state_dict().items()}
    assert our_shapes == ref_shapes
    assert ours.num_features == 2048
