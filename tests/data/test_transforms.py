from __future__ import annotations

import numpy as np
import pytest
import torch

from mmvgm.data.transforms import (CLIP_MEAN, CLIP_STD, PRESETS, VideoTransform, from_timm_data_config)
from mmvgm.errors import ConfigError
from tests.media import make_frames


@pytest.fixture(scope="module")
def frames() -> np.ndarray:
    """240x320 frames with natural-ish texture: smooth gradients, edges and sensor noise."""
    base = make_frames(8, 240, 320, seed=3).astype(np.float64)
    yy, xx = np.mgrid[0:240, 0:320]
    texture = 50 * np.sin(xx / 9.0) * np.cos(yy / 13.0) + 0.3 * xx - 0.2 * yy
    noise = np.random.default_rng(0).normal(0, 12, size=base.shape)
    return np.clip(base + texture[None, :, :, None] + noise, 0, 255).astype(np.uint8)


def _hf(processor, frames: np.ndarray) -> torch.Tensor:
    return processor(list(frames), return_tensors="pt")["pixel_values"][0]


@pytest.mark.parametrize("backend", ["torchvision", "pil"])
def test_videomae_matches_hf_processor(frames, backend):
    from transformers import VideoMAEImageProcessor
    from transformers.models.videomae.image_processing_pil_videomae import VideoMAEImageProcessorPil

    processor = (VideoMAEImageProcessor if backend == "torchvision" else VideoMAEImageProcessorPil)()
    ref = _hf(processor, frames)
    ours = VideoTransform.preset("videomae")(frames)
    assert ours.shape == ref.shape == (8, 3, 224, 224)
    assert (ours - ref).abs().mean().item() < 0.01


@pytest.mark.parametrize("resample, pil_code", [("bilinear", 2), ("bicubic", 3)])
def test_xclip_matches_hf_processor_built_from_config(frames, resample, pil_code):
    from transformers import CLIPTokenizer, VideoMAEImageProcessor, XCLIPProcessor

    # the preprocessor_config.json of microsoft/xclip-base-patch32, without the hub
    config = {"do_resize": True, "size": 224, "do_center_crop": True, "crop_size": 224, "do_normalize": True,
              "image_mean": list(CLIP_MEAN), "image_std": list(CLIP_STD), "resample": pil_code}
    tokenizer = CLIPTokenizer(vocab={"<|startoftext|>": 0, "<|endoftext|>": 1, "a</w>": 2}, merges=[])
    processor = XCLIPProcessor(image_processor=VideoMAEImageProcessor(**config), tokenizer=tokenizer)
    ref = processor(text=["a"], videos=list(frames), return_tensors="pt")["pixel_values"][0]
    ours = VideoTransform.preset("xclip", resample=resample)(frames[None])[0]  # batched input
    assert ours.shape == ref.shape == (8, 3, 224, 224)
    assert (ours - ref).abs().mean().item() < 0.01


def test_portrait_and_small_frames_follow_hf_geometry():
    from transformers import VideoMAEImageProcessor

    for h, w in ((320, 240), (100, 150)):  # portrait; smaller than the crop -> upscaled
        clip = make_frames(2, h, w, seed=1)
        ref = _hf(VideoMAEImageProcessor(), clip)
        assert (VideoTransform.preset("videomae")(clip) - ref).abs().mean().item() < 0.01


def test_crop_larger_than_frame_pads_like_hf():
    from transformers import VideoMAEImageProcessor

    clip = make_frames(2, 40, 60, seed=2)
    ref = _hf(VideoMAEImageProcessor(do_resize=False), clip)
    ours = VideoTransform(resize_shortest=None, crop=224, mean=[0.5] * 3, std=[0.5] * 3)(clip)
    assert ours.shape == ref.shape
    assert (ours - ref).abs().max().item() < 1e-5


def test_geometric_is_batched_uint8_and_equals_per_clip(frames):
    t = VideoTransform.preset("i3d")
    batch = torch.from_numpy(np.stack([frames[:4], frames[4:]]))  # (B,T,H,W,C) uint8
    out = t.geometric(batch)
    assert out.dtype == torch.uint8 and out.shape == (2, 4, 3, 224, 224)
    assert torch.equal(out[1], t.geometric(frames[4:]))
    # channels-first input gives the same result
    assert torch.equal(out, t.geometric(batch.permute(0, 1, 4, 2, 3)))
    normed = t.normalize(out)
    assert normed.dtype == torch.float32 and normed.shape == out.shape
    expected = (out[0, 0, 1].float() / 255 - 0.45) / 0.225
    assert torch.allclose(normed[0, 0, 1], expected, atol=1e-5)


def test_normalize_refuses_float_and_wrong_channels():
    t = VideoTransform.preset("videomae")
    with pytest.raises(TypeError, match="uint8"):
        t.normalize(torch.zeros(1, 3, 8, 8))
    with pytest.raises(ConfigError, match="4 channels"):
        t.normalize(torch.zeros(1, 4, 8, 8, dtype=torch.uint8))


def test_four_channel_transform():
    t = VideoTransform(resize_shortest=None, crop=8, mean=[0.0] * 4, std=[1.0] * 4)
    x = torch.randint(0, 255, (2, 3, 4, 16, 16), dtype=torch.uint8)
    assert t(x, layout="channels_first").shape == (2, 3, 4, 8, 8)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_cpu(frames):
    t = VideoTransform.preset("videomae")
    cpu = t(frames)
    gpu = t(torch.from_numpy(frames).cuda())
    assert gpu.device.type == "cuda"
    assert (gpu.cpu() - cpu).abs().mean().item() < 0.01


