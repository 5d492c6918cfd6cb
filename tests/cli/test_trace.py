"""``mmvgm trace``: JSON schema, tables, open set, windows, explain, errors."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest
from click.testing import CliRunner

from mmvgm.cli import cli
from tests.inference_helpers import SOURCES, make_checkpoint, make_videos

REPO_ROOT = __import__("pathlib").Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    root = tmp_path_factory.mktemp("trace")
    videos = make_videos(root / "videos", 2, frames=12)
    bad = root / "videos" / "broken.mp4"
    bad.write_bytes(videos[0].read_bytes()[:300])
    return {"root": root, "videos": videos, "bad": bad,
            "joint": make_checkpoint(root / "joint", "joint"),
            "detect": make_checkpoint(root / "detect", "detect"),
            "trace": make_checkpoint(root / "trace", "trace"),
            "unknown": make_checkpoint(root / "unknown", "joint", open_set_threshold=0.999)}


def run(*args, env_vars=None):
    return CliRunner().invoke(cli, [str(a) for a in args], env=env_vars or {"MMVGM_CHECKPOINT": None})


def _lines(output):
    return [json.loads(line) for line in output.splitlines() if line.startswith("{")]


def test_json_schema_joint(env):
    result = run("trace", *env["videos"], "--checkpoint", env["joint"], "--json")
    assert result.exit_code == 0, result.output
    records = _lines(result.stdout)
    assert [r["path"] for r in records] == [str(v) for v in env["videos"]]
    for r in records:
        assert set(r) == {"schema", "path", "fake_probability", "verdict", "source", "best_source", "sources",
                          "frames", "sampling", "padded"}
        assert r["schema"] == 2 and r["best_source"] == r["source"]
        assert r["verdict"] in ("real", "fake") and 0 <= r["fake_probability"] <= 1
        assert set(r["source"]) == {"label", "probability"} and r["source"]["label"] in SOURCES
        assert set(r["sources"]) == set(SOURCES)
        assert isinstance(r["frames"], int) and r["sampling"] == "consecutive" and r["padded"] == 0


def test_json_schema_detect_and_trace_only(env):
    detect = _lines(run("trace", env["videos"][0], "-c", env["detect"], "--json").stdout)[0]
    assert "fake_probability" in detect and "source" not in detect and "sources" not in detect
    trace = _lines(run("trace", env["videos"][0], "-c", env["trace"], "--json").stdout)[0]
    assert "fake_probability" not in trace and trace["verdict"] == "not-assessed"
    assert trace["source"]["label"] in SOURCES


def test_open_set_unknown(env):
    record = _lines(run("trace", env["videos"][0], "-c", env["unknown"], "--json").stdout)[0]
    # source is always an object; the best known source is still given beside it
    assert record["source"] == {"label": "unknown", "probability": None}
    assert record["best_source"]["label"] in SOURCES
    assert record["best_source"]["probability"] == next(iter(record["sources"].values()))
    table = run("trace", env["videos"][0], "-c", env["unknown"])
    assert table.exit_code == 0 and "unknown" in table.output and "open-set threshold" in table.output


def test_table_output(env):
    result = run("trace", env["videos"][0], "-c", env["joint"], "--sampling", "uniform")
    assert result.exit_code == 0, result.output
    for word in ("verdict", "P(fake)", "source ranking", "8 frames, uniform", *SOURCES):
        assert word in result.output


def test_windows_and_explain(env):
    png = env["root"] / "sal-{stem}.png"
    result = run("trace", *env["videos"], "-c", env["joint"], "--json", "--windows", "2",
                 "--explain", png)
    assert result.exit_code == 0, result.output
    records = _lines(result.stdout)
    assert all(len(r["windows"]) == 2 for r in records)
    for v, r in zip(env["videos"], records):
        assert r["explanation"] == str(env["root"] / f"sal-{v.stem}.png")
        assert (env["root"] / f"sal-{v.stem}.png").stat().st_size > 0
    refused = run("trace", *env["videos"], "-c", env["joint"], "--explain", env["root"] / "one.png")
    assert refused.exit_code == 1 and "{stem}" in refused.output


def test_bad_video_continues_and_exits_1(env):
    result = run("trace", env["bad"], env["videos"][0], "-c", env["joint"], "--json")
    assert result.exit_code == 1
    records = _lines(result.stdout)
    assert records[0]["path"] == str(env["bad"]) and "error" in records[0]
    assert records[1]["path"] == str(env["videos"][0]) and "verdict" in records[1]
    errors = [line for line in result.stderr.splitlines() if line.startswith("mmvgm: error:")]
    assert len(errors) == 2 and str(env["bad"]) in errors[0] and "1 of 2" in errors[1]


def test_missing_checkpoint_says_how_to_get_one(env):
    result = run("trace", env["videos"][0])
    assert result.exit_code != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "mmvgm demo" in lines[0] and "mmvgm train" in lines[0]
    assert "Traceback" not in result.output


def test_checkpoint_from_environment(env):
    result = run("trace", env["videos"][0], "--json", env_vars={"MMVGM_CHECKPOINT": str(env["detect"])})
    assert result.exit_code == 0 and "fake_probability" in _lines(result.stdout)[0]


def test_bad_options(env):
    assert run("trace", env["videos"][0], "-c", env["joint"], "--sampling", "random").exit_code == 2
    assert run("trace", env["videos"][0], "-c", env["joint"], "--windows", "0").exit_code == 2
    assert run("trace", "-c", env["joint"]).exit_code == 2
    fixed = run("trace", env["videos"][0], "-c", env["joint"], "--frames", "4")
    assert fixed.exit_code == 1 and "exactly 8 frames" in fixed.stderr
    assert "Examples" in run("trace", "--help").output


def test_subprocess_smoke(env):
    proc = subprocess.run([sys.executable, "-m", "mmvgm", "trace", str(env["videos"][0]), "-c",
                           str(env["detect"]), "--json"], capture_output=True, text=True, cwd=REPO_ROOT,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout.strip())["path"] == str(env["videos"][0])


def test_explain_with_windows_shows_the_most_suspicious_window(env, monkeypatch):
    import mmvgm.predict.explain
    from mmvgm.predict.explain import most_suspicious_window
    from mmvgm.predict.verdict import Source, Verdict

    seen = []
    real = mmvgm.predict.explain.explain

    def spy(predictor, video, out, **kwargs):
        seen.append(kwargs)
        return real(predictor, video, out, **kwargs)

    monkeypatch.setattr(mmvgm.predict.explain, "explain", spy)
    result = run("trace", env["videos"][0], "-c", env["joint"], "--json", "--windows", "3",
                 "--explain", env["root"] / "w.png")
    assert result.exit_code == 0, result.output
    record = _lines(result.stdout)[0]
    best = max(record["windows"], key=lambda w: w["fake_probability"])
    assert seen[0]["start"] == best["start"] and seen[0]["sampling"] == best["sampling"]
    fake = [Verdict("v", start=s, fake_probability=p) for s, p in ((0, 0.1), (5, 0.7), (9, 0.3))]
    assert most_suspicious_window(Verdict("v", windows=fake)).start == 5
    # trace-only windows rank by their top source; no windows: the first clip
    windows = [Verdict("v", start=0, best_source=Source("b", 0.5)), Verdict("v", start=6, best_source=Source("a", 0.9))]
    assert most_suspicious_window(Verdict("v", windows=windows)).start == 6
    assert most_suspicious_window(Verdict("v", verdict="real")) is None


def test_a_checkpoint_trained_on_synthetic_media_says_so(tmp_path):
    """``mmvgm demo`` marks its checkpoint ``synthetic: true``; trace and scan then warn in one
    line and every JSON record carries the warning."""
    from mmvgm.checkpoint.meta import CheckpointMeta

    videos = make_videos(tmp_path / "videos", 2, frames=12)
    ckpt = make_checkpoint(tmp_path / "synthetic", "joint")
    CheckpointMeta.load(ckpt).replace(synthetic=True).save(ckpt)
    result = run("trace", videos[0], "-c", ckpt, "--json")
    assert result.exit_code == 0, result.output
    record = _lines(result.stdout)[0]
    assert "synthetic media" in record["warning"]
    warnings = [line for line in result.stderr.splitlines() if line.startswith("mmvgm: warning:")]
    assert len(warnings) == 1 and "synthetic" in warnings[0]
    table = run("trace", videos[0], "-c", ckpt)
    assert "warning" in table.output and "synthetic" in table.output
    out = tmp_path / "scan.jsonl"
    scanned = run("scan", videos[0].parent, "-c", ckpt, "--out", out, "-q", "--workers", "0")
    assert scanned.exit_code == 0, scanned.output
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert lines and all("synthetic media" in r["warning"] for r in lines if "error" not in r)
    assert "mmvgm: warning:" in scanned.stderr
    plain = make_checkpoint(tmp_path / "plain", "joint")
    assert "warning" not in _lines(run("trace", videos[0], "-c", plain, "--json").stdout)[0]


def _no_checkpoint_load(monkeypatch):
    """Fail the test if the checkpoint is loaded: a bad --explain must be refused before any work."""
    from mmvgm.predict.predictor import Predictor

    def refuse(*args, **kwargs):
        raise AssertionError("the checkpoint was loaded before --explain was checked")

    monkeypatch.setattr(Predictor, "from_checkpoint", refuse)


@pytest.mark.parametrize("name, why", [
    ("/proc/x.png", "/proc"),                     # was "unexpected FileNotFoundError", exit code 70
    ("{root}/no/such/dir/x.png", "no such folder"),  # silently created the folders
    ("{root}/sal.jpg", ".png"),                   # failed the video after scoring it
    ("{root}/file.txt/x.png", "not a folder"),
])
def test_explain_target_is_checked_before_any_work(env, monkeypatch, name, why):
    (env["root"] / "file.txt").write_text("x")
    _no_checkpoint_load(monkeypatch)
    result = run("trace", env["videos"][0], "-c", env["joint"], "--explain", name.format(root=env["root"]))
    assert result.exit_code == 1, result.output
    [line] = result.stderr.splitlines()
    assert line.startswith("mmvgm: error: ") and why in line and "unexpected" not in line
    assert not (env["root"] / "no").exists()


def test_explain_refuses_two_videos_writing_one_png(env, tmp_path, monkeypatch):
    twin = tmp_path / "other"
    twin.mkdir()
    copy = twin / env["videos"][0].name
    copy.write_bytes(env["videos"][0].read_bytes())
    _no_checkpoint_load(monkeypatch)
    result = run("trace", env["videos"][0], copy, "-c", env["joint"], "--explain", tmp_path / "s-{stem}.png")
    assert result.exit_code == 1 and "same name" in result.stderr and len(result.stderr.splitlines()) == 1


def test_explain_png_names_the_window_and_its_frames(env, monkeypatch):
    from tests.inference_helpers import spy_render

    seen = spy_render(monkeypatch)
    png = env["root"] / "named.PNG"  # the suffix in any case
    result = run("trace", env["videos"][0], "-c", env["joint"], "--json", "--windows", "3", "--explain", png)
    assert result.exit_code == 0, result.output
    record = _lines(result.stdout)[0]
    best = max(record["windows"], key=lambda w: w["fake_probability"])
    number = record["windows"].index(best) + 1
    start = best["start"]
    assert seen["labels"] == [f"frame {i}\n{i / 10:.2f} s" for i in range(start, start + 8)]  # 10 fps
    assert f"frames {start}–{start + 7}" in seen["title"]
    assert f"(window {number} of 3, most likely fake)" in seen["title"]
    assert png.is_file() and not list(env["root"].glob(".*check"))


def test_windows_are_capped_at_the_windows_that_fit(env):
    """A 12-frame video holds 5 distinct 8-frame windows: asking for more scores those 5 and
    says so (it used to print a table row per rounded duplicate start, unannounced)."""
    result = run("trace", env["videos"][0], "-c", env["joint"], "--json", "--windows", "500")
    assert result.exit_code == 0, result.output
    record = _lines(result.stdout)[0]
    assert [w["start"] for w in record["windows"]] == [0, 1, 2, 3, 4] and record["windows_requested"] == 500
    [note] = result.stderr.splitlines()
    assert note.startswith("mmvgm: note: ") and "only 5 windows fit in a 12-frame video" in note
    assert "scored 5" in note
    exact = run("trace", env["videos"][0], "-c", env["joint"], "--json", "--windows", "5")
    assert "windows_requested" not in _lines(exact.stdout)[0] and exact.stderr == ""
    table = run("trace", env["videos"][0], "-c", env["joint"], "--windows", "500")
    assert table.exit_code == 0 and len(table.stdout.splitlines()) < 40 and "only 5 windows" in table.stderr


def test_usage_errors_are_one_line(env):
    """`--windows 0` printed click's usage, hint and error lines."""
    for args in (["--windows", "0"], ["--sampling", "random"], ["--nope"]):
        result = run("trace", env["videos"][0], "-c", env["joint"], *args)
        assert result.exit_code == 2
        [line] = result.stderr.splitlines()
        assert line.startswith("mmvgm: error: ") and line.endswith(" trace --help)")  # CliRunner's prog name
    assert "'--windows'" in run("trace", env["videos"][0], "--windows", "0").stderr


def test_tracing_a_videomae_checkpoint_imports_only_what_scoring_needs(env):
    """Start-up: a lone trace scores on the plain-torch VideoMAE and reads in-process, so the
    training library, torchvision, torchcodec (a decoding worker's reader) and scipy stay out."""
    heavy = ("transformers", "torchvision", "torchcodec", "scipy", "torch._dynamo")
    code = ("import runpy, sys\n"
            "sys.argv = ['mmvgm', 'trace', sys.argv[1], '-c', sys.argv[2], '--json']\n"
            "try:\n    runpy.run_module('mmvgm', run_name='__main__')\n"
            "except SystemExit as exc:\n    assert not exc.code, exc.code\n"
            f"print(sorted(m for m in {heavy!r} if m in sys.modules))\n")
    proc = subprocess.run([sys.executable, "-c", code, str(env["videos"][0]), str(env["joint"])],
                          capture_output=True, text=True, cwd=REPO_ROOT, timeout=120)
    assert proc.returncode == 0, proc.stderr
    verdict, imported = proc.stdout.strip().splitlines()
    assert json.loads(verdict)["path"] == str(env["videos"][0])
    assert imported == "[]"
