import pytest
import yaml

from mmvgm.errors import ConfigError
from mmvgm.models import build_backbone, build_model, list_backbones, list_configs, register_backbone
from mmvgm.models.registry import _REGISTRY, Backbone, resolve_backbone_config


def test_builtin_backbones_and_configs_are_listed():
    assert {"i3d_r50", "videomae", "xclip", "timm"} <= set(list_backbones())
    assert {"i3d_r50", "i3d_r50_tiny", "videomae", "videomae_tiny", "xclip_base_p32", "xclip_large_p14",
            "xclip_tiny", "timm", "timm_tiny"} <= set(list_configs())


@pytest.mark.parametrize("name", ["i3d_r50", "videomae", "xclip_base_p32", "xclip_large_p14", "timm",
                                  "i3d_r50_tiny", "videomae_tiny", "xclip_tiny", "timm_tiny"])
def test_every_shipped_config_resolves_completely(name):
    cfg = resolve_backbone_config(name)
    assert set(cfg) == {"backbone", "frames", "size", "channels", "model", "preprocess", "weights"}
    pre = cfg["preprocess"]
    assert pre["crop"] == cfg["size"] and pre["resize_shortest"] >= pre["crop"]
    assert len(pre["mean"]) == len(pre["std"]) == 3


def test_base_configs_match_the_hf_processors():
    assert resolve_backbone_config("videomae")["preprocess"]["mean"] == [0.485, 0.456, 0.406]
    xclip = resolve_backbone_config("xclip_large_p14")
    assert xclip["preprocess"]["std"] == [0.26862954, 0.26130258, 0.27577711]
    assert xclip["preprocess"]["resample"] == "bilinear"
    assert xclip["model"]["vision_config"]["patch_size"] == 14 and xclip["frames"] == 8
    assert resolve_backbone_config("i3d_r50")["preprocess"]["resize_shortest"] == 256


def test_weights_dir_processor_config_sets_the_pixel_statistics(tmp_path):
    (tmp_path / "preprocessor_config.json").write_text(
        '{"image_mean": [0.1, 0.2, 0.3], "image_std": [0.4, 0.5, 0.6], "resample": 3, "size": 999}')
    plain = resolve_backbone_config("xclip_tiny")["preprocess"]
    pre = resolve_backbone_config("xclip_tiny", weights=tmp_path)["preprocess"]
    assert pre["mean"] == [0.1, 0.2, 0.3] and pre["std"] == [0.4, 0.5, 0.6] and pre["resample"] == "bicubic"
    # geometry stays the model's: the weights fix its size, not the processor file
    assert (pre["resize_shortest"], pre["crop"]) == (plain["resize_shortest"], plain["crop"])
    # a weights file (not a directory) or a directory without the file changes nothing
    assert resolve_backbone_config("xclip_tiny", weights=tmp_path / "model.safetensors")["preprocess"] == plain
    assert resolve_backbone_config("xclip_tiny", weights=tmp_path / "elsewhere")["preprocess"] == plain


def test_registered_name_uses_its_default_config():
    assert resolve_backbone_config("xclip")["model"]["vision_config"]["patch_size"] == 32


def test_timm_name_form_takes_preprocessing_from_timm():
    cfg = resolve_backbone_config("timm:vit_tiny_patch16_224", size=64)
    assert cfg["model"]["name"] == "vit_tiny_patch16_224"
    assert cfg["preprocess"]["mean"] == [0.5, 0.5, 0.5]  # timm's pretrained_cfg, not ImageNet
    assert cfg["preprocess"]["crop"] == 64


def test_size_override_moves_the_preprocessing_with_it():
    cfg = resolve_backbone_config("i3d_r50", size=112, frames=8)
    assert (cfg["size"], cfg["frames"]) == (112, 8)
    assert cfg["preprocess"]["crop"] == 112 and cfg["preprocess"]["resize_shortest"] == 128


def test_resolving_twice_is_stable():
    cfg = resolve_backbone_config("timm_tiny")
    assert resolve_backbone_config(cfg) == cfg


