"""Hub ids: parsing, choosing files, and resolving against a real HF cache layout, offline."""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from mmvgm.checkpoint.hub import (HubFiles, HubRef, download_hint, hf_model_files, parse_hub_id,
                                  pipeline_files, resolve, resolve_model, resolve_pipeline, with_revision)
from mmvgm.errors import CheckpointError
from tests.hf_cache import add_repo, commit_for

REPO_ROOT = Path(__file__).resolve().parents[2]


def _model_dir(root: Path, weights: str = "model.safetensors") -> Path:
    root.mkdir(parents=True)
    (root / "config.json").write_text("{}")
    (root / weights).write_bytes(b"weights")
    return root


def _pipeline_dir(root: Path) -> Path:
    index = {"_class_name": "StableVideoDiffusionPipeline", "feature_extractor": ["transformers", "CLIPImageProcessor"],
             "image_encoder": ["transformers", "CLIPVisionModelWithProjection"],
             "unet": ["diffusers", "UNetSpatioTemporalConditionModel"], "vae": ["diffusers", "AutoencoderKLTemporalDecoder"],
             "scheduler": ["diffusers", "EulerDiscreteScheduler"]}
    root.mkdir(parents=True)
    (root / "model_index.json").write_text(json.dumps(index))
    for name, weights in (("image_encoder", "model.safetensors"), ("vae", "diffusion_pytorch_model.safetensors"),
                          ("unet", "diffusion_pytorch_model.safetensors")):
        (root / name).mkdir()
        (root / name / "config.json").write_text("{}")
        (root / name / weights).write_bytes(b"w")
    (root / "feature_extractor").mkdir()
    (root / "feature_extractor" / "preprocessor_config.json").write_text("{}")
    (root / "scheduler").mkdir()
    (root / "scheduler" / "scheduler_config.json").write_text("{}")
    return root


@pytest.mark.parametrize("text, expected", [
    ("MCG-NJU/videomae-base", HubRef("MCG-NJU/videomae-base")),
    ("org/name@v1.0", HubRef("org/name", "v1.0")),
    ("hf://org/name", HubRef("org/name")),
    ("hf://org/name@abc123/sub/I3D.pyth", HubRef("org/name", "abc123", "sub/I3D.pyth")),
    ("./org/name", None), ("/abs/path", None), ("~/w/x", None), ("runs/x/best", None), ("single", None),
])
def test_parse_hub_id(text, expected):
    assert parse_hub_id(text) == expected


def test_a_malformed_hf_uri_is_one_line():
    with pytest.raises(CheckpointError, match="not a hub id"):
        parse_hub_id("hf://just-a-name")


def test_select_prefers_safetensors_and_fetches_nothing_else():
    files = hf_model_files()
    chosen, lacking = files.select(["config.json", "model.safetensors", "pytorch_model.bin", "tf_model.h5"])
    assert chosen == ["config.json", "model.safetensors"] and lacking == []
    chosen, _ = files.select(["config.json", "pytorch_model.bin"])
    assert chosen == ["config.json", "pytorch_model.bin"]
    shards = ["model.safetensors.index.json", "model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"]
    assert files.select(shards + ["pytorch_model.bin"])[0] == shards
    assert files.select(["config.json"])[1]  # no weights at all: said, not guessed


def test_pipeline_files_take_only_the_named_components(tmp_path):
    index = json.loads((_pipeline_dir(tmp_path / "pipe") / "model_index.json").read_text())
    files = pipeline_files(index, ["image_encoder", "vae", "feature_extractor"])
    names = ["model_index.json", "image_encoder/config.json", "image_encoder/model.safetensors",
             "image_encoder/model.fp16.safetensors", "vae/config.json", "vae/diffusion_pytorch_model.safetensors",
             "unet/diffusion_pytorch_model.safetensors", "feature_extractor/preprocessor_config.json"]
    chosen, lacking = files.select(names)
    assert lacking == []
    assert "unet/diffusion_pytorch_model.safetensors" not in chosen
    assert "image_encoder/model.fp16.safetensors" not in chosen
    assert "vae/diffusion_pytorch_model.safetensors" in chosen


