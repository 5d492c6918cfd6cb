import json

import pytest

from mmvgm.engine.evaluate import evaluate, results_table
from mmvgm.errors import CheckpointError, DependencyError, InputError

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
        with pytest.raises(DependencyError, match="robustness"):
            evaluate(trained_run.best_dir, synth_data, attack="fgsm:eps=2/255", workers=0, progress=False)
        return
    r = evaluate(trained_run.best_dir, synth_data, attack="fgsm:eps=2/255", workers=0, progress=False)
    assert r["attack"]["n"] == r["n"]


def test_attack_model_fn_sees_pixels_in_0_1_and_matches_normal_inference(monkeypatch, trained_run, synth_data):
    import torch

    import mmvgm.attacks.robustness as robustness
    from mmvgm.data.transforms import VideoTransform
    from mmvgm.checkpoint.files import load_checkpoint

    model, meta = load_checkpoint(trained_run.best_dir)
    transform = VideoTransform.from_config(meta.preprocess)
    seen = []

    def fake_evaluate_attack(model_fn, batches, spec, device=None, output_key=None):
        for x01, y in batches:
            assert x01.min() >= 0 and x01.max() <= 1 and set(y.tolist()) <= {0, 1}
            with torch.no_grad():
                got = model_fn(x01)[output_key]
                want = model(transform.normalize((x01 * 255).round().to(torch.uint8)))[output_key]
            assert torch.allclose(got, want, atol=1e-4)
            seen.append(len(y))
        return {"attack": str(spec), "n": sum(seen), "clean_accuracy": 1.0, "adversarial_accuracy": 0.0}

    monkeypatch.setattr(robustness, "_torchattacks", lambda: None)
    monkeypatch.setattr(robustness, "evaluate_attack", fake_evaluate_attack)
    r = evaluate(trained_run.best_dir, synth_data, attack="pgd:eps=2/255,steps=2", workers=0, progress=False,
                 device="cpu")
    assert r["attack"]["n"] == r["n"] == sum(seen)