def test_from_config_presets_overrides_and_errors():
    for name in PRESETS:
        t = VideoTransform.from_config(name)
        assert VideoTransform.from_config(t.to_config()).to_config() == t.to_config()
    t = VideoTransform.from_config({"preset": "xclip", "crop": [112, 160], "resample": 3})
    assert t.crop == (112, 160) and t.resample == "bicubic" and t.mean == tuple(CLIP_MEAN)
    with pytest.raises(ConfigError, match="did you mean 'resize_shortest'"):
        VideoTransform.from_config({"preset": "videomae", "resize_shortes": 10})
    with pytest.raises(ConfigError, match="unknown preprocess preset"):
        VideoTransform.from_config("videomea")
    with pytest.raises(ConfigError, match="'mean' is required"):
        VideoTransform.from_config({"resize_shortest": 10, "crop": 8})
    with pytest.raises(ConfigError, match="resample"):
        VideoTransform.from_config({"preset": "timm", "resample": "lanczos5"})
    with pytest.raises(ConfigError, match="crop"):
        VideoTransform.from_config({"preset": "timm", "crop": -1})


def test_from_timm_data_config_matches_timm_eval_transform(frames):
    import timm
    from PIL import Image
    from timm.data import create_transform, resolve_data_config

    model = timm.create_model("resnet18", pretrained=False, num_classes=0)
    data_config = resolve_data_config({}, model=model)
    t = from_timm_data_config(data_config)
    assert t.crop == (224, 224) and t.resample == data_config["interpolation"]
    reference = create_transform(**data_config, is_training=False)
    ref = torch.stack([reference(Image.fromarray(f)) for f in frames[:2]])
    assert (t(frames[:2]) - ref).abs().mean().item() < 0.01


def test_pixel_statistics_follow_a_saved_hf_processor(frames, tmp_path):
    """A VideoMAE processor saved with non-default statistics: the transform built from the
    preprocessor_config.json it writes gives the processor's own pixels."""
    import json

    from transformers import VideoMAEImageProcessor

    from mmvgm.data.transforms import HF_PROCESSOR_FILE, pixel_statistics_from_hf_processor

    processor = VideoMAEImageProcessor(image_mean=list(CLIP_MEAN), image_std=list(CLIP_STD), resample=3)
    processor.save_pretrained(tmp_path)
    stats = pixel_statistics_from_hf_processor(tmp_path / HF_PROCESSOR_FILE)
    assert stats["resample"] == "bicubic" and stats["mean"] == pytest.approx(list(CLIP_MEAN))
    ours = VideoTransform.from_config({"preset": "videomae", **stats})(frames)
    assert (ours - _hf(processor, frames)).abs().mean().item() < 0.01

    (tmp_path / "plain.json").write_text(json.dumps({"do_normalize": False, "image_mean": 0.5, "do_rescale": False}))
    assert pixel_statistics_from_hf_processor(tmp_path / "plain.json") == {
        "mean": [0.0, 0.0, 0.0], "std": [1.0, 1.0, 1.0], "rescale": 1.0}
    (tmp_path / "scalar.json").write_text(json.dumps({"image_mean": 0.5, "image_std": 0.25}))
    assert pixel_statistics_from_hf_processor(tmp_path / "scalar.json") == {"mean": [0.5] * 3, "std": [0.25] * 3}


@pytest.mark.parametrize("text, match", [("{not json", "cannot read"), ("[1, 2]", "not a JSON object"),
                                         ('{"resample": 1}', "unsupported PIL resample code 1"),
                                         ('{"image_mean": "red"}', "image_mean")])
def test_unreadable_hf_processor_config_is_a_config_error(tmp_path, text, match):
    from mmvgm.data.transforms import pixel_statistics_from_hf_processor

    path = tmp_path / "preprocessor_config.json"
    path.write_text(text)
    with pytest.raises(ConfigError, match=match):
        pixel_statistics_from_hf_processor(path)


@pytest.mark.parametrize("mode", ["bilinear", "bicubic", "nearest"])
@pytest.mark.parametrize("size", [(224, 298), (17, 23), (480, 640), (240, 320)])
def test_resize_uint8_gives_torchvisions_pixels(frames, mode, size):
    from torchvision.transforms.v2 import functional as tvF

    from mmvgm.data.transforms import resize_uint8

    x = torch.from_numpy(frames[:3]).permute(0, 3, 1, 2)  # channels-last memory, as clips arrive
    ref = tvF.resize(x, list(size), interpolation=tvF.InterpolationMode(mode), antialias=True)
    ours = resize_uint8(x, size, mode)
    assert ours.dtype == torch.uint8 and ours.shape == ref.shape
    assert torch.equal(ours, ref)


def test_resize_uint8_on_the_float_path_gives_torchvisions_pixels(frames, monkeypatch):
    """Where torch has no vectorised uint8 bilinear kernel, both resize in float and round."""
    from torchvision.transforms.v2 import functional as tvF

    import mmvgm.data.transforms as transforms

    x = torch.from_numpy(frames[:2]).permute(0, 3, 1, 2).contiguous()
    ref = tvF.resize(x.float(), [100, 133], antialias=True).round_().to(torch.uint8)
    monkeypatch.setattr(transforms, "_native_uint8_resize", lambda x, mode: False)
    assert torch.equal(transforms.resize_uint8(x, (100, 133), "bilinear"), ref)


def test_preprocessing_imports_no_torchvision():
    import subprocess
    import sys

    code = ("import sys, mmvgm.data.transforms as t, numpy as np; "
            "t.VideoTransform.preset('timm')(np.zeros((2, 40, 50, 3), np.uint8)); "
            "print('torchvision' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"
