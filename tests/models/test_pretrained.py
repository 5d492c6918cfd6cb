"""Local pretrained weights: save a tiny model in each ecosystem's format, load it back, compare."""
import pickle

import pytest
import torch
from safetensors.torch import save_file

from mmvgm.errors import CheckpointError
from mmvgm.models import build_backbone, build_model, load_pretrained
from mmvgm.models.pretrained import read_state_dict

from .conftest import clip


def _same(a, b, x, atol=1e-6):
    a.eval(), b.eval()
    with torch.no_grad():
        return torch.allclose(a(x)["features"], b(x)["features"], atol=atol)


# --- I3D: pytorchvideo .pyth, plain state dicts, safetensors -------------------------------------

def _pytorchvideo_i3d():
    from pytorchvideo.models.hub.resnet import i3d_r50

    return i3d_r50(pretrained=False, stem_dim_out=8).eval()  # the hub entry point, tiny width


def test_i3d_loads_a_pytorchvideo_pyth_and_drops_its_kinetics_head(tmp_path):
    reference = _pytorchvideo_i3d()
    path = tmp_path / "I3D_8x8_R50.pyth"
    torch.save({"model_state": reference.state_dict(), "epoch": 196}, path)
    backbone = build_backbone("i3d_r50_tiny").eval()
    report = load_pretrained(backbone, path)
    assert report.ignored_unexpected == ["net.blocks.6.proj.weight", "net.blocks.6.proj.bias"]
    assert not report.kept_missing
    x = clip(batch=1)
    with torch.no_grad():
        body = x.transpose(1, 2)
        for block in reference.blocks[:-1]:
            body = block(body)
        assert torch.allclose(backbone(x)["features"], body.mean(dim=(2, 3, 4)), atol=1e-5)


@pytest.mark.parametrize("fmt", ["safetensors", "pth"])
def test_i3d_own_state_dict_round_trip(tmp_path, fmt):
    source = build_backbone("i3d_r50_tiny")
    path = tmp_path / f"i3d.{fmt}"
    if fmt == "safetensors":
        save_file(source.state_dict(), path)
    else:
        torch.save({k.removeprefix("net."): v for k, v in source.state_dict().items()}, path)
    loaded = build_model({"backbone": "i3d_r50_tiny", "task": "detect"}, weights=path)
    assert loaded.pretrained == str(path)
    assert _same(source, loaded.backbone, clip(batch=1))


# --- VideoMAE: HF directories of the bare model, the classifier and the pretraining model -------

def test_videomae_hf_dir_round_trip(tmp_path):
    source = build_backbone("videomae_tiny")
    source.videomae.save_pretrained(tmp_path)
    loaded = build_backbone("videomae_tiny", weights=tmp_path)
    assert _same(source, loaded, clip())


def test_videomae_classification_checkpoint_keeps_fc_norm_drops_classifier(tmp_path):
    from transformers import VideoMAEForVideoClassification

    config = build_backbone("videomae_tiny").hf_config
    config.num_labels = 400
    hf = VideoMAEForVideoClassification(config).eval()
    torch.nn.init.normal_(hf.fc_norm.weight)
    hf.save_pretrained(tmp_path)
    loaded = build_backbone({"base": "videomae_tiny", "weights": str(tmp_path)}).eval()
    x = clip()
    with torch.no_grad():
        expected = hf.fc_norm(hf.videomae(x).last_hidden_state.mean(1))
        assert torch.allclose(loaded(x)["features"], expected, atol=1e-5)


def test_videomae_pretraining_checkpoint_and_pytorch_model_bin(tmp_path):
    from transformers import VideoMAEForPreTraining

    config = build_backbone("videomae_tiny").hf_config
    hf = VideoMAEForPreTraining(config)
    torch.save(hf.state_dict(), tmp_path / "pytorch_model.bin")
    (tmp_path / "config.json").write_text(config.to_json_string())
    backbone = build_backbone("videomae_tiny")
    report = load_pretrained(backbone, tmp_path)
    assert any(k.startswith("decoder.") for k in report.ignored_unexpected)
    assert torch.equal(backbone.videomae.embeddings.patch_embeddings.projection.weight,
                       hf.videomae.embeddings.patch_embeddings.projection.weight)


# --- X-CLIP: an HF dir of the full XCLIPModel (text tower ignored) --------------------------------

def test_xclip_hf_dir_matches_get_video_features(tmp_path):
    from transformers import XCLIPModel

    hf = XCLIPModel(build_backbone("xclip_tiny").xclip.config).eval()
    hf.save_pretrained(tmp_path)
    backbone = build_backbone("xclip_tiny")
    report = load_pretrained(backbone, tmp_path)
    assert any(k.startswith("xclip.text_model.") for k in report.ignored_unexpected)
    x = clip()
    with torch.no_grad():
        assert torch.allclose(backbone.eval()(x)["features"],
                              hf.get_video_features(pixel_values=x).pooler_output, atol=1e-6)


# --- timm: a classification checkpoint (its classifier is dropped), 3 -> 4 channels ----------------

