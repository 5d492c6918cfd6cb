"""``mmvgm train`` / ``mmvgm eval`` through the CLI: a real tiny run, --json, and one-line errors."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from mmvgm.cli import cli
from tests.engine.synthetic import make_dataset, write_labels

REPO_ROOT = Path(__file__).resolve().parents[2]


def run(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


def one_line_error(result, *fragments):
    assert result.exit_code == 1, (result.exit_code, result.stderr)
    err = result.stderr.strip()
    assert err.startswith("mmvgm: error:") and "\n" not in err and "Traceback" not in result.output, err
    for fragment in fragments:
        assert fragment in err, err
    return err


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli_train")
    data = make_dataset(root / "data", per_class=5, classes=("real", "lavie"))
    labels = write_labels(root / "two.yaml")
    return {"root": root, "data": data, "labels": labels}


@pytest.fixture(scope="module")
def run_dir(env):
    out = env["root"] / "run"
    result = run("train", "--backbone", "videomae_tiny", "--task", "detect", "--data", env["data"],
                 "--epochs", 1, "--lr", "1e-3", "--workers", 0, "--out", out, "--no-progress", "--threshold", 0.5)
    assert result.exit_code == 0, result.output + result.stderr
    assert "best validation auc" in result.stdout and "mmvgm eval --checkpoint" in result.stdout
    return out


def test_train_then_eval_json(run_dir, env):
    result = run("eval", "--checkpoint", run_dir / "best", "--data", env["data"], "--json", "--workers", 0,
                 "--no-progress", "--perturb", "jpeg:50")
    assert result.exit_code == 0, result.stderr
    metrics = json.loads(result.stdout)  # exactly one JSON object on stdout
    for key in ("accuracy", "balanced_accuracy", "macro_f1", "auc", "confusion", "per_class"):
        assert key in metrics
    assert metrics["calibration"]["threshold"] == 0.5 and metrics["calibration"]["threshold_method"] == "fixed"
    assert list(metrics["perturbations"]) == ["jpeg:50"]
    assert (run_dir / "eval-best-test" / "metrics.json").is_file()


def test_eval_table_output(run_dir, env, tmp_path):
    result = run("eval", "-c", run_dir / "best", "-d", env["data"], "--out", tmp_path / "ev", "--workers", 0,
                 "--no-progress")
    assert result.exit_code == 0, result.stderr
    assert "bal acc" in result.stdout and "per class" in result.stdout
    assert {p.name for p in (tmp_path / "ev").iterdir()} == {"metrics.json", "roc.png", "confusion.png"}


def test_subprocess_eval_json_smoke(run_dir, env):
    proc = subprocess.run([sys.executable, "-m", "mmvgm", "eval", "-c", str(run_dir / "best"), "-d",
                           str(env["data"]), "--json", "--workers", "0", "--no-progress"],
                          cwd=REPO_ROOT, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "PYTHONPATH": os.pathsep.join(
                              filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")]))})
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["n"] == 2


def test_unknown_backbone(env, tmp_path):
    r = run("train", "-b", "videomea_tiny", "--data", env["data"], "--out", tmp_path / "o")
    one_line_error(r, "unknown backbone 'videomea_tiny'", "did you mean")


def test_labels_missing_from_the_data(env, tmp_path):
    labels = write_labels(tmp_path / "three.yaml", ("lavie", "svd-xt"))
    r = run("train", "-b", "videomae_tiny", "--task", "trace", "--labels", labels, "--data", env["data"],
            "--out", tmp_path / "o")
    one_line_error(r, "svd-xt")


def test_empty_class_folder(env, tmp_path):
    data = make_dataset(tmp_path / "data", per_class=2, classes=("lavie",))
    (data / "show-1").mkdir()
    r = run("train", "-b", "videomae_tiny", "--task", "trace", "--labels", env["labels"], "--data", data,
            "--out", tmp_path / "o")
    one_line_error(r, "no samples for class show-1")


def test_checkpoint_without_weights(run_dir, env, tmp_path):
    import shutil

    broken = tmp_path / "broken"
    shutil.copytree(run_dir / "best", broken)
    (broken / "model.safetensors").unlink()
    one_line_error(run("eval", "-c", broken, "-d", env["data"]), "model.safetensors is missing")


def test_config_key_typo(env, tmp_path):
    cfg = tmp_path / "train.yaml"
    cfg.write_text(f"backbone: videomae_tiny\ndata: {env['data']}\nbatch_sise: 2\n")
    one_line_error(run("train", "--config", cfg, "--out", tmp_path / "o"), "batch_sise", "did you mean 'batch_size'")


def test_bad_perturb_and_missing_data(run_dir, env, tmp_path):
    one_line_error(run("eval", "-c", run_dir / "best", "-d", env["data"], "--perturb", "jpeg:500"), "jpeg:500")
    one_line_error(run("train", "-b", "videomae_tiny", "--data", tmp_path / "nope"), "dataset not found")


def test_help_has_examples():
    for verb in ("train", "eval"):
        r = run(verb, "--help")
        assert r.exit_code == 0 and "Examples:" in r.stdout
