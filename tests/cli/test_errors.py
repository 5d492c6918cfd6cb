"""The CLI error contract: one line ``mmvgm: error: <path>: <reason>`` on stderr, exit != 0,
no traceback unless ``--debug``; unexpected exceptions get a ``--debug`` hint."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from mmvgm.cli import INTERNAL_ERROR_EXIT, VERBS, cli
from mmvgm.errors import DecodeError

ROOT = Path(__file__).parents[2]


@pytest.fixture
def boom(monkeypatch):
    monkeypatch.setitem(VERBS, "boom", "tests.cli._boom_verb")
    return lambda *args: CliRunner().invoke(cli, [*args])


@pytest.mark.parametrize("kind, line", [
    ("decode", "mmvgm: error: clips/bad.mp4: no decodable video frames"),
    ("limit", "mmvgm: error: big.mp4: frame size 20000x20000 exceeds the pixel budget"),
    ("checkpoint", "mmvgm: error: ckpt/: missing model.safetensors (expected files: mmvgm.yaml, "
                   "model.safetensors)"),
    ("nopath", "mmvgm: error: something went wrong"),
])
def test_project_errors_are_one_line_with_the_path(boom, kind, line):
    result = boom("boom", kind)
    assert result.exit_code == 1
    assert result.stderr.splitlines() == [line]
    assert result.stdout == ""
    assert "Traceback" not in result.output


def test_unexpected_errors_get_the_debug_hint(boom):
    result = boom("boom", "runtime")
    assert result.exit_code == INTERNAL_ERROR_EXIT != 0
    [line] = result.stderr.splitlines()
    assert line.startswith("mmvgm: error: unexpected RuntimeError: boom second line")
    assert "--debug" in line and "Traceback" not in result.output


def test_interrupt_is_one_line(boom):
    result = boom("boom", "interrupt")
    assert result.exit_code == 130 and result.stderr.splitlines() == ["mmvgm: error: interrupted"]


def test_debug_lets_the_exception_through(boom):
    result = boom("--debug", "boom", "decode")
    assert isinstance(result.exception, DecodeError)
    result = boom("--debug", "boom", "runtime")
    assert isinstance(result.exception, RuntimeError)


def test_success_is_silent_on_stderr(boom):
    result = boom("boom", "fine")
    assert result.exit_code == 0 and result.stdout == "ok\n" and result.stderr == ""


def test_usage_errors_exit_2():
    result = CliRunner().invoke(cli, ["no-such-verb"])
    assert result.exit_code == 2 and "No such command" in result.stderr


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "mmvgm", *args], capture_output=True, text=True,
                          cwd=ROOT, timeout=120)


def test_python_dash_m_behaves_like_mmvgm(tmp_path):
    """``python -m mmvgm`` is the console script: same help, same one-line errors."""
    missing = tmp_path / "missing.mp4"
    result = _run("info", str(missing))
    assert result.returncode == 1
    assert result.stderr.splitlines() == [f"mmvgm: error: {missing}: no such file or directory"]
    assert "Traceback" not in result.stderr
    debug = _run("--debug", "info", str(missing))
    assert debug.returncode == 1
    assert "Traceback" in debug.stderr and "InputError" in debug.stderr
    helped = _run("--help")
    assert helped.returncode == 0 and "info" in helped.stdout and "Usage: mmvgm" in helped.stdout


@pytest.mark.parametrize("args, where", [
    (["no-such-verb"], "mmvgm --help"),
    (["--bogus"], "mmvgm --help"),
    (["info"], "mmvgm info --help"),                          # a missing argument
    (["info", "x.mp4", "--frob"], "mmvgm info --help"),       # an unknown option
    (["trace", "x.mp4", "--windows", "0"], "mmvgm trace --help"),  # a value out of range
    (["models", "--params"], "mmvgm models --help"),          # a verb's own click.UsageError
])
def test_usage_errors_are_one_line_with_where_to_find_help(args, where):
    """click printed usage, a hint and the error (three lines); now one line, exit code 2."""
    result = CliRunner().invoke(cli, args, prog_name="mmvgm")
    assert result.exit_code == 2
    [line] = result.stderr.splitlines()
    assert line.startswith("mmvgm: error: ") and line.endswith(f"(see {where})")
    assert "Usage:" not in result.output and "Try '" not in result.output


def test_bare_mmvgm_still_shows_the_help():
    result = CliRunner().invoke(cli, [], prog_name="mmvgm")
    assert "Usage: mmvgm" in result.output and "trace" in result.output


@pytest.mark.parametrize("args", [["models"], ["models", "--zoo", "--json"]],
                         ids=["flushed-at-exit", "written-while-running"])
def test_a_reader_that_leaves_ends_the_command_quietly(args):
    """`mmvgm models --zoo | head`: output nobody reads is no error, and no traceback either
    from the command or from the interpreter's last flush (short and long outputs)."""
    import os

    proc = subprocess.Popen([sys.executable, "-m", "mmvgm", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            cwd=ROOT, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    proc.stdout.close()  # the reader is gone before the first line
    err = proc.stderr.read()
    assert proc.wait(timeout=120) == 141
    assert err == b""
