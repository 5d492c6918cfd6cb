"""Encoders of today's image-to-video pipelines, on tiny random pipeline folders.

Each encoder is checked against its diffusers pipeline's own preprocessing (the pipeline loaded
from the same folder, its image-preparation methods, then ``vae.encode`` / the image encoder).
"""
import json

import numpy as np
import pytest
import torch
from PIL import Image

from mmvgm.attacks import protect
from mmvgm.attacks.encoders import PIPELINE_ENCODERS, build_encoder, guess_encoder
from mmvgm.attacks.i2v import cover_crop, fit_area, working_size
from mmvgm.errors import CheckpointError, InputError
from tests.attacks.conftest import random_image
from tests.attacks.i2v_pipelines import CLIP_SIZE, make_pipelines

SMALL = {"max_area": 32 * 48}  # keeps the tiny VAEs at 32-48 px
KEYS = {"wan": {"clip", "vae"}, "wan22": {"vae"}, "cogvideox": {"vae"}, "ltx": {"vae"}, "i2vgen": {"clip", "vae"},
        "svd": {"clip", "vae"}}
ENCODER = {"wan": "wan", "wan22": "wan", "cogvideox": "cogvideox", "ltx": "ltx", "i2vgen": "i2vgen", "svd": "svd"}


@pytest.fixture(scope="session")
def pipes(tmp_path_factory):
    return make_pipelines(tmp_path_factory.mktemp("i2v"))


@pytest.fixture(scope="session")
def encoders(pipes):
    return {k: build_encoder("auto", model_path=p, device="cpu", vae_max_side=64, **SMALL) for k, p in pipes.items()}


@pytest.fixture(autouse=True)
def posterior_mode(monkeypatch):
    """The pipelines sample the VAE posterior; the encoders use its mode. Comparing them needs the
    pipeline to take the mode too (a random VAE's posterior is wide)."""
    from diffusers.models.autoencoders.vae import DiagonalGaussianDistribution

    monkeypatch.setattr(DiagonalGaussianDistribution, "sample", lambda self, generator=None: self.mode())


def _pipeline(folder, cls_name, **components):
    import diffusers

    return getattr(diffusers, cls_name).from_pretrained(folder, text_encoder=None, tokenizer=None, **components)


def _exact(a, b):
    a, b = a.flatten(1).float(), b.flatten(1).float()
    return float((a - b).abs().max() / b.abs().max()) < 1e-4


def _cos(a, b):
    return float(torch.nn.functional.cosine_similarity(a.flatten(1).float(), b.flatten(1).float()).min())


def smooth_image(h, w, seed=0):
    """A photo-like image without pixel noise: resampling kernels (PIL's and torch's) agree on it."""
    import cv2

    base = np.random.default_rng(seed).integers(0, 256, (4, 5, 3), dtype=np.uint8)
    return cv2.resize(base, (w, h), interpolation=cv2.INTER_CUBIC)


def as_tensor(u8):
    return torch.from_numpy(u8).permute(2, 0, 1)[None].float() / 255


@pytest.mark.parametrize("name", list(KEYS))
def test_each_encoder_gives_finite_embeddings_and_pixel_gradients(encoders, name):
    enc = encoders[name]
    for h, w in ((37, 53), (64, 30)):
        x = torch.rand(2, 3, h, w, requires_grad=True)
        out = enc(x)
        assert set(out) == KEYS[name] and all(v.shape[0] == 2 and torch.isfinite(v).all() for v in out.values())
        sum(v.square().sum() for v in out.values()).backward()
        assert x.grad is not None and x.grad.abs().sum() > 0 and torch.isfinite(x.grad).all()


@pytest.mark.parametrize("name", list(KEYS))
def test_auto_and_no_encoder_pick_from_model_index(pipes, name):
    assert guess_encoder(pipes[name]) == ENCODER[name]
    assert PIPELINE_ENCODERS[json.loads((pipes[name] / "model_index.json").read_text())["_class_name"]] == ENCODER[name]


