import json
import sys
import types

import pytest

from mmvgm.engine.evaluate import evaluate, results_table
from mmvgm.errors import CheckpointError, DependencyError, InputError
from tests.inference_helpers import make_checkpoint, make_videos

KEYS = ("accuracy", "balanced_accuracy", "macro_f1", "auc", "ap", "tpr_at_fpr_1", "tpr_at_fpr_5", "confusion",
        "per_class")


def _without_paths(results):
    return {k: v for k, v in results.items() if k not in ("checkpoint",)}


def test_outputs_and_reproducible_metrics_json(tmp_path, trained_run, synth_data):
    a = evaluate(trained_run.best_dir, synth_data, out=tmp_path / "a", workers=0, progress=False)
    b = evaluate(trained_run.best_dir, synth_data, out=tmp_path / "b", workers=0, progress=False)
    assert (tmp_path / "a" / "metrics.json").read_text() == (tmp_path / "b" / "metrics.json").read_text()
    for name in ("roc.png", "roc_detect.png", "confusion.png"):
        assert (tmp_path / "a" / name).read_bytes()[:4] == b"\x89PNG"
    stored = json.loads((tmp_path / "a" / "metrics.json").read_text())
    for key in KEYS + ("config", "seed", "versions", "calibration"):
        assert key in stored, key
    assert stored["seed"] == 2024 and stored["versions"]["torch"]
    assert set(stored["per_class"]) == {"real", "lavie", "show-1"}
    assert sum(map(sum, stored["confusion"])) == stored["n"] == 6
    assert a == b


def test_perturbation_sweep_reports_every_metric(trained_run, synth_data):
    r = evaluate(trained_run.best_dir, synth_data, perturb="jpeg:30,fps:0.5,resize:0.5,h264:35", workers=0,
                 progress=False)
    assert list(r["perturbations"]) == ["jpeg:30", "fps:0.5", "resize:0.5", "h264:35"]
    for metrics in r["perturbations"].values():
        assert all(k in metrics for k in KEYS) and metrics["n"] == r["n"]
    assert results_table(r).row_count == 5


def test_holdout_class_open_set(trained_run, synth_data):
    r = evaluate(trained_run.best_dir, synth_data, holdout_class="hotshot-xl", workers=0, progress=False)
    h = r["holdout"]
    assert h["class"] == "hotshot-xl" and h["n_heldout"] == 4 and h["n_known"] == 6
    assert 0.0 <= h["open_set_auroc"] <= 1.0 and 0.0 <= h["detect_auroc_vs_real"] <= 1.0
    # a blue, never-seen source is still far from the black real videos
    assert h["detect_auroc_vs_real"] >= 0.9
    with pytest.raises(InputError, match="one of the checkpoint's classes"):
        evaluate(trained_run.best_dir, synth_data, holdout_class="lavie", workers=0, progress=False)
    with pytest.raises(InputError, match="no videos"):
        evaluate(trained_run.best_dir, synth_data, holdout_class="svd-xt", workers=0, progress=False)


def test_split_all_and_bad_inputs(tmp_path, trained_run, synth_data):
    r = evaluate(trained_run.best_dir, synth_data, split="all", workers=0, progress=False)
    assert r["n"] == 24  # hotshot-xl is not a class of this model: left out
    with pytest.raises(InputError, match="bad perturbation"):
        evaluate(trained_run.best_dir, synth_data, perturb="blur:3", progress=False)
    with pytest.raises(CheckpointError, match="not found"):
        evaluate(tmp_path / "none", synth_data, progress=False)
    with pytest.raises(InputError, match="unknown split"):
        evaluate(trained_run.best_dir, synth_data, split="dev", progress=False)


def test_attack_needs_the_robustness_extra_or_runs(trained_run, synth_data):
    try:
        import torchattacks  # noqa: F401
    except ImportError:
        with pytest.raises(DependencyError, match="torchattacks"):
            evaluate(trained_run.best_dir, synth_data, attack="fgsm:eps=2/255", workers=0, progress=False)
        return
    r = evaluate(trained_run.best_dir, synth_data, attack="fgsm:eps=2/255", workers=0, progress=False)
    assert r["attack"]["n"] == r["n"] and r["attack"]["clean_accuracy"] == r["accuracy"]


