"""The effect of a protection on the generated video, with a tiny runnable Stable Video Diffusion."""
import json

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from mmvgm.attacks.generation import (LATENT_FROM_CALLBACK, LATENT_FROM_VAE, GenerationSettings, call_options,
                                      compare_generations, generate, generation_effects, load_pipeline,
                                      noise_control, parse_size)
from mmvgm.errors import CheckpointError, InputError
from tests.attacks.conftest import random_image
from tests.torch_threads import one_torch_thread
from tests.attacks.i2v_pipelines import svd_video_pipeline

FAST = GenerationSettings(steps=2, frames=2)


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    with one_torch_thread():
        yield


@pytest.fixture(scope="session")
def video_dir(tmp_path_factory):
    return svd_video_pipeline(tmp_path_factory.mktemp("svd-video"))


@pytest.fixture(scope="session")
def pipe(video_dir):
    return load_pipeline(video_dir, device="cpu")


def perturbed(img, levels=6, seed=1):
    noise = np.random.default_rng(seed).integers(-levels, levels + 1, img.shape)
    return np.clip(img.astype(int) + noise, 0, 255).astype(np.uint8)


def test_report_per_frame_latent_control_and_verdict(pipe):
    img = random_image(32, 32, 1)
    prot = perturbed(img)
    rep, = generation_effects(pipe, img, [prot], FAST)
    assert rep["pipeline"] == "StableVideoDiffusionPipeline" and rep["latent_source"] == LATENT_FROM_CALLBACK
    assert rep["eps"] == pytest.approx(np.abs(prot.astype(int) - img).max() / 255)
    assert rep["settings"]["height"] == rep["settings"]["width"] == 32
    assert "prompt" not in rep["settings"]["passed"] and "num_frames" in rep["settings"]["passed"]  # SVD takes none
    for side in ("protected", "control"):
        r = rep[side]
        assert len(r["psnr"]["per_frame"]) == len(r["ssim"]["per_frame"]) == 2
        assert r["psnr"]["mean"] == pytest.approx(np.mean(r["psnr"]["per_frame"]))
        assert 0 < r["latent_distance"] and 0 < r["latent_rmse"]
    assert rep["control"]["kind"].startswith("uniform noise")
    assert rep["beats_control"] == all(rep["beats_control_by"].values())
    assert set(rep["beats_control_by"]) == {"psnr", "ssim", "latent"}


def test_same_image_twice_is_infinite_psnr_and_zero_distance(pipe):
    img = random_image(32, 32, 2)
    rep, = generation_effects(pipe, img, [img.copy()], FAST)
    assert rep["eps"] == 0 and rep["beats_control"] is False
    for side in ("protected", "control"):
        assert rep[side]["psnr"]["mean"] is None and rep[side]["psnr"]["per_frame"] == [None, None]
        assert rep[side]["ssim"]["mean"] == 1.0 and rep[side]["latent_distance"] == 0.0


def test_deterministic_for_a_seed(pipe):
    img = random_image(32, 32, 3)
    a, b = generate(pipe, img, FAST), generate(pipe, img, FAST)
    assert np.array_equal(a.frames, b.frames) and torch.equal(a.latents, b.latents)
    c = generate(pipe, img, GenerationSettings(steps=2, frames=2, seed=1))
    assert not torch.equal(a.latents, c.latents)
    assert a.frames.shape == (2, 32, 32, 3) and a.frames.dtype == np.float32


def test_noise_control_has_the_protections_linf():
    img = random_image(20, 24, 4)
    prot = perturbed(img, levels=4)
    control, eps = noise_control(img, prot, seed=0)
    assert eps == 4 / 255 and control.dtype == np.uint8 and control.shape == img.shape
    assert 0 < np.abs(control.astype(int) - img).max() <= 4
    assert np.array_equal(control, noise_control(img, prot, seed=0)[0])
    assert not np.array_equal(control, noise_control(img, prot, seed=1)[0])
    with pytest.raises(InputError, match="differ in size"):
        noise_control(img, prot[:-1])


class NoCallbacks:
    """A pipeline that exposes no latents: the VAE measures them."""

    def __init__(self, pipe):
        self.pipe, self.vae = pipe, pipe.vae

    def __call__(self, image, num_frames=2, num_inference_steps=2, height=32, width=32, generator=None,
                 output_type="np"):
        return self.pipe(image=image, num_frames=num_frames, num_inference_steps=num_inference_steps,
                         height=height, width=width, generator=generator, output_type=output_type)


