"""mmvgm.predict.scan: shards, the resumable writer, merging, and whole scans with a tiny model."""
from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from mmvgm.errors import InputError
from mmvgm.predict.scan import (ResultWriter, Shard, merge_outputs, parse_shard, rank_from_env,
                                rank_output, read_results, run_scan, select_shard, shard_of)



# --------------------------------------------------------------------------- shards

def test_parse_shard():
    assert parse_shard("1/4") == Shard(1, 4)
    for bad in ["4/4", "-1/2", "a/b", "1", "0/0"]:
        with pytest.raises(InputError):
            parse_shard(bad)


def test_rank_from_env():
    assert rank_from_env({}) is None
    assert rank_from_env({"RANK": "0", "WORLD_SIZE": "1"}) is None
    assert rank_from_env({"RANK": "2", "WORLD_SIZE": "4", "LOCAL_RANK": "0"}) == Shard(2, 4)
    assert rank_from_env({"LOCAL_RANK": "1", "WORLD_SIZE": "2"}) == Shard(1, 2)
    with pytest.raises(InputError):
        rank_from_env({"RANK": "x", "WORLD_SIZE": "2"})


def test_shards_cover_every_file_exactly_once(tmp_path):
    files = [str(tmp_path / f"d{i % 7}" / f"v{i}.mp4") for i in range(200)]
    for n in (1, 2, 3, 8):
        parts = [select_shard(files, tmp_path, Shard(i, n)) for i in range(n)]
        flat = [f for p in parts for f in p]
        assert sorted(flat) == sorted(files) and len(flat) == len(set(flat))
        if n > 1:
            assert all(len(p) > 0 for p in parts)


def test_shard_is_independent_of_mount_point(tmp_path):
    assert shard_of("/mnt/a/x/v.mp4", Path("/mnt/a"), 5) == shard_of("/data/x/v.mp4", Path("/data"), 5)


def test_rank_output_name():
    assert rank_output("out/res.jsonl", 3) == Path("out/res.rank3.jsonl")


# --------------------------------------------------------------------------- the writer

def _rec(name, **extra):
    from mmvgm.predict.verdict import Source, Verdict

    return Verdict(path=name, verdict="fake", fake_probability=0.9, source=Source("a", 0.7),
                   best_source=Source("a", 0.7), sources={"a": 0.7, "b": 0.3}, frames=8,
                   sampling="consecutive", padded=0, **extra)


def _failed(name, message):
    from mmvgm.predict.verdict import Verdict

    return Verdict.failed(name, message)


def test_writer_refuses_to_clobber_without_resume(tmp_path):
    out = tmp_path / "r.jsonl"
    out.write_text(json.dumps(_rec("x").to_json()) + "\n")
    with pytest.raises(InputError, match="--resume"):
        ResultWriter(out, ["a", "b"])
    assert out.read_text() == json.dumps(_rec("x").to_json()) + "\n"


def test_writer_resume_repairs_torn_line_and_skips_done(tmp_path):
    out = tmp_path / "r.jsonl"
    with ResultWriter(out, ["a", "b"]) as w:
        assert w.write([_rec("v1"), _rec("v2")]) == 2
    with open(out, "a") as fh:
        fh.write('{"path": "v3", "verd')  # a kill -9 in the middle of a line
    with ResultWriter(out, ["a", "b"], resume=True) as w:
        assert w.repaired_bytes > 0
        assert w.is_done("v1") and w.is_done("v2") and not w.is_done("v3")
        assert w.write([_rec("v2"), _rec("v3")]) == 1  # v2 again is ignored
    lines = out.read_text().splitlines()
    assert [json.loads(l)["path"] for l in lines] == ["v1", "v2", "v3"]


def test_writer_resume_dedupes_and_retries_errors(tmp_path):
    out = tmp_path / "r.jsonl"
    out.write_text("".join(json.dumps(r.to_json()) + "\n" for r in
                           [_rec("v1"), _rec("v1"), _failed("bad", "corrupt")]))
    with ResultWriter(out, ["a", "b"], resume=True) as w:
        assert w.is_done("bad")
    assert [r["path"] for r in read_results(out)] == ["v1", "bad"]
    with ResultWriter(out, ["a", "b"], resume=True, retry_errors=True) as w:
        assert not w.is_done("bad")
    assert [r["path"] for r in read_results(out)] == ["v1"]


