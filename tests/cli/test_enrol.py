"""``mmvgm enrol`` and ``mmvgm eval --enrol-curve`` through the CLI: a run, the table, one-line errors."""
from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from mmvgm.cli import cli
from tests.engine.synthetic import COLORS, make_dataset
from tests.inference_helpers import make_checkpoint
from tests.media import make_frames, write_video


def run(*args):
    return CliRunner().invoke(cli, [str(a) for a in args], env={"MMVGM_CHECKPOINT": None})


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli_enrol")
    base = make_dataset(root / "base", per_class=4, classes=("real", "lavie", "show-1"))
    examples = [write_video(root / "examples" / f"h{i}.mp4", make_frames(8, 32, 32, seed=70 + i,
                                                                        color=COLORS["hotshot-xl"])) for i in range(3)]
    return {"root": root, "base": base, "examples": examples,
            "joint": make_checkpoint(root / "joint", "joint", sources=("lavie", "show-1"))}


def test_enrol_writes_a_checkpoint_that_trace_knows(env):
    out = env["root"] / "enrolled"
    result = run("enrol", "-c", env["joint"], "-s", "hotshot-xl", "-d", env["examples"][0].parent, "--base-data",
                 env["base"], "-o", out, "--workers", 0, "--no-progress", "--json")
    assert result.exit_code == 0, result.output + result.stderr
    report = json.loads(result.stdout)
    assert report["k"] == 3 and report["method"] == "prototype" and report["checkpoint"] == str(out)
    assert set(report["existing_classes"]) == {"n_test", "accuracy_before", "accuracy_after"}
    traced = run("trace", env["examples"][0], "-c", out, "--json")
    assert traced.exit_code == 0, traced.output
    assert set(json.loads(traced.stdout.splitlines()[0])["sources"]) == {"lavie", "show-1", "hotshot-xl"}
    table = run("enrol", "-c", env["joint"], "-s", "hotshot-xl", "-d", env["examples"][0].parent, "--base-data",
                env["base"], "-o", env["root"] / "again", "--method", "refit", "--workers", 0, "--no-progress")
    assert table.exit_code == 0 and "accuracy" in table.stdout and "before" in table.stdout


def test_help_has_examples_and_bad_input_is_one_line(env, tmp_path):
    helped = run("enrol", "--help")
    assert helped.exit_code == 0 and "Examples:" in helped.output
    detect = make_checkpoint(tmp_path / "det", "detect")
    refused = run("enrol", "-c", detect, "-s", "x", "-d", env["examples"][0].parent, "-o", tmp_path / "o")
    assert refused.exit_code == 1 and refused.stderr.count("\n") == 1 and "only detects" in refused.stderr
    curve = run("eval", "-c", env["joint"], "-d", env["base"], "--enrol-curve", "0", "--holdout-class", "x")
    assert curve.exit_code == 1 and "counts of 1 or more" in curve.stderr and "Traceback" not in curve.output
