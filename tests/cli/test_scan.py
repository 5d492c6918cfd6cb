"""``mmvgm scan``: corrupt files, CSV, clobber refusal, shards + merge, kill -9 and resume."""
from __future__ import annotations

import csv
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from mmvgm.cli import cli
from tests.inference_helpers import make_checkpoint, make_videos
from tests.io.conftest import needs_torchcodec

REPO_ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    root = tmp_path_factory.mktemp("scan")
    data = root / "uploads"
    good = make_videos(data / "a", 9, frames=10) + make_videos(data / "b" / "deep", 9, frames=10, prefix="w")
    (data / "a" / "empty.mp4").write_bytes(b"")                       # zero bytes
    (data / "b" / "text.mp4").write_text("this is not a video\n")       # text renamed .mp4
    return {"root": root, "data": data, "good": [str(p) for p in good],
            "bad": [str(data / "a" / "empty.mp4"), str(data / "b" / "text.mp4")],
            "ckpt": make_checkpoint(root / "ckpt", "joint")}


def run(*args):
    return CliRunner().invoke(cli, [str(a) for a in args], env={"MMVGM_CHECKPOINT": None})


def _jsonl(path):
    lines = Path(path).read_text().splitlines()
    return [json.loads(line) for line in lines]


def test_scan_with_corrupt_files(env, tmp_path):
    out = tmp_path / "res.jsonl"
    result = run("scan", env["data"], "-c", env["ckpt"], "--out", out, "-b", "4", "-j", "1", "-q")
    assert result.exit_code == 0, result.output
    records = _jsonl(out)
    paths = [r["path"] for r in records]
    assert sorted(paths) == sorted(env["good"] + env["bad"]) and len(paths) == len(set(paths))
    by_path = {r["path"]: r for r in records}
    for p in env["good"]:
        assert "error" not in by_path[p] and 0 <= by_path[p]["fake_probability"] <= 1
        assert by_path[p]["source"]["label"] in by_path[p]["sources"]
    for p in env["bad"]:
        assert set(by_path[p]) == {"schema", "path", "error"} and by_path[p]["error"]
    assert "18 scored, 2 errors" in result.stderr
    # an existing output is never clobbered
    again = run("scan", env["data"], "-c", env["ckpt"], "--out", out, "-q")
    assert again.exit_code == 1 and "--resume" in again.stderr
    assert _jsonl(out) == records
    # resume: nothing left to do; --retry-errors rescans only the failures
    resumed = run("scan", env["data"], "-c", env["ckpt"], "--out", out, "--resume", "-q")
    assert resumed.exit_code == 0 and "20 already done" in resumed.stderr
    retried = run("scan", env["data"], "-c", env["ckpt"], "--out", out, "--resume", "--retry-errors",
                  "-q", "-j", "0")
    assert retried.exit_code == 0 and "0 scored, 2 errors, 18 already done" in retried.stderr
    assert sorted(r["path"] for r in _jsonl(out)) == sorted(paths)


def test_scan_csv(env, tmp_path):
    out = tmp_path / "res.csv"
    result = run("scan", env["data"], "-c", env["ckpt"], "--out", out, "-j", "0", "-q")
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader(open(out, newline="")))
    assert len(rows) == 20 and sum(1 for r in rows if r["error"]) == 2
    good = next(r for r in rows if not r["error"])
    assert good["verdict"] in ("real", "fake") and {"p:lavie", "p:show-1", "p:svd-xt"} <= set(good)


def test_manifest_input(env, tmp_path):
    manifest = tmp_path / "list.csv"
    manifest.write_text("path\n" + "\n".join(env["good"][:3] + env["bad"][:1]) + "\n")
    out = tmp_path / "res.jsonl"
    assert run("scan", manifest, "-c", env["ckpt"], "--out", out, "-j", "0", "-q").exit_code == 0
    assert [r["path"] for r in _jsonl(out)] == env["good"][:3] + env["bad"][:1]


def test_shards_cover_all_files_once(env, tmp_path):
    out = tmp_path / "res.jsonl"
    for i in range(3):
        result = run("scan", env["data"], "-c", env["ckpt"], "--out", out, "--shard", f"{i}/3", "-j", "0",
                     "-q")
        assert result.exit_code == 0, result.output
        assert "--merge" in result.stderr
    parts = [_jsonl(tmp_path / f"res.rank{i}.jsonl") for i in range(3)]
    assert all(parts)
    flat = [r["path"] for part in parts for r in part]
    assert sorted(flat) == sorted(env["good"] + env["bad"])
    merged = run("scan", "--merge", "--out", out)
    assert merged.exit_code == 0 and "merged 20 results" in merged.output
    assert sorted(r["path"] for r in _jsonl(out)) == sorted(flat)