def test_writer_csv_roundtrip_and_resume(tmp_path):
    out = tmp_path / "r.csv"
    with ResultWriter(out, ["a", "b"]) as w:
        w.write([_rec("v,1"), _failed("bad", "DecodeError: x")])
    rows = list(csv.DictReader(open(out)))
    assert rows[0]["path"] == "v,1" and rows[0]["source"] == "a" and rows[0]["p:b"] == "0.3"
    assert rows[1]["error"] == "DecodeError: x"
    with open(out, "a") as fh:
        fh.write("v2,fa")
    with ResultWriter(out, ["a", "b"], resume=True) as w:
        assert w.is_done("v,1") and not w.is_done("v2")
        w.write([_rec("v2")])
    assert [r["path"] for r in read_results(out)] == ["v,1", "bad", "v2"]
    with pytest.raises(InputError, match="other columns"):
        ResultWriter(out, ["a", "c"], resume=True)


def test_writer_rejects_unknown_extension(tmp_path):
    with pytest.raises(InputError, match=".jsonl or .csv"):
        ResultWriter(tmp_path / "r.txt")


def test_merge_outputs(tmp_path):
    out = tmp_path / "r.jsonl"
    for rank, names in enumerate([["a", "b"], ["c"], ["b", "d"]]):
        with ResultWriter(rank_output(out, rank), ["a", "b"]) as w:
            w.write([_rec(n) for n in names])
    with open(rank_output(out, 1), "a") as fh:
        fh.write('{"path": "tor')
    merged, n = merge_outputs(out)
    assert merged == out and n == 4
    assert sorted(r["path"] for r in read_results(out)) == ["a", "b", "c", "d"]
    with pytest.raises(InputError, match="missing for rank"):
        merge_outputs(out, expected=4)
    with pytest.raises(InputError, match="no shard outputs"):
        merge_outputs(tmp_path / "other.jsonl")


def test_merge_csv(tmp_path):
    out = tmp_path / "r.csv"
    for rank, names in enumerate([["a"], ["b"]]):
        with ResultWriter(rank_output(out, rank), ["a", "b"]) as w:
            w.write([_rec(n) for n in names])
    merge_outputs(out)
    rows = list(csv.DictReader(open(out)))
    assert [r["path"] for r in rows] == ["a", "b"] and rows[0]["p:a"] == "0.7"


# --------------------------------------------------------------------------- whole scans

class FakePredictor:
    """Scores by file name, raises nothing: stands in for the model in bookkeeping tests."""
    source_labels = ["a", "b"]

    def __init__(self):
        self.seen = []

    def stream(self, paths, batch_size=8, workers=0):
        for i in range(0, len(paths), batch_size):
            batch = paths[i:i + batch_size]
            self.seen.extend(batch)
            yield [_rec(p) if "bad" not in p else _failed(p, "DecodeError") for p in batch]


def test_run_scan_shards_then_merge_cover_all(tmp_path):
    data = tmp_path / "data"
    for i in range(30):
        (data / f"s{i % 3}").mkdir(parents=True, exist_ok=True)
        (data / f"s{i % 3}" / (f"bad{i}.mp4" if i % 10 == 0 else f"v{i}.mp4")).write_bytes(b"x")
    out = tmp_path / "res.jsonl"
    seen = []
    for i in range(3):
        fake = FakePredictor()
        summary = run_scan(fake, data, out, batch_size=4, shard=Shard(i, 3), progress=False)
        assert summary.out == rank_output(out, i)
        seen.extend(fake.seen)
    assert len(seen) == 30 and len(set(seen)) == 30
    merged, n = merge_outputs(out)
    records = read_results(merged)
    assert n == 30 and len({r["path"] for r in records}) == 30
    assert sum(1 for r in records if "error" in r) == 3


