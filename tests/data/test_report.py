"""``mmvgm dataset`` and the library call under it."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from mmvgm.cli import cli
from mmvgm.data.report import dataset_report, parse_ratios
from mmvgm.errors import InputError
from mmvgm.io.discovery import discover
from tests.data.conftest import touch_video


@pytest.fixture
def trace_data(tmp_path: Path) -> Path:
    root = tmp_path / "data"
    for label, n in (("lavie", 10), ("show-1", 6), ("svd-xt", 3)):
        for i in range(n):
            touch_video(root / label / f"{i}.mp4", content=f"{label}{i}".encode())
    return root


def test_report_counts_and_written_split_round_trips(trace_data, tmp_path):
    report = dataset_report(trace_data, labels="vgmshield9", seed=5)
    assert report.total == 19 and report.counts["train"]["lavie"] == 8 and report.counts["test"]["hotshot-xl"] == 0
    out = report.write_split(tmp_path / "out" / "split.csv")
    again = discover(out)
    assert {(s.path, s.split) for s in again} == {(s.path, s.split) for v in report.splits.values() for s in v}
    with pytest.raises(InputError, match="no samples for classes hotshot-xl"):
        dataset_report(trace_data, labels="vgmshield9", require_all=True)
    dataset_report(trace_data, require_all=True)  # inferred labels: all three present everywhere
    touch_video(trace_data / "real" / "r.mp4")
    report = dataset_report(trace_data, labels="vgmshield9")
    assert report.unused == {"real": 1} and report.total == 19
    with pytest.raises(InputError, match="unknown label"):
        dataset_report(trace_data, labels=["cat", "dog"])


def test_cli_table_json_and_duplicates(trace_data, tmp_path):
    runner = CliRunner()
    result = runner.invoke(cli, ["dataset", str(trace_data), "--labels", "vgmshield9"])
    assert result.exit_code == 0, result.output
    assert "lavie" in result.output and "train (80%)" in result.output and "19 videos" in result.output

    result = runner.invoke(cli, ["dataset", str(trace_data), "--json", "--ratios", "50/50"])
    payload = json.loads(result.stdout)
    assert result.exit_code == 0 and payload["ratios"] == {"train": 0.5, "val": 0.5, "test": 0.0}
    assert payload["duplicates"] == [] and payload["counts"]["val"] == {"lavie": 5, "show-1": 3, "svd-xt": 1}

    shutil.copy(trace_data / "lavie" / "0.mp4", trace_data / "show-1" / "copy.mp4")
    manifest = tmp_path / "m.csv"
    manifest.write_text(f"path,label,split\n{trace_data}/lavie/0.mp4,lavie,train\n"
                        f"{trace_data}/show-1/copy.mp4,show-1,test\n{trace_data}/lavie/1.mp4,lavie,\n")
    result = runner.invoke(cli, ["dataset", str(manifest), "--json"])
    pairs = json.loads(result.stdout)["duplicates"]
    assert result.exit_code == 0 and [(Path(p["a"]).name, p["a_split"], Path(p["b"]).name, p["b_split"])
                                      for p in pairs] == [("0.mp4", "train", "copy.mp4", "test")]
    result = runner.invoke(cli, ["dataset", str(manifest), "--duplicates", "refuse"])
    assert result.exit_code == 1 and "same content in train and test" in result.stderr
    assert result.stderr.startswith("mmvgm: error:") and result.stderr.count("\n") == 1
    result = runner.invoke(cli, ["dataset", str(manifest), "--out", str(manifest)])
    assert result.exit_code == 1 and "refusing to overwrite the input" in result.stderr


def test_cli_bad_input_is_one_line(tmp_path):
    result = CliRunner().invoke(cli, ["dataset", str(tmp_path / "nope")])
    assert result.exit_code == 1 and "dataset not found" in result.stderr and "Traceback" not in result.output


def test_parse_ratios():
    assert parse_ratios("80/10/10") == (0.8, 0.1, 0.1)
    assert parse_ratios("0.7,0.3") == (0.7, 0.3)
    with pytest.raises(InputError, match="numbers"):
        parse_ratios("most,some")


def test_module_entry_point_help():
    out = subprocess.run([sys.executable, "-m", "mmvgm", "dataset", "--help"], capture_output=True, text=True,
                         cwd=Path(__file__).resolve().parents[2], timeout=60)
    assert out.returncode == 0 and "mmvgm dataset data/ --labels vgmshield9" in out.stdout