def test_bad_invocations(env, tmp_path):
    cases = [
        (["scan", env["data"], "-c", env["ckpt"], "--out", tmp_path / "r.txt"], ".jsonl or .csv"),
        (["scan", "-c", env["ckpt"], "--out", tmp_path / "r.jsonl"], "give the folder"),
        (["scan", "--merge", "--out", tmp_path / "r.jsonl"], "no shard outputs"),
        (["scan", env["data"], "-c", env["ckpt"], "--out", tmp_path / "r.jsonl", "--shard", "3/3"],
         "invalid shard"),
        (["scan", env["data"], "-c", env["ckpt"], "--out", tmp_path / "r.jsonl", "--retry-errors"],
         "--resume"),
        (["scan", tmp_path / "nothing", "-c", env["ckpt"], "--out", tmp_path / "r.jsonl"], "no such file"),
        (["scan", env["data"], "--out", tmp_path / "r.jsonl"], "mmvgm demo"),
    ]
    for args, message in cases:
        result = run(*args)
        assert result.exit_code == 1, (args, result.output)
        assert message in result.stderr and len(result.stderr.strip().splitlines()) == 1


def test_folder_scan_scores_a_vob_and_counts_what_is_not_a_video(env, tmp_path):
    """The issue: `info` and `trace` read demo.vob, a folder scan left it out without a word."""
    from tests.media import encode_av, make_frames

    data = tmp_path / "footage"
    data.mkdir()
    for p in env["good"][:2]:
        shutil.copy(p, data)
    encode_av(str(data / "demo.vob"), make_frames(10, 40, 48), "mpeg2video", container_format="vob")
    (data / "notes.txt").write_text("shot list\n")
    (data / "meta.json").write_text("{}\n")
    (data / ".DS_Store").write_bytes(b"\x00")
    assert run("info", data / "demo.vob").exit_code == 0
    out, counts = tmp_path / "res.jsonl", tmp_path / "counts.json"
    result = run("scan", data, "-c", env["ckpt"], "--out", out, "-j", "0", "-q", "--summary", counts)
    assert result.exit_code == 0, result.output
    by_path = {r["path"]: r for r in _jsonl(out)}
    assert set(by_path) == {str(data / n) for n in ("demo.vob", *(Path(p).name for p in env["good"][:2]))}
    assert "error" not in by_path[str(data / "demo.vob")]
    lines = result.stderr.strip().splitlines()
    assert "3 scored, 0 errors" in lines[-4]
    assert lines[-3:] == ["skipped 2 files that are not videos (.json, .txt)",
                          "not looked into: 1 hidden entry (name starting with '.')", f"summary: {counts}"]
    summary = json.loads(counts.read_text())
    assert (summary["inputs"], summary["scored"], summary["errors"]) == (3, 3, 0)
    assert summary["not_videos"] == {"count": 2, "extensions": {".json": 1, ".txt": 1}}
    assert summary["scanned"] == str(data) and summary["out"] == str(out)


def test_summary_option_refuses_the_results_file(env, tmp_path):
    out = tmp_path / "r.jsonl"
    result = run("scan", env["data"], "-c", env["ckpt"], "--out", out, "--summary", out, "-q")
    assert result.exit_code == 1 and "a file of its own" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and not out.exists()