def test_run_scan_resume_skips_done(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    for i in range(10):
        (data / f"v{i}.mp4").write_bytes(b"x")
    out = tmp_path / "res.jsonl"
    first = run_scan(FakePredictor(), data, out, batch_size=3, progress=False)
    assert first.scored == 10
    with pytest.raises(InputError, match="--resume"):
        run_scan(FakePredictor(), data, out, progress=False)
    fake = FakePredictor()
    again = run_scan(fake, data, out, resume=True, progress=False)
    assert again.skipped == 10 and fake.seen == []
    manifest = tmp_path / "list.txt"
    manifest.write_text("data/v1.mp4\nres.jsonl\n")
    with pytest.raises(InputError, match="over an input"):
        run_scan(FakePredictor(), manifest, out, resume=True, progress=False)


@pytest.mark.parametrize("shard", [None, Shard(0, 2)])
def test_run_scan_never_writes_over_the_manifest(tmp_path, shard):
    data = tmp_path / "data"
    data.mkdir()
    for i in range(3):
        (data / f"v{i}.mp4").write_bytes(b"x")
    manifest = tmp_path / "list.jsonl"
    text = "".join(json.dumps({"path": f"data/v{i}.mp4"}) + "\n" for i in range(3)) + '{"path": "data/v0.mp4"}'
    manifest.write_text(text)
    link = tmp_path / "link.jsonl"
    link.symlink_to(manifest)
    for out in (manifest, tmp_path / "." / "list.jsonl", link):
        with pytest.raises(InputError, match="over an input"):
            run_scan(FakePredictor(), manifest, out, resume=True, shard=shard, progress=False)
    assert manifest.read_text() == text


def test_writer_flushes_every_batch_and_fsyncs_at_most_once_a_second(tmp_path, monkeypatch):
    import mmvgm.predict.scan as scan_module

    syncs = []
    monkeypatch.setattr(scan_module.os, "fsync", lambda fd: syncs.append(fd))
    out = tmp_path / "out.jsonl"
    with ResultWriter(out, ["a"], fsync_every=3600) as writer:
        for i in range(5):
            writer.write([_rec(f"/v/{i}.mp4")])
            # another process (a resume after kill -9) sees every line already
            assert len(out.read_text().splitlines()) == i + 1
        assert syncs == []
    assert len(syncs) == 1  # on close
    with ResultWriter(out, ["a"], resume=True, fsync_every=0) as writer:
        writer.write([_rec("/v/9.mp4")])
        assert len(syncs) == 2


def test_resume_over_an_older_output_upgrades_its_lines(tmp_path):
    """A scan written before schema 2 (source "unknown" as a bare string) resumed now holds one
    schema: every line has schema 2, source an object, best_source the top known source."""
    out = tmp_path / "r.jsonl"
    old = [{"path": "v1", "verdict": "fake", "fake_probability": 0.9, "source": "unknown",
            "sources": {"a": 0.4, "b": 0.35, "c": 0.25}, "frames": 8, "sampling": "consecutive", "padded": 0},
           {"path": "v2", "verdict": "real", "fake_probability": 0.1, "source": {"label": "a", "probability": 0.8},
            "sources": {"a": 0.8, "b": 0.2}, "frames": 8, "sampling": "consecutive", "padded": 0},
           {"path": "bad", "error": "DecodeError: x"}]
    out.write_text("".join(json.dumps(r) + "\n" for r in old))
    with ResultWriter(out, ["a", "b", "c"], resume=True) as w:
        w.write([_rec("v3")])
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["path"] for r in lines] == ["v1", "v2", "bad", "v3"]
    assert all(r["schema"] == 2 for r in lines)
    assert lines[0]["source"] == {"label": "unknown", "probability": None}
    assert lines[0]["best_source"] == {"label": "a", "probability": 0.4}
    assert lines[1]["best_source"] == lines[1]["source"] == {"label": "a", "probability": 0.8}
    assert lines[2] == {"schema": 2, "path": "bad", "error": "DecodeError: x"}


# --------------------------------------------------------------------------- every file accounted for

def _issue_folder(root: Path) -> Path:
    """The issue's folder: 15 videos, a .vob that `info` and `trace` read, two files that are not
    videos, a hidden one; the bar said 15/15 for it and the .vob went unscanned."""
    for i in range(15):
        (root / f"v{i:02d}.mp4").parent.mkdir(parents=True, exist_ok=True)
        (root / f"v{i:02d}.mp4").write_bytes(b"x")
    (root / "demo.vob").write_bytes(b"\x00\x00\x01\xba" + b"\x00" * 64)
    (root / "notes.txt").write_text("notes\n")
    (root / "README").write_text("read me\n")
    (root / ".DS_Store").write_bytes(b"\x00")
    return root


def _spy_on_the_bar(monkeypatch) -> list:
    import mmvgm.progress

    totals = []
    real = mmvgm.progress.make_progress

    def make_progress(*columns, disable=False):
        bar = real(*columns, disable=True)
        add_task = bar.add_task
        bar.add_task = lambda description, total=None, **fields: (
            totals.append(total) or add_task(description, total=total, **fields))
        return bar

    monkeypatch.setattr(mmvgm.progress, "make_progress", make_progress)
    return totals