def test_missing_torchattacks_fails_before_any_clean_work(monkeypatch, tmp_path, trained_run, synth_data):
    import mmvgm.engine.evaluate as engine

    monkeypatch.setitem(sys.modules, "torchattacks", None)  # import torchattacks now raises ImportError
    monkeypatch.setattr(engine._Runner, "__call__", lambda *a, **k: pytest.fail("clean evaluation ran"))
    with pytest.raises(DependencyError, match="--no-deps"):
        evaluate(trained_run.best_dir, synth_data, attack="fgsm:eps=2/255", workers=0, progress=False)
    with pytest.raises(DependencyError):  # before the checkpoint is even read
        evaluate(tmp_path / "none", synth_data, attack="fgsm:eps=2/255", progress=False)


def _unchanging_torchattacks():
    """torchattacks' interface with attacks that return the clean inputs: adversarial = clean."""
    class Same:
        def __init__(self, model, **params):
            self.model = model

        def __call__(self, images, labels):
            self.model(images)  # the rule's logits must be computable on the inputs
            return images.clone()

    return types.SimpleNamespace(FGSM=Same, PGD=Same)


@pytest.fixture
def detect_data(tmp_path):
    make_videos(tmp_path / "data" / "real", 2, prefix="r")
    make_videos(tmp_path / "data" / "lavie", 4, prefix="f")
    return tmp_path / "data"


@pytest.mark.parametrize("threshold", [1e-9, 1 - 1e-9])
def test_attack_clean_accuracy_is_the_tables(monkeypatch, tmp_path, detect_data, threshold):
    """Every video fake (4/6), then every video real (2/6): the attack decides as the table does,
    at the checkpoint's threshold, where it used to take the argmax (one answer for both)."""
    monkeypatch.setitem(sys.modules, "torchattacks", _unchanging_torchattacks())
    ck = make_checkpoint(tmp_path / "ck", task="detect", threshold=threshold)
    r = evaluate(ck, detect_data, split="all", attack="fgsm:eps=2/255", out=tmp_path / "out", workers=0,
                 progress=False, device="cpu")
    a = r["attack"]
    assert r["accuracy"] == (4 / 6 if threshold < 0.5 else 2 / 6)
    assert a["clean_accuracy"] == a["adversarial_accuracy"] == r["accuracy"] and a["n"] == r["n"] == 6
    assert a["threshold"] == r["threshold"] == threshold and "checkpoint's threshold" in a["decision"]
    stored = json.loads((tmp_path / "out" / "metrics.json").read_text())["attack"]
    assert stored["threshold"] == threshold and stored["decision"] == a["decision"]


def test_attack_on_a_joint_model_decides_like_the_table(monkeypatch, trained_run, synth_data):
    monkeypatch.setitem(sys.modules, "torchattacks", _unchanging_torchattacks())
    r = evaluate(trained_run.best_dir, synth_data, attack="pgd:eps=2/255,steps=2", workers=0, progress=False,
                 device="cpu")
    assert r["attack"]["clean_accuracy"] == r["accuracy"] and r["attack"]["n"] == r["n"]
    assert "most probable source" in r["attack"]["decision"]


def test_attack_model_fn_sees_pixels_in_0_1_and_matches_normal_inference(monkeypatch, trained_run, synth_data):
    import torch

    import mmvgm.attacks.robustness as robustness
    from mmvgm.data.transforms import VideoTransform
    from mmvgm.checkpoint.files import load_checkpoint

    model, meta = load_checkpoint(trained_run.best_dir)
    transform = VideoTransform.from_config(meta.preprocess)
    seen = []

    def fake_evaluate_attack(model_fn, batches, spec, device=None, rule=None, **kwargs):
        for x01, y in batches:
            assert x01.min() >= 0 and x01.max() <= 1 and set(y.tolist()) <= {0, 1, 2}  # joint: real + 2
            with torch.no_grad():
                got = model_fn(x01)
                want = model(transform.normalize((x01 * 255).round().to(torch.uint8)))
            for key in ("detect", "trace"):
                assert torch.equal(got[key], want[key])  # the very input the table's scoring gives it
            seen.append(len(y))
        return {"attack": str(spec), "n": sum(seen), "clean_accuracy": 1.0, "adversarial_accuracy": 0.0}

    monkeypatch.setattr(robustness, "require_torchattacks", lambda: None)
    monkeypatch.setattr(robustness, "evaluate_attack", fake_evaluate_attack)
    r = evaluate(trained_run.best_dir, synth_data, attack="pgd:eps=2/255,steps=2", workers=0, progress=False,
                 device="cpu")
    assert r["attack"]["n"] == r["n"] == sum(seen)
