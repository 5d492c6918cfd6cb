import json

import pytest
import torch
from torch import nn

from mmvgm.attacks.encoders import (SVD_REPO, ImageEncoder, ModuleEncoder, build_encoder, guess_encoder,
                                    list_encoders, register_encoder, vae_size)
from mmvgm.errors import CheckpointError, InputError


def test_registry_lists_builtins():
    assert {"svd", "clip", "vae", "timm"} <= set(list_encoders())


def test_svd_folder_gives_clip_and_vae_embeddings_for_any_size(svd_encoder):
    for h, w in ((33, 51), (64, 17), (40, 40)):
        x = torch.rand(2, 3, h, w, requires_grad=True)
        out = svd_encoder(x)
        assert set(out) == {"clip", "vae"}
        assert out["clip"].shape == (2, 16)
        (out["clip"].sum() + out["vae"].sum()).backward()
        assert x.grad is not None and x.grad.abs().sum() > 0  # differentiable end to end


def test_svd_clip_matches_the_diffusers_preprocessing(svd_dir, svd_encoder):
    """SVD resizes the whole image to 224 (here the tiny 32) and normalises with CLIP mean/std."""
    import torch.nn.functional as F
    from transformers import CLIPVisionModelWithProjection

    model = CLIPVisionModelWithProjection.from_pretrained(svd_dir / "image_encoder", local_files_only=True).eval()
    cfg = json.loads((svd_dir / "feature_extractor" / "preprocessor_config.json").read_text())
    x = torch.rand(1, 3, 48, 80)
    pix = F.interpolate(x, size=(32, 32), mode="bilinear", align_corners=False, antialias=True)
    pix = (pix - torch.tensor(cfg["image_mean"]).view(1, 3, 1, 1)) / torch.tensor(cfg["image_std"]).view(1, 3, 1, 1)
    with torch.no_grad():
        expected = model(pixel_values=pix).image_embeds
        got = svd_encoder(x)["clip"]
    assert torch.allclose(got, expected, atol=1e-5)


def test_svd_vae_noise_only_when_stochastic(svd_encoder):
    x = torch.rand(1, 3, 32, 32)
    with torch.no_grad():
        a, b = svd_encoder(x)["vae"], svd_encoder(x)["vae"]
        assert not torch.equal(a, b)  # sigma=0.02 conditioning noise
        svd_encoder.stochastic = False
        try:
            c, d = svd_encoder(x)["vae"], svd_encoder(x)["vae"]
        finally:
            svd_encoder.stochastic = True
    assert torch.equal(c, d)


def test_vae_size_keeps_aspect_and_multiple():
    assert vae_size(333, 517) == (336, 520)
    assert vae_size(2000, 1000, max_side=1024) == (1024, 512)
    assert vae_size(3, 5) == (8, 8)


def test_missing_model_path_says_what_to_download(tmp_path):
    with pytest.raises(CheckpointError) as err:
        build_encoder("svd", model_path=None)
    msg = str(err.value)
    assert all(s in msg for s in ("image_encoder/", "feature_extractor/", "vae/", SVD_REPO, "--model-path"))
    assert "\n" not in msg
    with pytest.raises(CheckpointError, match="not found"):
        build_encoder("svd", model_path=tmp_path / "nope")
    with pytest.raises(CheckpointError, match="missing image_encoder/"):
        build_encoder("svd", model_path=tmp_path)


def test_clip_and_vae_encoders_from_their_folders(svd_dir):
    clip = build_encoder("clip", model_path=svd_dir / "image_encoder")
    assert set(clip(torch.rand(1, 3, 20, 30))) == {"clip"}
    vae = build_encoder("vae", model_path=svd_dir, vae_max_side=32)  # a pipeline folder with vae/
    assert set(vae(torch.rand(1, 3, 20, 30))) == {"vae"}
    assert guess_encoder(svd_dir) == "svd"
    assert guess_encoder(svd_dir / "image_encoder") == "clip"
    assert guess_encoder(svd_dir / "vae") == "vae"


def test_unknown_encoder_and_timm_without_weights(tmp_path):
    with pytest.raises(InputError, match="unknown encoder 'nope'"):
        build_encoder("nope")
    with pytest.raises(CheckpointError, match="needs --model-path"):
        build_encoder("timm:test_resnet")


def test_timm_encoder_from_local_checkpoint(tmp_path):
    import timm
    from safetensors.torch import save_file

    model = timm.create_model("test_resnet", pretrained=False)  # with its classifier, as users save it
    save_file(model.state_dict(), str(tmp_path / "w.safetensors"))
    enc = build_encoder("timm:test_resnet", model_path=tmp_path / "w.safetensors")
    out = enc(torch.rand(1, 3, 50, 70))
    assert list(out) == ["timm:test_resnet"] and out["timm:test_resnet"].ndim == 2
    save_file({"nonsense": torch.zeros(1)}, str(tmp_path / "bad.safetensors"))
    with pytest.raises(CheckpointError, match="does not match"):
        build_encoder("timm:test_resnet", model_path=tmp_path / "bad.safetensors")


def test_any_module_and_registering_a_new_encoder():
    net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten())
    enc = build_encoder(net)
    assert isinstance(enc, ModuleEncoder)
    assert enc(torch.rand(2, 3, 9, 13))["module"].shape == (2, 4)

    @register_encoder("unit-test-encoder")
    def _factory(model_path=None, **_):
        return ModuleEncoder(nn.Flatten(), name="flat")

    assert "unit-test-encoder" in list_encoders()
    assert set(build_encoder("unit-test-encoder")(torch.rand(1, 3, 2, 2))) == {"flat"}
    with pytest.raises(InputError, match=r"\(B,3,H,W\)"):
        enc(torch.rand(3, 8, 8))


def test_timm_checkpoint_of_other_shapes_is_a_checkpoint_error(tmp_path):
    import timm
    from safetensors.torch import save_file

    state = dict(timm.create_model("test_resnet", pretrained=False).state_dict())
    key = next(k for k in state if k.endswith("conv1.weight") and k != "conv1.weight")
    state[key] = torch.zeros(3, *state[key].shape[1:])  # same keys, another width
    save_file(state, str(tmp_path / "w.safetensors"))
    with pytest.raises(CheckpointError, match="does not match.*shape"):
        build_encoder("timm:test_resnet", model_path=tmp_path / "w.safetensors")
    (tmp_path / "junk.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError) as info:  # unreadable, not "does not match"
        build_encoder("timm:test_resnet", model_path=tmp_path / "junk.pth")
    assert "does not match" not in info.value.message
