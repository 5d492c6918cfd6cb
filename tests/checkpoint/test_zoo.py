"""``configs/zoo.yaml`` and ``mmvgm models --zoo``: the catalogue and what the cache holds."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from mmvgm.checkpoint.hub import parse_hub_id
from mmvgm.checkpoint.zoo import entry_status, zoo_entries, _entry
from mmvgm.errors import ConfigError
from tests.hf_cache import add_repo

REPO_ROOT = Path(__file__).resolve().parents[2]


def test_every_entry_is_complete_and_names_a_hub_id_or_a_url():
    entries = zoo_entries()
    assert {e.kind for e in entries} == {"backbones", "encoders", "purifiers", "lvd"}
    for e in entries:
        assert e.license and e.use.startswith("mmvgm ")
        assert (e.url is not None) if e.layout == "url" else (parse_hub_id(e.id) is not None and e.revision)
        if e.layout == "model":
            assert e.weights, e.name
    names = [e.name for e in entries]
    assert len(names) == len(set(names))


def test_a_bad_entry_is_a_config_error():
    with pytest.raises(ConfigError, match="unknown keys"):
        _entry("backbones", {"name": "x", "id": "a/b", "layout": "model", "use": "mmvgm x", "license": "mit",
                             "wieghts": []})
    with pytest.raises(ConfigError, match="layout"):
        _entry("backbones", {"name": "x", "id": "a/b", "layout": "zip", "use": "mmvgm x", "license": "mit"})


def _cache_videomae(cache: Path, tmp_path: Path, only=None):
    src = tmp_path / "vm"
    src.mkdir()
    for name in ("config.json", "preprocessor_config.json"):
        (src / name).write_text("{}")
    (src / "pytorch_model.bin").write_bytes(b"w")
    add_repo(cache, "MCG-NJU/videomae-base", src, only=only)


def test_status_reads_the_cache_only(tmp_path):
    entry = next(e for e in zoo_entries() if e.id == "MCG-NJU/videomae-base")
    assert entry_status(entry, cache_dir=tmp_path)["state"] == "absent"
    _cache_videomae(tmp_path, tmp_path, only=["config.json"])
    status = entry_status(entry, cache_dir=tmp_path)
    assert status["state"] == "partial" and "model.safetensors" in status["lacking"][0]
    assert status["fetch"].startswith("hf download MCG-NJU/videomae-base --include")


def test_models_zoo_cli_in_a_fresh_process(tmp_path):
    cache = tmp_path / "cache"
    _cache_videomae(cache, tmp_path)
    env = dict(os.environ, HF_HUB_OFFLINE="1", HF_HUB_CACHE=str(cache))
    out = subprocess.run([sys.executable, "-m", "mmvgm", "models", "--zoo", "--json"], env=env, cwd=REPO_ROOT,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    states = {r["name"]: r["state"] for r in data["entries"]}
    assert states["videomae-base"] == "cached" and states["svd"] == "absent" and data["cached"] == 1
    text = subprocess.run([sys.executable, "-m", "mmvgm", "models", "--zoo"], env=env, cwd=REPO_ROOT,
                          capture_output=True, text=True, timeout=120).stdout
    assert "cached   videomae-base" in text and "fetch: hf download stabilityai/stable-video-diffusion" in text
    assert "1 of" in text and "Nothing is fetched unless you name an id" in text