def test_unsupported_pipeline_is_one_line_input_error(pipes, tmp_path):
    folder = tmp_path / "sd"
    (folder / "vae").mkdir(parents=True)
    (folder / "model_index.json").write_text(json.dumps({"_class_name": "StableDiffusionPipeline",
                                                         "vae": ["diffusers", "AutoencoderKL"]}))
    for spec in ("auto", None):
        with pytest.raises(InputError) as err:
            build_encoder(spec, model_path=folder)
        msg = str(err.value)
        assert "\n" not in msg and "StableDiffusionPipeline" in msg
        assert all(cls in msg for cls in ("WanImageToVideoPipeline", "CogVideoXImageToVideoPipeline",
                                          "I2VGenXLPipeline", "LTXImageToVideoPipeline",
                                          "StableVideoDiffusionPipeline"))
    with pytest.raises(InputError, match="no model_index.json"):
        build_encoder("auto", model_path=pipes["wan"] / "vae")
    with pytest.raises(CheckpointError, match="not found"):
        build_encoder("auto", model_path=tmp_path / "nowhere")


def test_wrong_or_missing_folders_are_one_line_checkpoint_errors(pipes, tmp_path):
    with pytest.raises(CheckpointError) as err:
        build_encoder("wan", model_path=pipes["cogvideox"])
    assert "AutoencoderKLCogVideoX, not AutoencoderKLWan" in str(err.value) and "\n" not in str(err.value)
    with pytest.raises(CheckpointError, match="missing vae/"):
        build_encoder("ltx", model_path=tmp_path)
    for name, repo in (("wan", "Wan-AI/"), ("cogvideox", "CogVideoX"), ("ltx", "Lightricks/"), ("i2vgen", "i2vgen")):
        with pytest.raises(CheckpointError, match=repo):
            build_encoder(name, model_path=None)
    (tmp_path / "vae").mkdir()
    (tmp_path / "vae" / "config.json").write_text(json.dumps({"_class_name": "AutoencoderKLLTXVideo"}))
    with pytest.raises(CheckpointError, match="cannot load the AutoencoderKLLTXVideo"):
        build_encoder("ltx", model_path=tmp_path)


def test_working_size_rules():
    assert fit_area(768, 1024, 480 * 832, 16) == (544, 720)  # the Wan example's max_area rule
    assert fit_area(480, 832, 480 * 832, 16) == (480, 832)
    assert fit_area(1, 4000, 480 * 832, 16)[0] == 16  # never below one multiple
    assert working_size(100, 16, height=500, width=300)(7, 9) == (496, 288)  # pinned, floored to the multiple
    assert working_size(100, 16, max_area="720*1280")(720, 1280) == (720, 1280)
    for options, words in (({"height": 32}, "both height and width"), ({"height": 8, "width": 32}, "at least 16"),
                           ({"max_area": "big"}, "max_area must be an integer")):
        with pytest.raises(InputError, match=words):
            working_size(100, 16, **options)
    x = torch.arange(6 * 8.0).view(1, 1, 6, 8)
    assert torch.equal(cover_crop(x, (6, 6)), x[..., 1:7])  # the centre, as _center_crop_wide takes it


def test_wan_latent_is_the_pipelines_first_latent_frame(pipes):
    pipe = _pipeline(pipes["wan"], "WanImageToVideoPipeline", transformer=None)
    enc = build_encoder("wan", model_path=pipes["wan"], height=32, width=48)
    img = torch.rand(1, 3, 32, 48)
    pix = pipe.video_processor.preprocess(img, height=32, width=48)
    with torch.no_grad():
        _, cond = pipe.prepare_latents(pix, 1, 4, 32, 48, num_frames=5, dtype=torch.float32, device="cpu")
        ours = enc.parts["vae"].encode(img)["vae"]
    assert ours.shape == (1, 4, 1, 4, 6)
    assert _exact(ours, cond[:, 4:, :1])  # after the 4 mask channels, frame 0 (Wan's VAE is causal)
    # another size: the pipeline's PIL lanczos resize vs the encoder's antialiased bicubic
    for h, w in ((45, 70), (20, 30)):
        u8 = smooth_image(h, w, 1)
        pix = pipe.video_processor.preprocess(Image.fromarray(u8), height=32, width=48)
        with torch.no_grad():
            _, cond = pipe.prepare_latents(pix, 1, 4, 32, 48, num_frames=1, dtype=torch.float32, device="cpu")
            ours = enc.parts["vae"].encode(as_tensor(u8))["vae"]
        assert _cos(ours, cond[:, 4:]) > 0.999, (h, w)


