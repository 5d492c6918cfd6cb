"""Hub ids on the command line, offline against a real Hugging Face cache layout.

Each run is a fresh ``mmvgm`` process with ``HF_HUB_OFFLINE=1`` and ``HF_HUB_CACHE`` pointing
at a cache this module builds, so the hub client reads them as it does for users.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from mmvgm.cli import cli
from tests.attacks.conftest import make_svd_dir, random_image
from tests.engine.synthetic import make_dataset
from tests.hf_cache import add_repo
from tests.inference_helpers import make_checkpoint, make_videos

REPO_ROOT = Path(__file__).resolve().parents[2]
SVD_INDEX = {"_class_name": "StableVideoDiffusionPipeline", "feature_extractor": ["transformers", "CLIPImageProcessor"],
             "image_encoder": ["transformers", "CLIPVisionModelWithProjection"],
             "scheduler": ["diffusers", "EulerDiscreteScheduler"],
             "unet": ["diffusers", "UNetSpatioTemporalConditionModel"],
             "vae": ["diffusers", "AutoencoderKLTemporalDecoder"]}


@pytest.fixture(scope="module")
def hub(tmp_path_factory):
    from mmvgm.models import build_backbone
    from tests.lvd.conftest import build_tiny_animatediff

    root = tmp_path_factory.mktemp("hub")
    cache = root / "cache"
    src = root / "src"
    build_backbone("videomae_tiny").videomae.save_pretrained(src / "videomae")
    add_repo(cache, "org/videomae-tiny", src / "videomae")
    svd = make_svd_dir(src / "svd")
    (svd / "model_index.json").write_text(json.dumps(SVD_INDEX))  # no unet: an encoder never needs it
    add_repo(cache, "org/svd-tiny", svd)
    add_repo(cache, "org/mmvgm-tiny", make_checkpoint(src / "mmvgm", "joint", seed=1))
    add_repo(cache, "org/tiny-animatediff", build_tiny_animatediff(src / "t2v"))
    return {"root": root, "cache": cache, "src": src, "videos": make_videos(root / "videos", 1, frames=12)}


def mmvgm(hub, *args, cwd=None, code=None):
    env = dict(os.environ, HF_HUB_OFFLINE="1", HF_HUB_CACHE=str(hub["cache"]), MMVGM_THREADS="1")
    command = [sys.executable, "-c", code] if code else [sys.executable, "-m", "mmvgm", *map(str, args)]
    return subprocess.run(command, env=env, cwd=cwd or REPO_ROOT, capture_output=True, text=True, timeout=300)


def trace_json(result) -> dict:
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.splitlines()[0])


def test_trace_with_a_cached_checkpoint_id_equals_the_local_folder(hub):
    local = CliRunner().invoke(cli, ["trace", str(hub["videos"][0]), "-c", str(hub["src"] / "mmvgm"), "--json"])
    expected = json.loads(local.output.splitlines()[0])
    got = trace_json(mmvgm(hub, "trace", hub["videos"][0], "--checkpoint", "org/mmvgm-tiny", "--json"))
    assert got["fake_probability"] == pytest.approx(expected["fake_probability"], abs=1e-6)
    assert got["sources"] == pytest.approx(expected["sources"], abs=1e-6)


def test_an_id_not_in_the_cache_is_one_line(hub):
    result = mmvgm(hub, "trace", hub["videos"][0], "--checkpoint", "org/not-cached")
    assert result.returncode != 0 and "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "org/not-cached" in lines[0] and "hf download org/not-cached" in lines[0]


def test_a_local_folder_named_like_the_id_wins(hub, tmp_path):
    make_checkpoint(tmp_path / "org" / "mmvgm-tiny", "joint", seed=7)
    local = CliRunner().invoke(cli, ["trace", str(hub["videos"][0]), "-c", str(tmp_path / "org" / "mmvgm-tiny"),
                                     "--json"])
    cached = trace_json(mmvgm(hub, "trace", hub["videos"][0], "-c", "org/mmvgm-tiny", "--json"))
    here = trace_json(mmvgm(hub, "trace", hub["videos"][0], "-c", "org/mmvgm-tiny", "--json", cwd=tmp_path))
    assert here["fake_probability"] == pytest.approx(json.loads(local.output.splitlines()[0])["fake_probability"], abs=1e-6)
    assert here["fake_probability"] != pytest.approx(cached["fake_probability"], abs=1e-6)


def test_train_with_hub_weights_records_the_id(hub, tmp_path):
    data = make_dataset(tmp_path / "data", per_class=2, classes=("real", "lavie"))
    out = tmp_path / "run"
    result = mmvgm(hub, "train", "-b", "videomae_tiny", "--task", "detect", "--data", data, "--epochs", 1,
                   "--lr", "1e-3", "--workers", 0, "--out", out, "--no-progress", "--weights", "org/videomae-tiny")
    assert result.returncode == 0, result.stderr[-2000:]
    import yaml

    meta = yaml.safe_load((out / "best" / "mmvgm.yaml").read_text())
    assert meta["config"]["weights"] == "org/videomae-tiny"  # the id, not a cache path


def test_protect_with_a_pipeline_id(hub, tmp_path):
    from PIL import Image

    image = tmp_path / "photo.png"
    Image.fromarray(random_image(40, 56)).save(image)
    cfg = tmp_path / "fast.yaml"
    cfg.write_text("base: default\nsteps: 3\nencoder_options:\n  vae_max_side: 64\n")
    result = mmvgm(hub, "protect", image, "--model-path", "org/svd-tiny", "--config", cfg, "--json", "-q")
    assert result.returncode == 0, result.stderr[-2000:]
    report = json.loads(result.stdout.splitlines()[-1])
    assert Path(report["output"]).is_file() and set(report["encoders"]) == {"clip", "vae"}


LIBRARY_CHECKS = r"""
import json, torch
from mmvgm.models import build_backbone
from mmvgm.attacks.encoders import build_encoder
from mmvgm.lvd.model import load_vae
from mmvgm.lvd.trajectories import load_pipeline
src = {src!r}
x = torch.rand(1, 8, 3, 32, 32)
a = build_backbone("videomae_tiny", weights="org/videomae-tiny").eval()(x)["features"]
b = build_backbone("videomae_tiny", weights=src + "/videomae").eval()(x)["features"]
img = torch.rand(1, 3, 40, 48)
enc1, enc2 = build_encoder(None, model_path="org/svd-tiny"), build_encoder("svd", model_path=src + "/svd")
enc1.stochastic = enc2.stochastic = False  # no conditioning noise: the two must agree exactly
e1, e2 = enc1(img), enc2(img)
vae = load_vae("org/tiny-animatediff")
pipe = load_pipeline("org/tiny-animatediff")
print(json.dumps({{"backbone": float((a - b).abs().max()),
                  "encoder": max(float((e1[k] - e2[k]).abs().max()) for k in e2),
                  "encoder_keys": sorted(e1), "vae": type(vae).__name__, "pipeline": type(pipe).__name__}}))
"""


def test_library_entry_points_take_ids(hub):
    result = mmvgm(hub, code=LIBRARY_CHECKS.format(src=str(hub["src"])))
    assert result.returncode == 0, result.stderr[-3000:]
    out = json.loads(result.stdout.splitlines()[-1])
    assert out["backbone"] == 0.0 and out["encoder"] < 1e-6 and out["encoder_keys"] == ["clip", "vae"]
    assert out["vae"] == "AutoencoderKL" and out["pipeline"] == "AnimateDiffPipeline"
