import pytest
import torch

from mmvgm.errors import ConfigError
from mmvgm.models import VideoClassifier, build_model

from .conftest import TINY, clip

TASKS = [("detect", None), ("trace", 4), ("joint", 3)]


@pytest.mark.parametrize("backbone", TINY)
@pytest.mark.parametrize("task, n", TASKS)
def test_every_backbone_and_head_runs_forward_and_backward(backbone, task, n):
    model = build_model({"backbone": backbone, "task": task, "num_classes": n})
    assert isinstance(model, VideoClassifier)
    out = model(clip())
    assert out["features"].shape == (2, model.backbone.num_features)
    if task in ("detect", "joint"):
        assert out["detect"].shape == (2,)
    if task in ("trace", "joint"):
        assert out["trace"].shape == (2, n)
    assert ("detect" in out) == (task != "trace") and ("trace" in out) == (task != "detect")
    loss = model.loss(out, torch.tensor([0, 1]))
    assert loss.dim() == 0 and torch.isfinite(loss)
    loss.backward()
    first = next(p for p in model.backbone.parameters() if p.requires_grad)
    assert first.grad is not None and first.grad.abs().sum() > 0  # gradients reach the input layer
    for head in model.heads.values():
        assert head.proj.weight.grad.abs().sum() > 0


@pytest.mark.parametrize("backbone", TINY)
def test_four_channel_latents(backbone):
    # LVD's tiny latents: 4 channels x 8 frames x 16 x 16.
    model = build_model({"backbone": {"base": backbone, "channels": 4, "size": 16}, "task": "detect"})
    out = model(clip(channels=4, size=16))
    out["detect"].sum().backward()
    assert out["detect"].shape == (2,)


def test_wrong_input_shape_is_one_clear_error():
    model = build_model({"backbone": "videomae_tiny", "task": "detect"})
    with pytest.raises(ConfigError, match="built for 8 frames, got 16"):
        model(clip(frames=16))
    with pytest.raises(ConfigError, match="built for 3 channels, got 4"):
        model(clip(channels=4))
    with pytest.raises(ConfigError, match="32x32 input, got 48x48"):
        model(clip(size=48))
    with pytest.raises(ConfigError, match=r"\(B,T,C,H,W\)"):
        model(torch.zeros(8, 3, 32, 32))


def test_config_rebuilds_the_same_architecture_and_state():
    model = build_model({"backbone": "xclip_tiny", "task": "joint", "num_classes": 3, "dropout": 0.1})
    twin = build_model(model.config)
    twin.load_state_dict(model.state_dict())
    model.eval(), twin.eval()
    x = clip()
    assert torch.equal(model(x)["trace"], twin(x)["trace"])
    assert model.config["dropout"] == 0.1 and model.config["backbone"]["weights"] is None
    assert model.num_labels == 4 and model.frames == 8 and model.preprocess["crop"] == 32


@pytest.mark.parametrize("cfg, match", [
    ({"backbone": "i3d_r50_tiny", "task": "tracing", "num_classes": 3}, "unknown task 'tracing'"),
    ({"backbone": "i3d_r50_tiny", "task": "trace"}, "needs num_classes"),
    ({"backbone": "i3d_r50_tiny", "task": "trace", "num_classes": 1}, "num_classes >= 2"),
    ({"backbone": "i3d_r50_tiny", "task": "detect", "num_classes": 9}, "binary"),
    ({"backbone": "i3d_r50_tiny", "task": "joint", "num_classes": 3, "real_index": 1}, "unknown key"),
    ({"task": "detect"}, "missing 'backbone'"),
])
def test_bad_model_configs(cfg, match):
    with pytest.raises(ConfigError, match=match):
        build_model(cfg)