def test_an_existing_local_folder_named_like_a_hub_id_wins(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    _model_dir(tmp_path / "org" / "name")
    assert resolve("org/name", cache_dir=tmp_path / "empty-cache") == Path("org/name")


def test_resolves_from_the_cache_offline(tmp_path):
    cache = tmp_path / "cache"
    snap = add_repo(cache, "org/tiny", _model_dir(tmp_path / "src"))
    add_repo(cache, "org/tiny", _model_dir(tmp_path / "src-v1", "pytorch_model.bin"), revision="v1")
    assert resolve("org/tiny", cache_dir=cache) == snap
    assert resolve("hf://org/tiny", cache_dir=cache) == snap
    v1 = resolve("org/tiny@v1", cache_dir=cache)
    assert v1.name == commit_for("org/tiny", "v1") and (v1 / "pytorch_model.bin").is_file()
    assert resolve(with_revision("org/tiny", "v1"), cache_dir=cache) == v1
    assert resolve("hf://org/tiny/config.json", cache_dir=cache) == snap / "config.json"


def test_not_cached_offline_is_one_line_naming_the_command(tmp_path):
    with pytest.raises(CheckpointError) as err:
        resolve("org/missing", cache_dir=tmp_path)
    text = str(err.value)
    assert "\n" not in text and "org/missing" in text and "HF_HUB_OFFLINE" in text
    assert "hf download org/missing" in text


def test_a_partial_cache_says_what_it_lacks(tmp_path):
    cache = tmp_path / "cache"
    add_repo(cache, "org/half", _model_dir(tmp_path / "src"), only=["config.json"])
    with pytest.raises(CheckpointError, match="lacks model.safetensors"):
        resolve("org/half", cache_dir=cache)


def test_pipeline_components_resolve_without_the_rest(tmp_path):
    cache = tmp_path / "cache"
    src = _pipeline_dir(tmp_path / "pipe")
    subset = [p.relative_to(src).as_posix() for p in src.rglob("*") if p.is_file() and not p.parts[-2] == "unet"]
    snap = add_repo(cache, "org/pipe", src, only=subset)
    assert resolve_pipeline("org/pipe", ["image_encoder", "vae"], cache_dir=cache) == snap
    assert resolve_model("org/pipe", ["vae"], cache_dir=cache) == snap
    with pytest.raises(CheckpointError, match="unet/diffusion_pytorch_model.safetensors"):
        resolve_pipeline("org/pipe", cache_dir=cache)  # every component: the unet is not cached


def test_download_hint_quotes_patterns():
    hint = download_hint(HubRef("org/x", "v2"), HubFiles(required=("a b.json",), optional=("vae/*",)))
    assert hint == "hf download org/x --revision v2 --include 'a b.json' 'vae/*'"


# --- online paths, each in a fresh process with HF_HUB_OFFLINE=0 and a local endpoint ------------

def _resolve_in_subprocess(endpoint: str, tmp_path: Path, spec: str = "org/tiny", timeout: int = 120):
    env = dict(os.environ, HF_HUB_OFFLINE="0", HF_ENDPOINT=endpoint, HF_HUB_CACHE=str(tmp_path / "cache"),
               HF_HUB_ETAG_TIMEOUT="1", HF_HUB_DOWNLOAD_TIMEOUT="1", HF_HUB_DISABLE_TELEMETRY="1")
    code = ("import sys\nfrom mmvgm.checkpoint.hub import resolve\nfrom mmvgm.errors import MMVGMError\n"
            f"try:\n    resolve({spec!r})\nexcept MMVGMError as e:\n    print(e); sys.exit(3)\n")
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                          timeout=timeout, cwd=REPO_ROOT)


class _Hub(BaseHTTPRequestHandler):
    reply = "notfound"
    released = threading.Event()

    def do_GET(self):  # noqa: N802 - http.server's name
        if self.reply == "stall":
            self.released.wait(30)
            return
        self.send_response(404)
        self.send_header("X-Error-Code", "RepoNotFound")
        self.send_header("Content-Type", "application/json")
        body = b'{"error": "Repository not found"}'
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_HEAD = do_GET

    def log_message(self, *args):
        pass


@pytest.fixture
def fake_hub():
    servers = []

    released = threading.Event()

    def start(reply: str) -> str:
        handler = type("Hub", (_Hub,), {"reply": reply, "released": released})
        server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        server.daemon_threads = True
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return f"http://127.0.0.1:{server.server_address[1]}"

    yield start
    released.set()
    for server in servers:
        server.shutdown()


def test_an_unknown_repo_is_one_line(tmp_path, fake_hub):
    result = _resolve_in_subprocess(fake_hub("notfound"), tmp_path)
    assert result.returncode == 3, result.stderr
    assert "no such repo on the Hugging Face hub" in result.stdout and "Traceback" not in result.stderr


def test_an_unreachable_hub_falls_back_to_the_cache_then_one_line(tmp_path):
    with socket.socket() as s:  # a port nothing listens on: the connection is refused
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    add_repo(tmp_path / "cache", "org/cached", _model_dir(tmp_path / "src"))
    ok = _resolve_in_subprocess(f"http://127.0.0.1:{port}", tmp_path, "org/cached")
    assert ok.returncode == 0, ok.stdout + ok.stderr
    missing = _resolve_in_subprocess(f"http://127.0.0.1:{port}", tmp_path, "org/absent")
    assert missing.returncode == 3 and "cannot be reached" in missing.stdout
    assert "hf download org/absent" in missing.stdout


def test_a_hub_that_never_answers_ends_in_an_error_not_a_hang(tmp_path, fake_hub):
    # HF_HUB_ETAG_TIMEOUT=1 bounds the lookup; the subprocess timeout only guards the suite
    result = _resolve_in_subprocess(fake_hub("stall"), tmp_path, timeout=60)
    assert result.returncode == 3 and "cannot be reached" in result.stdout, result.stdout + result.stderr
