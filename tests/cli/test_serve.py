"""``mmvgm serve``'s command line: help, and one-line refusals before anything listens."""
from __future__ import annotations

import pytest
from click.testing import CliRunner

from mmvgm.cli import cli

pytest.importorskip("fastapi")


def run(*args: str, env=None):
    return CliRunner().invoke(cli, list(map(str, args)), env=env)


def test_help_has_examples():
    result = run("serve", "--help")
    assert result.exit_code == 0
    assert "mmvgm serve --checkpoint ckpt/" in result.output and "curl -F file=@clip.mp4" in result.output


@pytest.mark.parametrize("args, message", [
    (("--host", "0.0.0.0"), "refusing to listen on 0.0.0.0 without a token"),
    (("--port", "70000"), "70000 is not in the range"),
    (("--max-upload-mb", "0"), "--max-upload-mb"),
])
def test_bad_settings_are_one_line(tmp_path, args, message):
    from tests.inference_helpers import make_checkpoint

    checkpoint = make_checkpoint(tmp_path / "ck")
    result = run("serve", "-c", checkpoint, "--state-dir", tmp_path / "s", *args, env={"MMVGM_TOKEN": ""})
    assert result.exit_code != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("mmvgm: error: ") and message in lines[0], result.stderr


def test_missing_checkpoint_and_token_file_are_one_line(tmp_path):
    result = run("serve", "-c", tmp_path / "nope")
    assert result.exit_code == 1 and "checkpoint directory not found" in result.stderr
    (tmp_path / "ck").mkdir()
    (tmp_path / "empty").write_text("\n")
    for token_file, message in ((tmp_path / "missing", "cannot read the token file"),
                                (tmp_path / "empty", "the token file is empty")):
        result = run("serve", "-c", tmp_path / "ck", "--token-file", token_file)
        assert result.exit_code == 1 and message in result.stderr and len(result.stderr.splitlines()) == 1


def test_a_token_from_the_environment_allows_a_public_bind(tmp_path, monkeypatch):
    import mmvgm.cli.serve as module

    seen = {}
    monkeypatch.setattr(module, "_run", lambda settings, level: seen.update(settings=settings))
    (tmp_path / "ck").mkdir()
    result = run("serve", "-c", tmp_path / "ck", "--host", "0.0.0.0", env={"MMVGM_TOKEN": "t0k"})
    assert result.exit_code == 0, result.output
    assert seen["settings"].token == "t0k" and seen["settings"].host == "0.0.0.0"