def test_unknown_backbone_lists_known_names():
    with pytest.raises(ConfigError) as err:
        build_model({"backbone": "videomae_tyni", "task": "detect"})
    message = str(err.value)
    assert "did you mean 'videomae_tiny'" in message and "i3d_r50" in message and "timm:<name>" in message
    with pytest.raises(ConfigError, match="unknown backbone 'resnet'"):
        resolve_backbone_config({"backbone": "resnet", "frames": 8, "size": 32, "channels": 3})


def test_unknown_timm_model():
    with pytest.raises(ConfigError, match="did you mean 'resnet18'"):
        build_backbone("timm:resnet81")


@pytest.mark.parametrize("cfg, match", [
    ({"base": "videomae_tiny", "frame": 8}, "unknown key 'frame'.*did you mean 'frames'"),
    ({"base": "videomae_tiny", "preprocess": {"crop": 32, "meam": [0, 0, 0]}}, "did you mean 'mean'"),
    ({"base": "videomae_tiny", "model": {"hiden_size": 32}}, "did you mean 'hidden_size'"),
    ({"base": "xclip_tiny", "model": {"vision_config": {"patch_sise": 8}}}, "did you mean 'patch_size'"),
    ({"base": "i3d_r50_tiny", "model": {"stem_dim": 8}}, "did you mean 'stem_dim_out'"),
    ({"base": "videomae_tiny", "model": {"num_frames": 16}}, "top-level"),
    ({"base": "xclip_tiny", "model": {"vision_config": {"image_size": 64}}}, "top-level"),
    ({"base": "videomae_tiny", "frames": 0}, "positive integer"),
])
def test_config_mistakes_are_config_errors(cfg, match):
    with pytest.raises(ConfigError, match=match):
        build_backbone(cfg)


def test_typo_in_a_yaml_file_names_the_key(tmp_path):
    path = tmp_path / "mine.yaml"
    path.write_text(yaml.safe_dump({"base": "i3d_r50_tiny", "chanels": 4}))
    with pytest.raises(ConfigError, match="did you mean 'channels'"):
        build_model({"backbone": str(path), "task": "detect"})
    path.write_text(yaml.safe_dump({"base": "i3d_r50_tiny", "channels": 4}))
    assert build_backbone(path).channels == 4


def test_model_config_typo():
    with pytest.raises(ConfigError, match="did you mean 'num_classes'"):
        build_model({"backbone": "i3d_r50_tiny", "task": "trace", "num_class": 3})


def test_register_backbone_adds_a_new_kind_without_editing_the_registry():
    import torch

    @register_backbone("test_mean", description="mean colour")
    def build(cfg):
        class Mean(Backbone):
            num_features = 3

            def forward(self, pixel_values):
                return {"features": pixel_values.mean(dim=(1, 3, 4))}
        return Mean(cfg)

    try:
        model = build_model({"backbone": {"backbone": "test_mean", "frames": 4, "size": 8, "channels": 3},
                             "task": "trace", "num_classes": 2})
        assert model(torch.rand(2, 4, 3, 8, 8))["trace"].shape == (2, 2)
        assert "test_mean" in list_backbones()
    finally:
        _REGISTRY.pop("test_mean")


def test_a_folder_named_like_a_config_does_not_shadow_it(tmp_path, monkeypatch):
    (tmp_path / "videomae").mkdir()  # e.g. the user's local weights folder
    monkeypatch.chdir(tmp_path)
    assert resolve_backbone_config("videomae")["backbone"] == "videomae"
    with pytest.raises(Exception, match="config file not found|not found"):
        resolve_backbone_config(str(tmp_path / "missing.yaml"))


def test_timm_preprocessing_crops_where_timm_does():
    """An odd margin: torchvision's CenterCrop (timm's eval transform) rounds the offset."""
    import torch
    from torchvision.transforms import CenterCrop

    from mmvgm.data.transforms import VideoTransform

    cfg = resolve_backbone_config("timm:resnet18", size=32)
    t = VideoTransform.from_config(cfg["preprocess"])
    h = cfg["preprocess"]["resize_shortest"]  # already the resized height: only the crop acts
    frame = torch.arange(43, dtype=torch.uint8).repeat(3, h, 1)  # (C, H, 43): column index as value
    assert torch.equal(t.geometric(frame[None], layout="channels_first")[0], CenterCrop(32)(frame))
