"""The library call under ``mmvgm dataset`` (the verb itself: tests/cli/test_dataset.py)."""
from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from mmvgm.data.report import dataset_report, parse_ratios
from mmvgm.engine.tasks import task_label_set, task_splits
from mmvgm.errors import InputError
from mmvgm.io.discovery import discover
from tests.data.conftest import label_tree, touch_video


@pytest.fixture
def trace_data(tmp_path: Path) -> Path:
    return label_tree(tmp_path / "data", (("lavie", 10), ("show-1", 6), ("svd-xt", 3)))


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


def test_parse_ratios():
    assert parse_ratios("80/10/10") == (0.8, 0.1, 0.1)
    assert parse_ratios("0.7,0.3") == (0.7, 0.3)
    with pytest.raises(InputError, match="numbers"):
        parse_ratios("most,some")


@pytest.fixture
def detect_data(tmp_path: Path) -> Path:
    return label_tree(tmp_path / "detect", (("real", 6), ("gen-blur", 5), ("gen-lowres", 4)))


def test_labels_detect_counts_every_source_as_fake_and_splits_as_train_does(detect_data):
    report = dataset_report(detect_data, labels="detect", require_all=True)
    assert report.unused == {} and report.total == 15 and report.task == "detect"
    assert {name: row["fake"] for name, row in report.counts.items()} == {"train": 5, "val": 2, "test": 2}
    assert report.mapping == [("real", "real", 6), ("gen-blur", "fake", 5), ("gen-lowres", "fake", 4)]
    trained, _ = task_splits(detect_data, "detect", task_label_set("detect"), [0.8, 0.1, 0.1], 2024)
    assert {k: [s.path for s in v] for k, v in report.splits.items()} == \
        {k: [s.path for s in v] for k, v in trained.items()}  # the split train will use
    assert [s.label for s in report.splits["test"]] == ["gen-blur", "gen-lowres", "real"]  # data labels kept
    assert dataset_report(detect_data, task="detect").mapping == report.mapping


def test_task_trace_and_joint_map_as_train(detect_data, tmp_path):
    labels = tmp_path / "two.yaml"
    labels.write_text("name: two\nclasses: [gen-blur, gen-lowres]\n")
    trace = dataset_report(detect_data, task="trace", labels=str(labels))
    assert trace.unused == {"real": 6} and trace.labels.names == ["gen-blur", "gen-lowres"]
    assert trace.mapping[-1] == ("real", None, 6)
    joint = dataset_report(detect_data, task="joint", labels=str(labels))
    assert joint.labels.names == ["real", "gen-blur", "gen-lowres"] and joint.unused == {}
    assert dataset_report(detect_data, labels=str(labels)).task == "trace"  # a tracing label set maps as trace
    with pytest.raises(InputError, match="only as 'fake'"):
        touch_video(tmp_path / "rf" / "real" / "0.mp4")
        touch_video(tmp_path / "rf" / "fake" / "0.mp4", content=b"other")
        dataset_report(tmp_path / "rf", task="joint", labels=str(labels))


def test_same_content_under_two_labels_is_an_error_and_in_one_label_a_warning(detect_data):
    shutil.copy(detect_data / "real" / "0.mp4", detect_data / "gen-blur" / "copy.mp4")
    report = dataset_report(detect_data, labels="detect")
    assert sorted(s.label for s in report.conflicts[0]) == ["gen-blur", "real"] and len(report.conflicts) == 1
    [line] = report.errors
    assert line.startswith("same content under two labels") and "copy.mp4" in line and "real/0.mp4" in line
    assert {report.to_dict()["label_conflicts"][0][k] for k in ("a_label", "b_label")} == {"gen-blur", "real"}
    assert report.duplicates == []  # the contradiction is reported once, as an error
    assert dataset_report(detect_data, labels="detect", duplicates="off").errors == []
    (detect_data / "gen-blur" / "copy.mp4").unlink()
    manifest = detect_data / "m.csv"
    shutil.copy(detect_data / "real" / "0.mp4", detect_data / "real" / "copy.mp4")
    manifest.write_text(f"path,label,split\n{detect_data}/real/0.mp4,real,train\n"
                        f"{detect_data}/real/copy.mp4,real,test\n{detect_data}/gen-blur/1.mp4,gen-blur,\n")
    same_label = dataset_report(manifest, labels="detect")
    assert same_label.errors == [] and len(same_label.duplicates) == 1


def test_two_data_labels_that_train_as_one_are_no_conflict(detect_data):
    """Under detect, gen-blur and gen-lowres both train as fake: the same file under both is a
    copy (a warning when it lands in two splits), not a contradiction."""
    other = detect_data / "gen-lowres"
    shutil.copy(detect_data / "gen-blur" / "1.mp4", other / "copy.mp4")
    report = dataset_report(detect_data, labels="detect")
    assert report.errors == [] and report.conflicts == []
    assert all(a.split != b.split for a, b in report.duplicates)
    (other / "copy.mp4").unlink()


def test_check_decodes_every_file_in_the_default_workers(detect_data, monkeypatch):
    import mmvgm.runtime
    from tests.media import make_frames, write_video

    good = write_video(detect_data / "real" / "good.mp4", make_frames(4))
    asked = []
    monkeypatch.setattr(mmvgm.runtime, "default_decode_workers", lambda: asked.append(1) or 0)
    report = dataset_report(detect_data, labels="detect", check=True)
    assert asked == [1] and report.checked == 16
    assert len(report.unreadable) == 15 and str(good) not in dict(report.unreadable)
    assert all(reason and "\n" not in reason for _, reason in report.unreadable)
    assert report.to_dict()["unreadable"][0] == {"path": report.unreadable[0][0], "reason": report.unreadable[0][1]}
    assert "unreadable" not in dataset_report(detect_data, labels="detect").to_dict()


def test_the_report_maps_labels_without_the_training_package():
    code = ("import sys, mmvgm.data.report, mmvgm.cli.dataset; "
            "bad = sorted(m for m in sys.modules if m.startswith('mmvgm.engine')); assert not bad, bad")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            cwd=Path(__file__).resolve().parents[2], timeout=60)
    assert result.returncode == 0, result.stderr
