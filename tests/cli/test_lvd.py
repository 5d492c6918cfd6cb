import json
import subprocess
import sys

from click.testing import CliRunner

from mmvgm.cli import cli
from tests.lvd.conftest import single_thread_torch, tiny_pipeline_dir  # noqa: F401 (fixtures)


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


def test_lvd_eval_never_overwrites_its_scores_file(tmp_path):
    p = _flags(tmp_path)
    scores = p.rename(tmp_path / "metrics.json")
    before = scores.read_bytes()
    r = CliRunner().invoke(cli, ["lvd-eval", "--scores", str(scores), "--out", str(tmp_path)])
    assert r.exit_code == 1 and "refusing to overwrite the input" in r.stderr
    assert scores.read_bytes() == before


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


def test_lvd_import_cli_and_errors(tmp_path):
    import torch

    torch.save(torch.randn(3, 2, 4, 1, 2, 2), tmp_path / "x.pth")
    (tmp_path / "l.csv").write_text("0,1,,,\n2,,,,\n")
    r = CliRunner().invoke(cli, ["lvd-import", str(tmp_path / "x.pth"), "--labels", str(tmp_path / "l.csv"),
                                 "--out", str(tmp_path / "s"), "--json"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["per_category"]["distorted"] == 2
    (tmp_path / "bad.csv").write_text("0,,,,7\n")
    r = CliRunner().invoke(cli, ["lvd-import", str(tmp_path / "x.pth"), "--labels", str(tmp_path / "bad.csv"),
                                 "--out", str(tmp_path / "s2")])
    assert r.exit_code == 1 and "out of range" in r.stderr and "bad.csv" in r.stderr
    (tmp_path / "cut.pth").write_bytes((tmp_path / "x.pth").read_bytes()[:300])
    r = CliRunner().invoke(cli, ["lvd-import", str(tmp_path / "cut.pth"), "--labels", str(tmp_path / "l.csv"),
                                 "--out", str(tmp_path / "s3")])
    assert r.exit_code == 1 and "truncated" in r.stderr


def test_lvd_record_cli_from_a_saved_pipeline(tmp_path, tiny_pipeline_dir):
    (tmp_path / "p.txt").write_text("the cat\n\n# comment\na dog\n")
    (tmp_path / "l.csv").write_text(",,,1,\n")
    r = CliRunner().invoke(cli, ["lvd-record", "--pipeline", str(tiny_pipeline_dir), "--prompts",
                                 str(tmp_path / "p.txt"), "--labels", str(tmp_path / "l.csv"), "--steps", "3",
                                 "--frames", "4", "--height", "16", "--width", "16", "--device", "cpu",
                                 "--out", str(tmp_path / "traj"), "--json"])
    assert r.exit_code == 0, r.output
    s = json.loads(r.stdout)
    assert s["shape"] == [3, 4, 4, 8, 8] and s["per_category"]["violent"] == 1 and s["normal"] == 1
    from mmvgm.lvd.store import TrajectoryStore

    store = TrajectoryStore(tmp_path / "traj")
    assert store.get("p00001").meta["prompt"] == "a dog" and store.get("p00001").meta["seed"] == 1
    assert store.info["scheduler"] == "DDIMScheduler" and len(store.get("p00000").meta["timesteps"]) == 3
    r = CliRunner().invoke(cli, ["lvd-record", "--pipeline", str(tmp_path), "--prompts", str(tmp_path / "p.txt"),
                                 "--out", str(tmp_path / "t2")])
    assert r.exit_code == 1 and "model_index.json" in r.stderr


def test_lvd_train_then_eval_models_on_the_test_split(tmp_path):
    from tests.lvd.test_train import make_store

    store = make_store(tmp_path / "traj", n_normal=12, n_unsafe=12)
    r = CliRunner().invoke(cli, ["lvd-train", "--data", str(store), "--mode", "conditioned", "--categories",
                                 "violent", "--epochs", "4", "--lr", "2e-3", "--device", "cpu",
                                 "--out", str(tmp_path / "m"), "--json"])
    assert r.exit_code == 0, r.output
    s = json.loads(r.stdout)
    assert s["models"] == 1 and s["split"]["test"] >= 4
    r = CliRunner().invoke(cli, ["lvd-eval", "--models", str(tmp_path / "m"), "--data", str(store), "--eta", "3",
                                 "--lambda", "0.6", "--sequential", "--device", "cpu", "--json",
                                 "--out", str(tmp_path / "rep")])
    assert r.exit_code == 0, r.output
    m = json.loads(r.stdout)
    assert m["total_steps"] == 3 and m["n_normal"] == m["n_unsafe"] >= 2
    assert m["accuracy"] >= 0.75
    assert (tmp_path / "rep" / "metrics.json").exists()
    r = CliRunner().invoke(cli, ["lvd-train", "--data", str(store), "--out", str(tmp_path / "x"),
                                 "--steps", "0-9"])
    assert r.exit_code == 1 and "outside the recorded steps" in r.stderr
    r = CliRunner().invoke(cli, ["lvd-eval", "--models", str(tmp_path), "--data", str(store)])
    assert r.exit_code == 1 and "no lvd.yaml" in r.stderr
