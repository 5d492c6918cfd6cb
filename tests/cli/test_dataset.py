"""``mmvgm dataset``: the table, --json, copies, --check and the label mapping as train uses it."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from mmvgm.cli import cli
from tests.data.conftest import label_tree
from tests.media import make_frames, write_video


@pytest.fixture
def trace_data(tmp_path: Path) -> Path:
    return label_tree(tmp_path / "data", (("lavie", 10), ("show-1", 6), ("svd-xt", 3)))


@pytest.fixture
def footage(tmp_path: Path) -> Path:
    """Decodable videos under real/, gen-blur/ and gen-lowres/."""
    root = tmp_path / "footage"
    for k, label in enumerate(("real", "gen-blur", "gen-lowres")):
        for i in range(3):
            write_video(root / label / f"{i}.mp4", make_frames(4, height=16, width=16, seed=10 * k + i))
    return root


def test_cli_table_json_and_duplicates(trace_data, tmp_path):
    runner = CliRunner()
    result = runner.invoke(cli, ["dataset", str(trace_data), "--labels", "vgmshield9"])
    assert result.exit_code == 0, result.output
    assert "lavie" in result.output and "train (80%)" in result.output and "19 videos" in result.output

    result = runner.invoke(cli, ["dataset", str(trace_data), "--json", "--ratios", "50/50"])
    payload = json.loads(result.stdout)
    assert result.exit_code == 0 and payload["ratios"] == {"train": 0.5, "val": 0.5, "test": 0.0}
    assert payload["duplicates"] == [] and payload["counts"]["val"] == {"lavie": 5, "show-1": 3, "svd-xt": 1}

    shutil.copy(trace_data / "lavie" / "0.mp4", trace_data / "lavie" / "copy.mp4")
    manifest = tmp_path / "m.csv"
    manifest.write_text(f"path,label,split\n{trace_data}/lavie/0.mp4,lavie,train\n"
                        f"{trace_data}/lavie/copy.mp4,lavie,test\n{trace_data}/lavie/1.mp4,lavie,\n")
    result = runner.invoke(cli, ["dataset", str(manifest), "--json"])
    pairs = json.loads(result.stdout)["duplicates"]
    assert result.exit_code == 0 and [(Path(p["a"]).name, p["a_split"], Path(p["b"]).name, p["b_split"])
                                      for p in pairs] == [("0.mp4", "train", "copy.mp4", "test")]
    result = runner.invoke(cli, ["dataset", str(manifest)])
    assert result.exit_code == 0 and "mmvgm: warning: same content in train and test" in result.stderr
    result = runner.invoke(cli, ["dataset", str(manifest), "--duplicates", "refuse"])
    assert result.exit_code == 1 and "same content in train and test" in result.stderr
    assert result.stderr.startswith("mmvgm: error:") and result.stderr.count("\n") == 1
    result = runner.invoke(cli, ["dataset", str(manifest), "--out", str(manifest)])
    assert result.exit_code == 1 and "refusing to overwrite the input" in result.stderr


def test_cli_bad_input_is_one_line(tmp_path):
    result = CliRunner().invoke(cli, ["dataset", str(tmp_path / "nope")])
    assert result.exit_code == 1 and "dataset not found" in result.stderr and "Traceback" not in result.output


def test_labels_detect_describes_every_label_as_train_uses_it(footage):
    result = CliRunner().invoke(cli, ["dataset", str(footage), "--labels", "detect"])
    assert result.exit_code == 0, result.output
    assert "real -> real (3), gen-blur -> fake (3), gen-lowres -> fake (3)" in result.stdout
    assert "left out" not in result.stdout and "task 'detect'" in result.stdout
    trace = CliRunner().invoke(cli, ["dataset", str(footage), "--task", "trace", "--labels", "vgmshield9"])
    assert trace.exit_code == 1 and "unknown label 'gen-blur'" in trace.stderr  # no source of the set
    (footage / "gen-blur").rename(footage / "lavie")
    trace = CliRunner().invoke(cli, ["dataset", str(footage), "--task", "trace"])
    assert "lavie -> lavie (3)" in trace.stdout
    assert "task 'trace' leaves out 6 video(s): gen-lowres (3), real (3)" in trace.stdout


def test_same_content_under_two_labels_fails_in_red_and_is_in_json(footage):
    shutil.copy(footage / "real" / "0.mp4", footage / "gen-blur" / "copy.mp4")
    result = CliRunner().invoke(cli, ["dataset", str(footage), "--labels", "detect"], color=True)
    assert result.exit_code == 1 and "gen-blur -> fake (4)" in result.stdout  # the report is still printed
    [line] = result.stderr.splitlines()
    assert "\x1b[31m" in line and "mmvgm: error: same content under two labels" in line
    assert "gen-blur/copy.mp4" in line and "real/0.mp4" in line
    result = CliRunner().invoke(cli, ["dataset", str(footage), "--json"])
    conflicts = json.loads(result.stdout)["label_conflicts"]
    assert result.exit_code == 1 and {conflicts[0]["a_label"], conflicts[0]["b_label"]} == {"real", "gen-blur"}
    assert CliRunner().invoke(cli, ["dataset", str(footage), "--duplicates", "off"]).exit_code == 0


def test_check_decodes_in_workers_and_lists_unreadable_files(footage):
    (footage / "real" / "empty.mp4").write_bytes(b"")
    (footage / "gen-blur" / "notes.mp4").write_text("not a video, a note\n")
    (footage / "gen-lowres" / "broken.ogv").write_bytes(b"OggS" + bytes(300))
    bad = {str(footage / "real" / "empty.mp4"), str(footage / "gen-blur" / "notes.mp4"),
           str(footage / "gen-lowres" / "broken.ogv")}
    assert CliRunner().invoke(cli, ["dataset", str(footage)]).exit_code == 0  # not decoded without --check
    result = CliRunner().invoke(cli, ["dataset", str(footage), "--check", "--workers", "2", "--json"])
    payload = json.loads(result.stdout)
    assert result.exit_code == 1 and payload["checked"] == 12 and payload["total"] == 12
    assert {item["path"] for item in payload["unreadable"]} == bad
    assert all(item["reason"] and "\n" not in item["reason"] for item in payload["unreadable"])
    result = CliRunner().invoke(cli, ["dataset", str(footage), "--check", "-j", "0"])
    assert result.exit_code == 1 and "decoded 12 file(s): 3 unreadable" in result.stdout
    errors = [line for line in result.stderr.splitlines() if line.startswith("mmvgm: error:")]
    assert {line.split(": ")[2] for line in errors} == bad and "Traceback" not in result.output
    for path in bad:
        Path(path).unlink()
    result = CliRunner().invoke(cli, ["dataset", str(footage), "--check", "-j", "2"])
    assert result.exit_code == 0 and "decoded 9 file(s): none unreadable" in result.stdout


def test_module_entry_point_help():
    out = subprocess.run([sys.executable, "-m", "mmvgm", "dataset", "--help"], capture_output=True, text=True,
                         cwd=Path(__file__).resolve().parents[2], timeout=60)
    assert out.returncode == 0 and "mmvgm dataset data/ --labels vgmshield9" in out.stdout
    assert "mmvgm dataset data/ --labels detect --check" in out.stdout and "Exit code 1" in out.stdout
