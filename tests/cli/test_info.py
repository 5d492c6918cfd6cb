import json
import shutil

import pytest
from click.testing import CliRunner

from mmvgm.cli import cli
from tests.io.conftest import needs_torchcodec
from tests.media import make_frames, write_frame_dir, write_video

KEYS = ["path", "frames", "fps", "width", "height", "codec", "duration"]


@pytest.fixture(scope="module")
def media(tmp_path_factory):
    root = tmp_path_factory.mktemp("info")
    frames = make_frames(12, 32, 64)
    return {
        "mp4": write_video(root / "a", frames, "mp4-h264"),
        "webm": write_video(root / "b", frames[:7], "webm-vp9"),
        "dir": write_frame_dir(root / "frames", frames[:5]),
        "root": root,
    }


def invoke(*args):
    return CliRunner().invoke(cli, ["info", *map(str, args)])


def test_table(media):
    result = invoke(media["mp4"], media["webm"], media["dir"])
    assert result.exit_code == 0, result.output
    assert result.stderr == ""
    for name in ("a.mp4", "b.webm", "frames"):
        assert name in result.stdout
    assert "64x32" in result.stdout and "h264" in result.stdout and "vp9" in result.stdout
    rows = {line.split()[0].rsplit("/", 1)[-1]: line for line in result.stdout.splitlines()[2:]}
    assert " 12 " in rows["a.mp4"] and " 7 " in rows["b.webm"] and " 5 " in rows["frames"]


def test_json_lines(media):
    result = invoke(media["mp4"], media["dir"], "--json")
    assert result.exit_code == 0, result.output
    first, second = [json.loads(line) for line in result.stdout.splitlines()]
    assert list(first) == KEYS
    assert first == {"path": str(media["mp4"]), "frames": 12, "fps": 10.0, "width": 64,
                     "height": 32, "codec": "h264", "duration": pytest.approx(1.2)}
    assert second["frames"] == 5 and second["fps"] is None and second["duration"] is None


def test_failures_are_reported_and_exit_1(media):
    bad = media["root"] / "notes.mp4"
    bad.write_text("just text")
    missing = media["root"] / "missing.mp4"
    result = invoke(media["mp4"], bad, missing, "--json")
    assert result.exit_code == 1
    objects = [json.loads(line) for line in result.stdout.splitlines()]
    assert [o["path"] for o in objects] == [str(media["mp4"]), str(bad), str(missing)]
    assert objects[0]["frames"] == 12
    assert objects[1] == {"path": str(bad), "error": "not a video: the file contains text"}
    assert objects[2] == {"path": str(missing), "error": "no such file or directory"}
    assert result.stderr.splitlines() == [
        f"mmvgm: error: {bad}: not a video: the file contains text",
        f"mmvgm: error: {missing}: no such file or directory",
    ]
    table = invoke(media["mp4"], missing)
    assert table.exit_code == 1 and "a.mp4" in table.stdout and "missing.mp4" not in table.stdout


@pytest.mark.parametrize("options", [["--exact"], ["--backend", "pyav"], ["--backend", "opencv"]])
def test_exact_and_backend_options(media, options):
    result = invoke(media["webm"], "--json", *options)
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["frames"] == 7


def test_backend_choices_are_the_registered_backends():
    from mmvgm.cli.info import BACKEND_CHOICES
    from mmvgm.io.backends import BACKENDS

    assert sorted(BACKEND_CHOICES) == sorted(["auto", *BACKENDS])


@needs_torchcodec
def test_torchcodec_probes_from_its_packet_count_but_never_exactly(media):
    result = invoke(media["webm"], "--json", "--backend", "torchcodec")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["frames"] == 7
    result = invoke(media["webm"], "--json", "--backend", "torchcodec", "--exact")
    assert result.exit_code == 1
    assert "counts frames from the packets only" in result.stderr and "pyav" in result.stderr
    assert "corrupt" not in result.stderr and len(result.stderr.strip().splitlines()) == 1


def test_renamed_upload_is_still_probed(media, tmp_path):
    upload = tmp_path / "upload"
    shutil.copy(media["mp4"], upload)
    result = invoke(upload, "--json")
    assert result.exit_code == 0 and json.loads(result.stdout)["codec"] == "h264"


def test_help_has_an_example_and_no_paths_is_a_usage_error():
    result = CliRunner().invoke(cli, ["info", "--help"])
    assert result.exit_code == 0 and "mmvgm info clip.mp4" in result.stdout
    assert invoke().exit_code == 2


def test_budgets(media):
    result = invoke(media["mp4"], "--json", "--max-pixels", "100")
    assert result.exit_code == 1 and "pixel budget" in json.loads(result.stdout)["error"]
    result = invoke(media["mp4"], "--json", "--exact", "--max-frames", "5")
    assert result.exit_code == 1 and "frame budget" in json.loads(result.stdout)["error"]
    assert invoke(media["mp4"], "--max-frames", "5").exit_code == 0  # packet counts are cheap


def test_each_failure_is_exactly_one_stderr_line(tmp_path):
    """A newline in a file name must not split the error line (the CLI's one-line contract)."""
    missing = tmp_path / "two\nlines.mp4"
    result = invoke(missing)
    assert result.exit_code == 1
    assert result.stderr.splitlines() == [f"mmvgm: error: {tmp_path}/two lines.mp4: no such file or directory"]
