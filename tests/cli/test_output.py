"""Output into a pipe or a file (click's runner is one): printed commands never wrap, table
headers are never cut, and help texts say what the code does."""
from __future__ import annotations


import pytest
from click.testing import CliRunner

from mmvgm.cli import cli
from tests.engine.synthetic import make_dataset
from tests.media import make_frames, write_video

LONG = "a-folder-name-long-enough-that-any-command-naming-it-runs-past-eighty-columns"


@pytest.fixture(autouse=True)
def eighty_columns(monkeypatch):
    # rich sizes a console that is not a terminal from $COLUMNS (else 80): pin it, so that
    # these tests see the width a pipe gets whatever the machine running them sets
    monkeypatch.setenv("COLUMNS", "80")


def run(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


def whole_line(text: str, fragment: str) -> str:
    """The one line of ``text`` that holds all of ``fragment``."""
    lines = [line for line in text.splitlines() if fragment in line]
    assert lines, f"{fragment!r} is not on one line of:\n{text}"
    return lines[0]


def test_shared_consoles_do_not_wrap_or_cut_in_a_pipe(monkeypatch, capsys):
    from rich.table import Table

    from mmvgm.progress import stdout_console

    command = f"mmvgm train --data {LONG}/ --labels my_generators.yaml --out runs/{LONG}"
    table = Table()
    for header in ("input", "accuracy", "bal acc", "macro F1", "AUC", "AP", "TPR@5%FPR", "EER", "Brier", "ECE"):
        table.add_column(header)
    table.add_row("clean", *["0.1234"] * 9)
    console = stdout_console()
    console.print(command)
    console.print(table)
    out = capsys.readouterr().out
    assert whole_line(out, command) == command
    assert "TPR@5%FPR" in out and "…" not in out

    from mmvgm.progress import stderr_console_now  # made for stderr as it is now, also a pipe here

    stderr_console_now().print(f"[yellow]--resume: no checkpoint in {LONG}/{LONG}/last yet; starting fresh")
    whole_line(capsys.readouterr().err, f"{LONG}/{LONG}/last yet; starting fresh")


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("out")
    data = make_dataset(root / "data", per_class=5, classes=("real", "lavie"))
    out = root / "run"
    result = run("train", "--backbone", "videomae_tiny", "--task", "detect", "--data", data, "--epochs", 1,
                 "--lr", "1e-3", "--workers", 0, "--out", out, "--no-progress", "--threshold", 0.5)
    assert result.exit_code == 0, result.output
    return out, data


def test_eval_table_headers_are_whole_in_a_pipe(run_dir, tmp_path):
    out, data = run_dir
    result = run("eval", "-c", out / "best", "-d", data, "--out", tmp_path / LONG, "--workers", 0, "--no-progress")
    assert result.exit_code == 0, result.output
    header = whole_line(result.stdout, "TPR@5%FPR")
    for name in ("input", "acc", "bal acc", "macro F1", "AUC", "TPR@1%FPR"):
        assert name in header
    assert "…" not in result.stdout
    whole_line(result.stdout, f"wrote {tmp_path / LONG / 'metrics.json'}, roc.png, confusion.png")


def test_dataset_left_out_labels_and_their_suggestion_on_one_line(tmp_path):
    data = make_dataset(tmp_path / LONG, per_class=2, classes=("real", "lavie"))
    for i in range(2):  # a typo'd source folder, which the suggestion names
        write_video(data / "lavi" / f"lavi_{i}.mp4", make_frames(8, 32, 32, seed=50 + i))
    result = run("dataset", data, "--labels", "vgmshield9", "--task", "trace")
    assert result.exit_code == 0, result.output
    line = whole_line(result.stdout, "did you mean 'lavie'?")
    assert line.startswith("task 'trace' leaves out") and line.endswith("[not in label set 'vgmshield9']")
    assert "…" not in result.stdout


def test_demo_closing_commands_paste_as_printed(tmp_path, monkeypatch):
    import mmvgm.cli.trace
    import mmvgm.demo

    out = tmp_path / LONG
    rec = {"verdict": "fake", "fake_probability": 0.9, "source": {"label": "gen-blocks", "probability": 0.8}}
    fake = mmvgm.demo.DemoResult(out=out, checkpoint=out / "checkpoint", data=None, seconds=1.0,
                                 examples={"gen-blocks": out / "examples" / "gen-blocks.mp4"},
                                 results={"gen-blocks": rec})
    monkeypatch.setattr(mmvgm.demo, "run_demo", lambda *a, **k: fake)  # the run itself: tests/test_demo.py
    monkeypatch.setattr(mmvgm.cli.trace, "_print_table", lambda *a: None)
    result = run("demo", "--out", out, "-q")
    assert result.exit_code == 0, result.output
    trace = f"mmvgm trace {out / 'examples' / 'gen-blocks.mp4'} --checkpoint {out / 'checkpoint'}"
    assert whole_line(result.stdout, trace + " --explain").endswith(f"--explain {out / 'saliency.png'}")
    train = "mmvgm train --backbone videomae --task joint --data DATA/ --labels my_generators.yaml \\"
    assert whole_line(result.stdout, train).strip() == train
    assert max(map(len, result.stdout.splitlines())) < 1000  # panels fit their text, not the pipe's width


def test_scan_help_says_how_often_results_reach_the_disk():
    result = run("scan", "--help")
    text = " ".join(result.stdout.split())
    assert "flushed per batch" in text and "fsync'd at most once a second and at the end" in text
    assert "fsync'd per batch" not in text
