"""One core path: for one checkpoint and one set of files, what ``eval`` measures (seen through
``eval --predictions``) is what ``scan`` and ``trace`` give, file by file (CPU, within 1e-6)."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from mmvgm.cli import cli
from tests.inference_helpers import SOURCES, make_checkpoint, make_videos

TOLERANCE = 1e-6


def run(*args):
    result = CliRunner().invoke(cli, [str(a) for a in args], env={"MMVGM_CHECKPOINT": None})
    assert result.exit_code == 0, result.output
    return result


def _by_path(lines):
    return {str(Path(r["path"]).resolve()): r for r in lines}


@pytest.fixture(scope="module")
def labelled(tmp_path_factory):
    """real + the three sources the test checkpoint knows, 3 videos each, and one bad file."""
    root = tmp_path_factory.mktemp("one_path")
    data = root / "data"
    for i, label in enumerate(("real", *SOURCES)):
        make_videos(data / label, 3, frames=12, prefix=f"{label}-")
    (data / "real" / "broken.mp4").write_text("not a video\n")
    ckpt = make_checkpoint(root / "ckpt", "joint", threshold=0.5, open_set_threshold=0.4)
    return {"root": root, "data": data, "ckpt": ckpt}


@pytest.fixture(scope="module")
def three_ways(labelled):
    root, data, ckpt = labelled["root"], labelled["data"], labelled["ckpt"]
    preds = root / "eval_predictions.jsonl"
    run("eval", "-c", ckpt, "-d", data, "--split", "all", "--out", root / "eval", "--predictions", preds,
        "--batch-size", "3", "--workers", "0", "--no-progress", "--device", "cpu")
    scan_out = root / "scan.jsonl"
    run("scan", data, "-c", ckpt, "--out", scan_out, "--batch-size", "5", "--workers", "2", "-q",
        "--device", "cpu")
    videos = sorted(str(p) for p in data.rglob("*.mp4") if p.name != "broken.mp4")
    traced = run("trace", *videos, "-c", ckpt, "--json", "--device", "cpu").stdout
    read = lambda text: [json.loads(line) for line in text.splitlines() if line.strip()]  # noqa: E731
    return {"eval": _by_path(read(preds.read_text())), "scan": _by_path(read(scan_out.read_text())),
            "trace": _by_path(read(traced)), "metrics": json.loads((root / "eval" / "metrics.json").read_text())}


def test_eval_predictions_are_scan_lines_with_the_true_label(three_ways):
    evaluated, scanned = three_ways["eval"], three_ways["scan"]
    assert set(evaluated) == set(scanned) and len(evaluated) == 13  # 12 videos and the broken one
    for path, record in evaluated.items():
        if "error" in record:
            assert path.endswith("broken.mp4") and "error" in scanned[path]
            continue
        expected_label = Path(path).parent.name
        assert record["label"] == expected_label
        assert set(record) - {"label"} == set(scanned[path])  # the same schema, plus the label


@pytest.mark.parametrize("other", ["scan", "trace"])
def test_eval_scan_and_trace_give_the_same_numbers(three_ways, other):
    evaluated, others = three_ways["eval"], three_ways[other]
    compared = 0
    for path, record in others.items():
        if "error" in record:
            continue
        mine = evaluated[path]
        assert mine["fake_probability"] == pytest.approx(record["fake_probability"], abs=TOLERANCE)
        for source, p in record["sources"].items():
            assert mine["sources"][source] == pytest.approx(p, abs=TOLERANCE)
        assert (mine["verdict"], mine["source"]["label"]) == (record["verdict"], record["source"]["label"])
        compared += 1
    assert compared == 12


def test_eval_metrics_count_the_same_verdicts(three_ways):
    """The accuracy ``eval`` reports is the share of its own per-file verdicts that are right
    (joint: real below the threshold, else the best known source)."""
    rows = [r for r in three_ways["eval"].values() if "error" not in r]
    predicted = ["real" if r["verdict"] == "real" else r["best_source"]["label"] for r in rows]
    accuracy = sum(p == r["label"] for p, r in zip(predicted, rows)) / len(rows)
    metrics = three_ways["metrics"]
    assert metrics["n"] == 12 and metrics["precision"] == "fp32"  # auto, resolved on CPU and len(metrics["skipped"]) == 1
    assert metrics["accuracy"] == pytest.approx(accuracy, abs=1e-12)
