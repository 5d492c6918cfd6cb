import json

import pytest
import torch

from mmvgm.errors import DecodeError, InputError
from mmvgm.lvd.evaluate import balance, evaluate_flags, load_flags, sweep, write_report


def _table():
    # 4 normal, 2 unsafe; steps = 10
    return {
        "0": {"n0": [0] * 10, "n1": [1] * 10, "n2": [0, 1] * 5, "n3": [0] * 10},
        "1": {"u0": [1] * 10, "u1": [1, 1, 0, 0, 0, 0, 0, 0, 0, 0]},
    }


def test_evaluate_hand_table_unbalanced():
    # eta 4, lambda 0.5 -> 2 flags in the first 4 steps
    m = evaluate_flags(_table(), eta=4, lam=0.5, balanced=False)
    # predictions: n0 safe, n1 unsafe, n2 unsafe (2 of 4), n3 safe; u0 unsafe, u1 unsafe
    assert (m["n_normal"], m["n_unsafe"]) == (4, 2)
    assert m["accuracy"] == pytest.approx(4 / 6)
    assert m["precision"] == pytest.approx(2 / 4) and m["recall"] == 1.0
    assert m["f1"] == pytest.approx(2 * 0.5 / 1.5)
    # batch rule: flagged videos stop at eta=4, safe ones run 10
    assert m["mean_steps_run"] == pytest.approx((10 + 4 + 4 + 10 + 4 + 4) / 6)
    assert m["compute_saved"] == pytest.approx(1 - 36 / 60)
    assert m["compute_saved_unsafe"] == pytest.approx(1 - 8 / 20)
    assert m["compute_saved_normal"] == pytest.approx(1 - 28 / 40)
    seq = evaluate_flags(_table(), eta=4, lam=0.5, sequential=True, balanced=False)
    # sequential: n1 at 2, n2 at 4, u0 at 2, u1 at 2
    assert seq["mean_steps_run"] == pytest.approx((10 + 2 + 4 + 10 + 2 + 2) / 6)
    assert seq["accuracy"] == m["accuracy"]
    for key in ("accuracy", "precision", "recall", "f1", "n_normal", "n_unsafe", "eta", "lambda",
                "total_steps", "mean_steps_run", "compute_saved"):
        assert key in m
    assert m["lambda"] == 0.5 and m["total_steps"] == 10


def test_balancing_is_seeded_and_subsamples_larger_class():
    a = balance(_table(), seed=1)
    assert len(a["0"]) == len(a["1"]) == 2 and a == balance(_table(), seed=1)
    seen = {tuple(sorted(balance(_table(), seed=s)["0"])) for s in range(20)}
    assert len(seen) > 1  # the seed matters
    m = evaluate_flags(_table(), eta=4, lam=0.5, seed=3)
    assert m["n_normal"] == m["n_unsafe"] == 2 and m["n_before_balancing"] == {"normal": 4, "unsafe": 2}


def test_bad_inputs():
    with pytest.raises(InputError, match="class is empty"):
        evaluate_flags({"0": {"a": [0] * 5}, "1": {}}, eta=2)
    with pytest.raises(InputError, match="larger than the number"):
        evaluate_flags(_table(), eta=11)
    with pytest.raises(InputError, match="lambda"):
        evaluate_flags(_table(), eta=4, lam=1.5)
    with pytest.raises(InputError, match="lambda"):
        evaluate_flags(_table(), eta=4, lam=0)
    for fn in (evaluate_flags, sweep):
        with pytest.raises(InputError, match="no videos"):
            fn({"0": {}, "1": {}}, balanced=False)


def test_load_json_and_research_pth(tmp_path):
    p = tmp_path / "f.json"
    p.write_text(json.dumps(_table()))
    assert load_flags(p) == _table()
    t = {0: {k: torch.tensor(v) for k, v in _table()["0"].items()},
         1: {k: torch.tensor(v) for k, v in _table()["1"].items()}}
    torch.save(t, tmp_path / "f.pth")
    assert load_flags(tmp_path / "f.pth") == _table()
    data = (tmp_path / "f.pth").read_bytes()
    (tmp_path / "cut.pth").write_bytes(data[:100])
    with pytest.raises(DecodeError, match="truncated"):
        load_flags(tmp_path / "cut.pth")
    p.write_text('{"0": {"a": [0, 2]}, "1": {}}')
    with pytest.raises(InputError, match="0 or 1"):
        load_flags(p)
    p.write_text('{"0": {"a": [0, 1]}, "1": {"b": [1]}}')
    with pytest.raises(InputError, match="same number of steps"):
        load_flags(p)
    p.write_text('{"2": {}}')
    with pytest.raises(InputError, match="unknown class key"):
        load_flags(p)


def test_sweep_rows_and_report_files(tmp_path):
    rows = sweep(_table(), lambdas=["0.5", "1"], seed=0)
    assert len(rows) == 2 * 10
    assert {r["eta"] for r in rows} == set(range(1, 11))
    files = write_report(tmp_path, evaluate_flags(_table(), eta=4, lam=0.5), rows)
    assert [f.name for f in files] == ["metrics.json", "sweep.csv", "sweep.png"]
    assert (tmp_path / "sweep.png").read_bytes()[:4] == b"\x89PNG"
    assert (tmp_path / "sweep.csv").read_text().splitlines()[0].startswith("lambda,eta,accuracy")
    assert "torch" in json.loads((tmp_path / "metrics.json").read_text())["versions"]