def test_run_scan_accounts_for_every_file_and_writes_a_summary(tmp_path, monkeypatch):
    data = _issue_folder(tmp_path / "data")
    totals = _spy_on_the_bar(monkeypatch)
    fake = FakePredictor()
    out, counts = tmp_path / "res.jsonl", tmp_path / "counts.json"
    summary = run_scan(fake, data, out, batch_size=4, summary=counts)
    assert str(data / "demo.vob") in fake.seen and len(fake.seen) == 16
    assert totals == [16] and summary.total == summary.scored + summary.errors == 16
    assert summary.not_videos == {"(no extension)": 1, ".txt": 1} and summary.hidden == 1
    assert summary.notes() == ["skipped 2 files that are not videos ((no extension), .txt)",
                               "not looked into: 1 hidden entry (name starting with '.')"]
    assert summary.summary_file == counts
    written = json.loads(counts.read_text())
    assert written == summary.to_json()
    assert {k: written[k] for k in ("inputs", "scored", "errors", "already_done", "hidden")} == {
        "inputs": 16, "scored": 16, "errors": 0, "already_done": 0, "hidden": 1}
    assert written["not_videos"] == {"count": 2, "extensions": {"(no extension)": 1, ".txt": 1}}
    again = run_scan(FakePredictor(), data, out, resume=True, progress=False, summary=counts)
    assert totals == [16, 0] and json.loads(counts.read_text())["already_done"] == 16


def test_shard_summaries_add_up_to_the_folder(tmp_path):
    data = _issue_folder(tmp_path / "data")
    for i in range(20):
        (data / "more" / f"n{i}.json").parent.mkdir(exist_ok=True)
        (data / "more" / f"n{i}.json").write_text("{}")
    out, counts = tmp_path / "res.jsonl", tmp_path / "counts.json"
    summaries = [run_scan(FakePredictor(), data, out, shard=Shard(i, 3), progress=False, summary=counts)
                 for i in range(3)]
    assert [s.summary_file for s in summaries] == [rank_output(counts, i) for i in range(3)]
    assert sum(s.total for s in summaries) == 16 and sum(s.hidden for s in summaries) == 1
    assert sum(s.not_video_count for s in summaries) == 22
    assert all(0 < s.not_video_count < 22 for s in summaries)  # each file counted by one shard
    assert not counts.exists()


def test_the_summary_is_never_written_over_an_input_or_the_results(tmp_path):
    data = _issue_folder(tmp_path / "data")
    manifest = tmp_path / "list.txt"
    manifest.write_text("data/v00.mp4\n")
    cases = [(data, data / "v01.mp4", "over an input"), (manifest, manifest, "over an input"),
             (data, tmp_path / "res.jsonl", "a file of its own")]
    for scanned, summary, message in cases:
        with pytest.raises(InputError, match=message):
            run_scan(FakePredictor(), scanned, tmp_path / "res.jsonl", progress=False, summary=summary)
    assert not (tmp_path / "res.jsonl").exists() and manifest.read_text() == "data/v00.mp4\n"


def test_the_summary_file_is_checked_before_any_scanning(tmp_path):
    """A summary over a file of the scanned folder, over a file that is not a summary, not .json,
    or in a missing folder is refused before a single video is scored."""
    data = tmp_path / "data"
    data.mkdir()
    for i in range(3):
        (data / f"v{i}.mp4").write_bytes(b"x")
    (data / "labels.json").write_text('{"mine": true}')
    mine = tmp_path / "notes.json"
    mine.write_text('{"mine": true}')
    for bad, reason in [(data / "labels.json", "scanned folder"), (mine, "not an earlier scan summary"),
                        (tmp_path / "counts.txt", "must end in .json"),
                        (tmp_path / "missing" / "counts.json", "no such folder")]:
        fake = FakePredictor()
        with pytest.raises(InputError, match=reason):
            run_scan(fake, data, tmp_path / "r.jsonl", progress=False, summary=bad)
        assert fake.seen == [] and not (tmp_path / "r.jsonl").exists()
    assert json.loads(mine.read_text()) == {"mine": True}
    summary = tmp_path / "counts.json"
    run_scan(FakePredictor(), data, tmp_path / "r.jsonl", progress=False, summary=summary)
    run_scan(FakePredictor(), data, tmp_path / "r.jsonl", progress=False, summary=summary, resume=True)
    assert json.loads(summary.read_text())["already_done"] == 3  # an earlier summary is replaced