def test_wan_clip_is_encode_image(pipes, encoders):
    pipe = _pipeline(pipes["wan"], "WanImageToVideoPipeline", transformer=None)
    for h, w in ((CLIP_SIZE, CLIP_SIZE), (40, 61), (80, 100)):  # same size: exact; resized: close
        u8 = random_image(h, w, 2) if h == CLIP_SIZE else smooth_image(h, w, 2)
        with torch.no_grad():
            expected = pipe.encode_image(Image.fromarray(u8), "cpu")  # hidden_states[-2]
            ours = encoders["wan"].parts["clip"].encode(as_tensor(u8))["clip"]
        assert ours.shape == expected.shape
        assert _exact(ours, expected) if h == CLIP_SIZE else _cos(ours, expected) > 0.999, (h, w)


def test_cogvideox_latent_is_prepare_latents(pipes):
    from diffusers import CogVideoXTransformer3DModel

    tiny = CogVideoXTransformer3DModel(num_attention_heads=1, attention_head_dim=16, in_channels=8, out_channels=4,
                                       time_embed_dim=8, text_embed_dim=8, num_layers=1, sample_width=6,
                                       sample_height=4, sample_frames=1, max_text_seq_length=4)
    pipe = _pipeline(pipes["cogvideox"], "CogVideoXImageToVideoPipeline", transformer=tiny)
    enc = build_encoder("cogvideox", model_path=pipes["cogvideox"], height=32, width=48)
    img = torch.rand(2, 3, 32, 48)
    pix = pipe.video_processor.preprocess(img, height=32, width=48)
    with torch.no_grad():
        _, image_latents = pipe.prepare_latents(pix, 2, 4, 5, 32, 48, torch.float32, "cpu")
        ours = enc(img)["vae"]
    assert _exact(ours, image_latents[:, :1].permute(0, 2, 1, 3, 4))  # [B, F, C, H, W] -> frame 0


def test_ltx_latent_is_prepare_latents(pipes):
    pipe = _pipeline(pipes["ltx"], "LTXImageToVideoPipeline", transformer=None)
    enc = build_encoder("ltx", model_path=pipes["ltx"], height=32, width=64)
    img = torch.rand(2, 3, 32, 64)
    pix = pipe.video_processor.preprocess(img, height=32, width=64)
    with torch.no_grad():
        packed, _ = pipe.prepare_latents(pix, 2, 8, 32, 64, num_frames=1, dtype=torch.float32, device="cpu",
                                         generator=torch.Generator().manual_seed(0))
        ours = enc.parts["vae"].encode(img)["vae"]  # (B, C, 1, H, W)
    assert _exact(ours.permute(0, 2, 3, 4, 1).reshape(2, -1, 8), packed)  # tokens of patch size 1


