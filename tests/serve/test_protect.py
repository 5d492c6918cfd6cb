"""``/v1/protect``: the pixels ``mmvgm protect`` writes for the same seed, and its report."""
from __future__ import annotations

import base64
import io
import json

import numpy as np
import pytest
from click.testing import CliRunner

from mmvgm.cli import cli
from tests.attacks.conftest import make_svd_dir, random_image


@pytest.fixture(scope="module")
def protect_setup(tmp_path_factory):
    from PIL import Image

    root = tmp_path_factory.mktemp("protect")
    config = root / "fast.yaml"
    config.write_text("base: default\nsteps: 8\nencoder_options:\n  vae_max_side: 64\n")
    Image.fromarray(random_image(40, 56, seed=1)).save(root / "photo.png")
    Image.fromarray(random_image(30, 30, seed=2)).save(root / "target.png")
    return {"root": root, "svd": make_svd_dir(root / "svd"), "config": config}


@pytest.fixture
def protect_client(make_client, protect_setup):
    return make_client(protect_encoder="svd", protect_model_path=str(protect_setup["svd"]),
                       protect_config=str(protect_setup["config"]))


def read_png(data: bytes) -> np.ndarray:
    from PIL import Image

    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))


def cli_protect(setup, tmp_path, *args: str) -> tuple:
    out = tmp_path / "cli.png"
    result = CliRunner().invoke(cli, ["protect", str(setup["root"] / "photo.png"), "--encoder", "svd",
                                      "--model-path", str(setup["svd"]), "--config", str(setup["config"]),
                                      "--out", str(out), "--json", "-q", *args])
    assert result.exit_code == 0, result.output
    return read_png(out.read_bytes()), json.loads(result.stdout.strip().splitlines()[-1])


def test_protect_gives_the_cli_pixels_and_report(protect_client, protect_setup, tmp_path):
    photo = (protect_setup["root"] / "photo.png").read_bytes()
    answer = protect_client.post("/v1/protect", files={"image": ("photo.png", photo)},
                                 data={"eps": "4/255", "steps": "4", "seed": "3"})
    assert answer.status_code == 200 and answer.headers["content-type"] == "image/png"
    expected, printed = cli_protect(protect_setup, tmp_path, "--eps", "4/255", "--steps", "4", "--seed", "3")
    assert np.array_equal(read_png(answer.content), expected)
    report = json.loads(answer.headers["x-mmvgm-report"])
    assert report["path"] == "photo.png" and "output" not in report
    for key in ("mode", "eps", "steps", "linf", "psnr", "ssim"):
        assert report[key] == pytest.approx(printed[key]) if isinstance(printed[key], float) else report[key] == printed[key]
    assert report["encoders"].keys() == printed["encoders"].keys()


def test_protect_directed_as_json(protect_client, protect_setup, tmp_path):
    root = protect_setup["root"]
    answer = protect_client.post("/v1/protect?format=json",
                                 files={"image": ("photo.png", (root / "photo.png").read_bytes()),
                                        "target": ("target.png", (root / "target.png").read_bytes())},
                                 data={"steps": "3", "seed": "0"})
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["report"]["mode"] == "directed" and body["report"]["target"] == "target.png"
    expected, _ = cli_protect(protect_setup, tmp_path, "--steps", "3", "--seed", "0", "--target", str(root / "target.png"))
    assert np.array_equal(read_png(base64.b64decode(body["png"])), expected)
    assert list(protect_client.app.state.service.tmp.iterdir()) == []


def test_protect_bad_input_is_422(protect_client, protect_setup):
    photo = (protect_setup["root"] / "photo.png").read_bytes()
    text = protect_client.post("/v1/protect", files={"image": ("photo.png", b"just text")})
    assert text.status_code == 422 and text.json()["detail"].startswith("photo.png: ")
    eps = protect_client.post("/v1/protect", files={"image": ("photo.png", photo)}, data={"eps": "lots"})
    assert eps.status_code == 422 and "eps" in eps.json()["detail"]
    tiny = protect_client.post("/v1/protect", files={"image": ("photo.png", photo)}, data={"eps": "0.5/255"})
    assert tiny.status_code == 422 and "below one 8-bit level" in tiny.json()["detail"]
    steps = protect_client.post("/v1/protect", files={"image": ("photo.png", photo)}, data={"steps": "0"})
    assert steps.status_code == 422
    assert protect_client.post("/v1/protect?format=gif", files={"image": ("photo.png", photo)}).status_code == 422


def test_protect_without_an_encoder_says_how_to_enable_it(client, protect_setup):
    answer = client.post("/v1/protect", files={"image": ("photo.png", (protect_setup["root"] / "photo.png").read_bytes())})
    assert answer.status_code == 501 and "--protect-encoder" in answer.json()["detail"]


def test_a_bad_target_is_named_as_the_client_named_it(protect_client, protect_setup):
    photo = (protect_setup["root"] / "photo.png").read_bytes()
    answer = protect_client.post("/v1/protect", files={"image": ("photo.png", photo), "target": ("t.png", b"not a png")})
    assert answer.status_code == 422 and answer.json()["detail"].startswith("t.png: ")
    assert "mmvgm-serve-" not in answer.text


def test_steps_are_capped(make_client, protect_setup):
    client = make_client(protect_encoder="svd", protect_model_path=str(protect_setup["svd"]),
                         protect_config=str(protect_setup["config"]), max_protect_steps=5)
    photo = (protect_setup["root"] / "photo.png").read_bytes()
    answer = client.post("/v1/protect", files={"image": ("photo.png", photo)}, data={"steps": "6"})
    assert answer.json() == {"detail": "steps must be an integer from 1 to 5 (got '6')"}
    assert client.post("/v1/protect", files={"image": ("photo.png", photo)}, data={"steps": "5"}).status_code == 200


def test_a_protection_that_times_out_stops_and_frees_the_encoder(make_client, protect_setup):
    client = make_client(protect_encoder="svd", protect_model_path=str(protect_setup["svd"]),
                         protect_config=str(protect_setup["config"]), request_timeout_s=0.3)
    photo = (protect_setup["root"] / "photo.png").read_bytes()
    answer = client.post("/v1/protect", files={"image": ("photo.png", photo)}, data={"steps": "1000"})
    assert answer.status_code == 504 and "protecting took longer" in answer.json()["detail"]
    lock = client.app.state.service.protect_lock
    assert lock.acquire(timeout=10)  # the attack stopped at its next step (1000 steps take minutes)
    lock.release()
