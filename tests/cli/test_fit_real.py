"""``mmvgm fit-real`` through the CLI: a run whose checkpoint ``trace``, ``scan`` and the service
score unchanged, ``--help`` with examples, and one-line errors."""
from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from mmvgm.cli import cli
from tests.engine.zeroshot import make_temporal_dataset


def run(*args):
    return CliRunner().invoke(cli, [str(a) for a in args], env={"MMVGM_CHECKPOINT": None})


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli_fit_real")
    videos = make_temporal_dataset(root / "data", {"real": 12, "real-flicker": 2}, seed=3)
    ck = root / "ck"
    result = run("fit-real", "--data", root / "data" / "real", "--backbone", "timm_tiny", "--out", ck,
                 "--order", 1, "--distance", "cosine", "--workers", 0, "--no-progress", "--json")
    assert result.exit_code == 0, result.output + result.stderr
    return {"root": root, "ck": ck, "fitted": json.loads(result.stdout), "videos": videos}


def test_fit_real_prints_what_it_fitted_as_json(env):
    fitted = env["fitted"]
    assert fitted["statistic"] == {"order": 1, "distance": "cosine", "direction": "both"}
    assert fitted["split_sizes"] == {"train": 6, "val": 4, "test": 2}
    assert fitted["calibration"]["threshold_method"] == "target_fpr" and fitted["calibration"]["n_real"] == 4


def test_trace_scan_and_serve_score_the_checkpoint_unchanged(env):
    video = env["videos"]["real-flicker"][0]
    traced = run("trace", video, "-c", env["ck"], "--json")
    assert traced.exit_code == 0, traced.output
    record = json.loads(traced.stdout.splitlines()[0])
    assert record["verdict"] in ("real", "fake") and 0 <= record["fake_probability"] <= 1
    out = env["root"] / "scan.jsonl"
    scanned = run("scan", video.parent, "-c", env["ck"], "--out", out, "--workers", 0)
    assert scanned.exit_code == 0, scanned.output
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert lines[0]["path"] == str(video) and lines[0]["fake_probability"] == pytest.approx(record["fake_probability"])
    pytest.importorskip("fastapi")
    from fastapi.testclient import TestClient

    from mmvgm.serve import ServeSettings, create_app
    from tests.serve.conftest import wait_ready

    with TestClient(create_app(ServeSettings(checkpoint=str(env["ck"]), state_dir=env["root"] / "state",
                                             workers=0))) as client:
        wait_ready(client)
        served = client.post("/v1/trace", files={"file": (video.name, video.read_bytes(), "video/mp4")}).json()
    assert served["verdict"] == record["verdict"]
    assert served["fake_probability"] == pytest.approx(record["fake_probability"], abs=1e-6)


def test_help_has_examples_and_bad_input_is_one_line(env, tmp_path):
    helped = run("fit-real", "--help")
    assert helped.exit_code == 0 and "Examples:" in helped.output and "mmvgm fit-real --data real/" in helped.output
    missing = run("fit-real", "--data", tmp_path / "nothing", "--backbone", "timm_tiny", "--out", tmp_path / "ck")
    assert missing.exit_code == 1 and missing.stderr.count("\n") == 1 and "no such file or folder" in missing.stderr
    bad = run("fit-real", "--data", env["root"] / "data" / "real", "--backbone", "timm_tiny", "--out", tmp_path / "ck",
              "--split", "0.5,x")
    assert bad.exit_code == 2 and bad.stderr.startswith("mmvgm: error:") and "Traceback" not in bad.output