def test_i2vgen_is_the_pipelines_crops_and_latents(pipes, encoders):
    from diffusers.pipelines.deprecated.i2vgen_xl.pipeline_i2vgen_xl import _center_crop_wide, _resize_bilinear

    pipe = _pipeline(pipes["i2vgen"], "I2VGenXLPipeline", unet=None)
    pipe._guidance_scale = 1.0  # set by __call__; _encode_image reads it (no classifier-free copy)
    enc = build_encoder("i2vgen", model_path=pipes["i2vgen"], height=32, width=48)
    for h, w in ((32, 48), (64, 96), (45, 58)):  # at the working size: the VAE input is exact; else resized
        u8 = smooth_image(h, w, 3)
        image = Image.fromarray(u8)
        crop = pipe.feature_extractor.crop_size
        square = _resize_bilinear(_center_crop_wide(image, (48, 48)), (crop["width"], crop["height"]))
        pix = pipe.video_processor.preprocess(_center_crop_wide(image, (48, 32)))
        with torch.no_grad():
            clip = pipe._encode_image(square, "cpu", 1)
            latents = pipe.prepare_image_latents(pix, "cpu", num_frames=1, num_videos_per_prompt=1)
            ours = enc(as_tensor(u8))
        assert _exact(ours["vae"], latents) if (h, w) == (32, 48) else _cos(ours["vae"], latents) > 0.995, (h, w)
        assert _cos(ours["clip"], clip[:, 0]) > 0.999, (h, w)  # the pipeline resizes twice (box, then bilinear)


@pytest.mark.parametrize("name", ["wan", "wan22", "cogvideox", "ltx", "i2vgen", "svd"])
@pytest.mark.parametrize("directed", [False, True])
def test_protect_moves_each_encoders_cosines_within_the_saved_budget(encoders, name, directed, fast_config, tmp_path):
    img, tgt = random_image(32, 40, 4), random_image(30, 44, 5)
    out, rep = protect(img, encoders[name], eps="4/255", steps=3, target=tgt if directed else None,
                       config=str(fast_config))
    Image.fromarray(out).save(tmp_path / "p.png")
    saved = np.asarray(Image.open(tmp_path / "p.png").convert("RGB"))
    assert saved.shape == img.shape and 0 < np.abs(saved.astype(int) - img.astype(int)).max() <= 4
    assert set(rep["encoders"]) == KEYS[name]
    for c in rep["encoders"].values():
        assert (c["cos_after"] > c["cos_before"]) if directed else (c["cos_after"] < c["cos_before"])


def test_cli_protect_with_encoder_auto(pipes, fast_config, tmp_path):
    from click.testing import CliRunner

    from mmvgm.cli import cli

    cfg = tmp_path / "small.yaml"
    cfg.write_text(f"base: {fast_config}\nencoder_options:\n  max_area: 1536\n")
    Image.fromarray(random_image(40, 56, 6)).save(tmp_path / "a.png")
    res = CliRunner().invoke(cli, ["protect", str(tmp_path / "a.png"), "--encoder", "auto", "-m", str(pipes["wan"]),
                                   "--config", str(cfg), "--steps", "3", "--json", "-q"])
    assert res.exit_code == 0, res.output
    rep = json.loads(res.stdout.strip().splitlines()[-1])
    assert set(rep["encoders"]) == {"clip", "vae"}
    saved = np.asarray(Image.open(tmp_path / "a.protected.png").convert("RGB"))
    assert np.abs(saved.astype(int) - random_image(40, 56, 6).astype(int)).max() <= 4


def test_a_hub_id_needs_only_the_encoders_components(pipes, tmp_path, monkeypatch):
    """Offline, from a Hugging Face cache holding model_index.json and the encoder's folders alone
    (no transformer, scheduler or text encoder): ``auto`` and no encoder both work."""
    import huggingface_hub
    from huggingface_hub import constants

    from tests.hf_cache import add_repo

    files = [p.relative_to(pipes["wan"]).as_posix() for p in pipes["wan"].rglob("*") if p.is_file()]
    add_repo(tmp_path, "org/i2v-encoders-wan", pipes["wan"], only=[f for f in files if not f.startswith("scheduler/")])
    monkeypatch.setattr(huggingface_hub, "is_offline_mode", lambda: True)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path))
    assert guess_encoder("org/i2v-encoders-wan") == "wan"
    enc = build_encoder("auto", model_path="org/i2v-encoders-wan", **SMALL)
    assert set(enc(torch.rand(1, 3, 32, 40))) == {"clip", "vae"}