def test_timm_classification_checkpoint(tmp_path):
    import timm

    hf = timm.create_model("test_resnet", pretrained=False, num_classes=10).eval()
    path = tmp_path / "model.safetensors"
    save_file(hf.state_dict(), path)
    backbone = build_backbone("timm_tiny")
    report = load_pretrained(backbone, tmp_path)  # a directory holding model.safetensors
    assert sorted(report.ignored_unexpected) == ["model.fc.bias", "model.fc.weight"]
    x = clip(batch=1, frames=2)
    with torch.no_grad():
        per_frame = hf.forward_head(hf.forward_features(x[0]), pre_logits=True)
        assert torch.allclose(backbone.eval()(x)["frame_features"][0], per_frame, atol=1e-5)


def test_timm_training_checkpoint_adapts_the_first_conv_to_four_channels(tmp_path):
    import timm

    hf = timm.create_model("test_resnet", pretrained=False)
    path = tmp_path / "checkpoint.pth.tar"
    torch.save({"epoch": 3, "state_dict": {f"module.{k}": v for k, v in hf.state_dict().items()}}, path)
    backbone = build_backbone("timm_tiny", channels=4, weights=path)
    first = backbone.model.conv1[0].weight if isinstance(backbone.model.conv1, torch.nn.Sequential) \
        else backbone.model.conv1.weight
    assert first.shape[1] == 4
    assert backbone(clip(batch=1, frames=2, channels=4))["features"].shape == (1, backbone.num_features)


# --- errors ------------------------------------------------------------------------------------

def test_missing_path_names_path_and_expected_files(tmp_path):
    missing = tmp_path / "nowhere"
    with pytest.raises(CheckpointError) as err:
        build_model({"backbone": "videomae_tiny", "task": "detect"}, weights=missing)
    assert str(missing) in str(err.value) and "model.safetensors" in str(err.value)


def test_directory_without_weights(tmp_path):
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(CheckpointError, match="expected one of model.safetensors, pytorch_model.bin"):
        build_backbone("xclip_tiny", weights=tmp_path)


def test_wrong_architecture_lists_the_keys(tmp_path):
    build_backbone({"base": "videomae_tiny", "model": {"num_hidden_layers": 2}}).videomae.save_pretrained(tmp_path)
    with pytest.raises(CheckpointError, match=r"num_hidden_layers is 2 .* \(set 'model\.num_hidden_layers'\)"):
        build_backbone("videomae_tiny", weights=tmp_path)
    with pytest.raises(CheckpointError, match=r"unexpected keys: videomae\.encoder\.layer\.1\."):
        build_backbone("videomae_tiny", weights=tmp_path / "model.safetensors")  # no config.json beside
    other = tmp_path / "wide.safetensors"
    save_file(build_backbone({"base": "i3d_r50_tiny", "model": {"stem_dim_out": 16}}).state_dict(), other)
    with pytest.raises(CheckpointError, match="shape mismatches"):
        build_backbone("i3d_r50_tiny", weights=other)


def test_hf_config_json_must_describe_the_same_architecture(tmp_path):
    # Same tensor shapes, different activation: would load silently without the config check.
    build_backbone({"base": "videomae_tiny", "model": {"hidden_act": "relu"}}).videomae.save_pretrained(tmp_path)
    with pytest.raises(CheckpointError, match="hidden_act is 'relu' in the checkpoint but 'gelu' here"):
        build_backbone("videomae_tiny", weights=tmp_path)
    build_backbone({"base": "xclip_tiny", "frames": 16}).xclip.save_pretrained(tmp_path / "x")
    with pytest.raises(CheckpointError, match=r"vision_config\.num_frames is 16 .* \(set 'frames'\)"):
        build_backbone("xclip_tiny", weights=tmp_path / "x")


def test_missing_keys_are_reported(tmp_path):
    state = build_backbone("i3d_r50_tiny").state_dict()
    state.pop("net.blocks.0.conv.weight")
    save_file(state, tmp_path / "partial.safetensors")
    with pytest.raises(CheckpointError, match=r"1 missing keys: net\.blocks\.0\.conv\.weight"):
        build_backbone("i3d_r50_tiny", weights=tmp_path / "partial.safetensors")


class _Payload:
    pass


def test_pickled_objects_are_refused(tmp_path):
    path = tmp_path / "evil.pth"
    torch.save({"state_dict": _Payload()}, path)
    with pytest.raises(CheckpointError, match="refusing to load"):
        read_state_dict(path)
    with open(path, "wb") as fh:  # a plain (non-zip) pickle stream
        pickle.dump({"state_dict": _Payload()}, fh, protocol=2)
    with pytest.raises(CheckpointError, match="refusing to load"):
        read_state_dict(path)


def test_unsupported_and_corrupt_files(tmp_path):
    (tmp_path / "weights.onnx").write_bytes(b"x")
    with pytest.raises(CheckpointError, match="unsupported weights file type"):
        read_state_dict(tmp_path / "weights.onnx")
    (tmp_path / "bad.safetensors").write_bytes(b"not really")
    with pytest.raises(CheckpointError, match="safetensors"):
        read_state_dict(tmp_path / "bad.safetensors")