def test_vae_latents_when_the_pipeline_exposes_none(pipe):
    img = random_image(32, 32, 5)
    plain = NoCallbacks(pipe)
    a = generate(plain, img, FAST)
    assert a.latent_source == LATENT_FROM_VAE and a.latents.shape == (2, 4, 4, 4)
    cmp = compare_generations(a, generate(plain, img, FAST))
    assert cmp["latent_distance"] == 0.0 and cmp["psnr"]["mean"] is None


def test_options_by_signature():
    class WithPrompt:
        def __call__(self, image, prompt=None, num_inference_steps=50, height=None, width=None):
            pass

    class NoImage:
        def __call__(self, prompt=None):
            pass

    opts = call_options(WithPrompt(), GenerationSettings(prompt="a cat"), 32, 64)
    assert opts == {"prompt": "a cat", "num_inference_steps": 10, "height": 32, "width": 64}
    with pytest.raises(InputError, match="not an image-to-video pipeline"):
        call_options(NoImage(), GenerationSettings(), 32, 32)
    assert GenerationSettings().working_size(333, 517) == (320, 512)
    assert GenerationSettings().working_size(3000, 4000) == (768, 1024)
    assert parse_size("480x832") == (480, 832) and parse_size(None) is None
    with pytest.raises(InputError, match="HEIGHTxWIDTH"):
        parse_size("480")


def test_loading_a_pipeline_draws_no_bar_of_the_libraries(video_dir, capsys):
    # Another loader class than the session's pipe: a fresh load, not the per-process cache.
    load_pipeline(video_dir, "StableVideoDiffusionPipeline", device="cpu")
    err = capsys.readouterr().err
    assert "Loading" not in err and "%|" not in err, err


def test_load_pipeline_errors_and_cache(tmp_path, video_dir, pipe):
    assert load_pipeline(video_dir, device="cpu") is pipe
    with pytest.raises(CheckpointError, match="not found"):
        load_pipeline(tmp_path / "nowhere")
    with pytest.raises(CheckpointError, match="no model_index.json"):
        load_pipeline(tmp_path)


def run_cli(*args):
    from mmvgm.cli import cli

    return CliRunner().invoke(cli, [str(a) for a in args])


def test_cli_pipeline_json_and_table(tmp_path, video_dir):
    img = random_image(32, 32, 6)
    Image.fromarray(img).save(tmp_path / "a.png")
    Image.fromarray(perturbed(img)).save(tmp_path / "b.png")
    Image.fromarray(perturbed(img, seed=2)).save(tmp_path / "c.png")
    common = ("protect-eval", tmp_path / "a.png", tmp_path / "b.png", "--pipeline", video_dir, "--purify", "jpeg:75",
              "--steps", "2", "--frames", "2", "-q")
    res = run_cli(*common, "--json", "--report", tmp_path / "r.json")
    assert res.exit_code == 0, res.output
    data = json.loads(res.stdout)
    gen = data["generation"]
    assert gen["pipeline_path"] == str(video_dir) and len(gen["protected"]["psnr"]["per_frame"]) == 2
    assert {"protected", "control", "beats_control", "latent_source", "eps"} <= set(gen)
    assert [r["purification"] for r in data["results"]] == ["none", "jpeg:75"]
    assert json.loads((tmp_path / "r.json").read_text()) == data
    res = run_cli(*common, "--compare", tmp_path / "c.png")
    assert res.exit_code == 0, res.output
    assert "beats the control" in res.stdout and "compare: generated video" in res.stdout
    assert "per-frame PSNR" in res.stdout and "compare" in res.stdout.splitlines()[1]
    res = run_cli(*common, "--size", "32")
    assert res.exit_code != 0 and "HEIGHTxWIDTH" in res.stderr and len(res.stderr.strip().splitlines()) == 1
    res = run_cli("protect-eval", tmp_path / "a.png", tmp_path / "b.png", "--pipeline", tmp_path / "none")
    assert res.exit_code != 0 and "pipeline folder not found" in res.stderr and "Traceback" not in res.output
