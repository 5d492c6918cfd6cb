import json
import subprocess
import sys

from click.testing import CliRunner

from mmvgm.cli import cli


def _flags(tmp_path):
    table = {"0": {f"n{i}": [0] * 30 for i in range(6)},
             "1": {f"u{i}": [1] * 30 for i in range(4)}}
    table["0"]["n0"] = [1] * 30  # one false positive
    p = tmp_path / "flags.json"
    p.write_text(json.dumps(table))
    return p


def test_lvd_eval_scores_json(tmp_path):
    p = _flags(tmp_path)
    r = CliRunner().invoke(cli, ["lvd-eval", "--scores", str(p), "--json", "--no-balance", "--sequential"])
    assert r.exit_code == 0, r.output
    m = json.loads(r.stdout)
    assert m["eta"] == 20 and m["lambda"] == 0.6 and m["total_steps"] == 30
    assert m["accuracy"] == 0.9 and m["recall"] == 1.0 and m["precision"] == 0.8
    # 5 flagged videos stop at step 12; 5 safe run 30
    assert m["mean_steps_run"] == (5 * 12 + 5 * 30) / 10
    r = CliRunner().invoke(cli, ["lvd-eval", "--scores", str(p), "--sweep", "--out", str(tmp_path / "rep"),
                                 "--sweep-lambdas", "0.6,1"])
    assert r.exit_code == 0, r.output
    assert "compute saved" in r.stdout and (tmp_path / "rep" / "sweep.png").exists()
    assert len((tmp_path / "rep" / "sweep.csv").read_text().splitlines()) == 1 + 2 * 30


def test_lvd_eval_errors_are_one_line(tmp_path):
    p = _flags(tmp_path)
    for args, msg in ((["--eta", "31"], "larger than the number"), (["--lambda", "1.2"], "lambda"),
                      (["--lambda", "0"], "lambda")):
        r = CliRunner().invoke(cli, ["lvd-eval", "--scores", str(p), *args])
        assert r.exit_code == 1 and msg in r.stderr and "Traceback" not in r.output
        assert r.stderr.count("\n") == 1
    empty = tmp_path / "e.json"
    empty.write_text('{"0": {"a": [0,0]}, "1": {}}')
    r = CliRunner().invoke(cli, ["lvd-eval", "--scores", str(empty), "--eta", "2"])
    assert r.exit_code == 1 and "empty" in r.stderr
    r = CliRunner().invoke(cli, ["lvd-eval"])
    assert r.exit_code == 1 and "either --scores" in r.stderr


def test_lvd_eval_subprocess_smoke(tmp_path):
    p = _flags(tmp_path)
    r = subprocess.run([sys.executable, "-m", "mmvgm", "lvd-eval", "--scores", str(p), "--json"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["n_normal"] == 4