def test_kill_and_resume(env, tmp_path):
    """kill -9 a real scan mid-way, then --resume: every file exactly once, no torn lines."""
    data = tmp_path / "many"
    data.mkdir()
    sources = [Path(p) for p in env["good"][:4]]
    total = 80
    for i in range(total):
        shutil.copy(sources[i % 4], data / f"clip{i:03d}.mp4")
    out = tmp_path / "res.jsonl"
    proc = subprocess.Popen([sys.executable, "-m", "mmvgm", "scan", str(data), "-c", str(env["ckpt"]),
                             "--out", str(out), "--batch-size", "1", "--workers", "0", "-q"],
                            cwd=REPO_ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and proc.poll() is None:
            if out.exists() and out.read_bytes().count(b"\n") >= 5:
                break
            time.sleep(0.005)
        assert proc.poll() is None, "the scan finished (or died) before it could be killed: " + \
            proc.stderr.read().decode()[-500:]
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == -signal.SIGKILL
    written = out.read_bytes().count(b"\n")
    assert 5 <= written < total
    # A kill between write() and the newline leaves a torn line; make sure one is there.
    with open(out, "ab") as fh:
        fh.write(b'{"path": "' + str(data / "clip000.mp4").encode() + b'", "verd')
    result = run("scan", data, "-c", env["ckpt"], "--out", out, "--resume", "-j", "1", "-b", "8", "-q")
    assert result.exit_code == 0, result.output
    assert "repaired a torn last line" in result.stderr
    text = out.read_text()
    assert text.endswith("\n")
    records = [json.loads(line) for line in text.splitlines()]  # every line is whole JSON
    paths = [r["path"] for r in records]
    assert len(paths) == total and sorted(set(paths)) == sorted(str(p) for p in data.iterdir())
    assert all("error" not in r for r in records)


def test_torchrun_ranks_scan_their_shards_and_rank0_merges(env, tmp_path):
    """Two CPU processes under torchrun: each scans its own shard, rank 0 waits and merges."""
    out = tmp_path / "res.jsonl"
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone",
                           "--nproc-per-node", "2", "-m", "mmvgm", "scan", str(env["data"]),
                           "-c", str(env["ckpt"]), "--out", str(out), "-j", "0", "-q"],
                          cwd=REPO_ROOT, capture_output=True, text=True, timeout=240,
                          env={**os.environ, "OMP_NUM_THREADS": "1", "MMVGM_CHECKPOINT": ""})
    assert proc.returncode == 0, proc.stderr[-2000:]
    parts = [[r["path"] for r in _jsonl(tmp_path / f"res.rank{i}.jsonl")] for i in range(2)]
    assert all(parts) and not set(parts[0]) & set(parts[1])
    merged = [r["path"] for r in _jsonl(out)]
    assert sorted(merged) == sorted(parts[0] + parts[1]) == sorted(env["good"] + env["bad"])


def _modules_after(code: str, *args) -> list:
    """Run ``code`` in a fresh interpreter; its last output line: a list of module names."""
    proc = subprocess.run([sys.executable, "-c", code, *map(str, args)], capture_output=True, text=True,
                          cwd=REPO_ROOT, timeout=180)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


HEAVY = ("torchcodec", "torch._dynamo")


@needs_torchcodec
def test_a_short_scan_decodes_without_torchcodec_and_its_import(env, tmp_path):
    """torchcodec's import (torch._dynamo with it) costs more than a short scan's workers save."""
    code = ("import json, runpy, sys\n"
            "sys.argv = ['mmvgm', 'scan', sys.argv[1], '-c', sys.argv[2], '--out', sys.argv[3], '-j', '1', '-q']\n"
            "try:\n    runpy.run_module('mmvgm', run_name='__main__')\n"
            "except SystemExit as exc:\n    assert not exc.code, exc.code\n"
            f"print(json.dumps(sorted(m for m in {HEAVY!r} if m in sys.modules)))\n")
    out = tmp_path / "r.jsonl"
    assert _modules_after(code, env["data"], env["ckpt"], out) == []
    assert len(_jsonl(out)) == len(env["good"]) + len(env["bad"])


@needs_torchcodec
def test_long_lived_workers_read_with_torchcodec(env):
    """A predictor told of no file count (a service, a library user) or of many files loads
    torchcodec before its workers fork, so that they inherit it (and ``auto`` leads with it
    there: tests/io/test_torchcodec_reader.py); told of a short scan's count, it does not."""
    code = ("import json, sys\n"
            "from mmvgm.predict.predictor import Predictor\n"
            "from mmvgm.runtime.workers import TORCHCODEC_MIN_FILES_PER_WORKER as MIN\n"
            "seen = []\n"
            "for files in json.loads(sys.argv[3]):\n"
            "    files = files if files is None else int(files * MIN)\n"
            "    with Predictor.from_checkpoint(sys.argv[1], workers=2, expected_files=files) as p:\n"
            "        assert [v.ok for v in p.predict_batch([sys.argv[2]])] == [True]\n"
            "    seen.append('torchcodec.decoders' in sys.modules)\n"
            "print(json.dumps(seen))\n")
    # Per process, since an import stays: files per worker just below the threshold, then at it.
    assert _modules_after(code, env["ckpt"], env["good"][0], json.dumps([1.99, 2])) == [False, True]
    assert _modules_after(code, env["ckpt"], env["good"][0], json.dumps([None])) == [True]
