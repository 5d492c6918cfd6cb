import json

import numpy as np
import pytest
import torch
import yaml
from safetensors.torch import load_file

from mmvgm.checkpoint import calibration as calibration_module
from mmvgm.engine import evaluate as evaluate_module
from mmvgm.checkpoint.files import load_checkpoint, read_meta
from mmvgm.engine.tasks import task_label_set, task_splits
from mmvgm.engine.train import EpochSampler, linear_schedule, load_train_config, train
from mmvgm.errors import ConfigError, InputError
from tests.engine.synthetic import tiny_config


def _no_timing(history):
    return [{k: v for k, v in r.items() if "per_s" not in k and not k.endswith("_s")} for r in history]


def test_checkpoints_hold_everything_to_rebuild(trained_run):
    stored = yaml.safe_load((trained_run.best_dir / "mmvgm.yaml").read_text())
    meta = read_meta(trained_run.best_dir)
    for key in ("model_cfg", "task", "labels", "preprocess", "frames", "sampling", "calibration", "precision",
                "versions", "data", "seed", "config"):
        assert stored.get(key) is not None and getattr(meta, key) is not None, key
    assert meta.labels["classes"][0]["name"] == "real" and meta.task == "joint"
    assert set(meta.calibration.to_dict()) >= {"temperature", "threshold", "open_set_threshold",
                                               "trace_temperature"}
    assert meta.precision == "fp32"  # mixed_precision auto on a CPU run: validation scored in fp32
    assert meta.data["unused"] == {"hotshot-xl": 4}  # not in the label file: left out, and said so
    assert (trained_run.out_dir / "history.jsonl").read_text().count("\n") == 2
    assert (trained_run.last_dir / "train_state.json").is_file()
    assert not (trained_run.best_dir / "train_state.json").exists()


def test_save_load_round_trip_gives_identical_logits(trained_run):
    model, meta = load_checkpoint(trained_run.last_dir)
    again, _ = load_checkpoint(trained_run.last_dir)
    x = torch.randn(2, meta.frames, 3, 32, 32)
    with torch.no_grad():
        a, b = model(x), again(x)
    assert torch.equal(a["detect"], b["detect"]) and torch.equal(a["trace"], b["trace"])
    weights = load_file(str(trained_run.last_dir / "model.safetensors"))
    assert all(torch.equal(weights[k], v) for k, v in model.state_dict().items())


def test_learns_visibly_different_classes_above_chance(trained_run, synth_data):
    results = evaluate_module.evaluate(trained_run.best_dir, synth_data, split="test", workers=0, progress=False)
    assert results["n"] == 6 and results["split_matches_training"]
    # 3 balanced classes: chance is 1/3; colours make them easy
    assert results["balanced_accuracy"] >= 0.8, results["confusion"]
    assert results["detect"]["auc"] >= 0.9


def test_resume_after_a_kill_equals_an_uninterrupted_run(tmp_path, trained_run, synth_data, synth_labels):
    class Killed(Exception):
        pass

    def kill_after_first_epoch(epoch, record):
        if epoch == 0:
            raise Killed

    out = tmp_path / "killed"
    with pytest.raises(Killed):
        train(tiny_config(synth_data, out, synth_labels), on_epoch_end=kill_after_first_epoch)
    assert read_meta(out / "last").epoch == 1
    # resuming needs only --out (the stored config is reused)
    resumed = train(load_train_config(None, {"out": str(out), "resume": True}))
    straight = load_file(str(trained_run.last_dir / "model.safetensors"))
    again = load_file(str(out / "last" / "model.safetensors"))
    assert straight.keys() == again.keys()
    assert all(torch.equal(straight[k], again[k]) for k in straight)
    assert _no_timing(resumed.history) == _no_timing(trained_run.history)
    assert read_meta(out / "last").calibration.to_dict() == read_meta(trained_run.last_dir).calibration.to_dict()
    # two trainings with the same seed and data -> the same metrics JSON (paths aside)
    a, b = (evaluate_module.evaluate(d, synth_data, workers=0, progress=False)
            for d in (trained_run.last_dir, out / "last"))
    drop = ("checkpoint", "config")
    assert json.dumps({k: v for k, v in a.items() if k not in drop}) == \
        json.dumps({k: v for k, v in b.items() if k not in drop})


def test_resume_refuses_a_changed_config(trained_run):
    cfg = load_train_config(None, {"out": str(trained_run.out_dir), "resume": True, "lr": 0.5})
    with pytest.raises(ConfigError, match="lr"):
        train(cfg)


def test_calibration_sees_only_the_validation_split(tmp_path, monkeypatch, synth_data, synth_labels):
    cfg = tiny_config(synth_data, tmp_path / "spy", synth_labels, epochs=1, max_steps=1)
    predicted, fitted = [], []
    real_predict, real_fit = evaluate_module.predict, calibration_module.fit_calibration

    def spy_predict(*args, **kwargs):
        preds = real_predict(*args, **kwargs)
        predicted.append(sorted(preds.paths))
        return preds

    def spy_fit(logits, y, *args, **kwargs):
        fitted.append((len(y), {k: np.array(v) for k, v in logits.items()}))
        return real_fit(logits, y, *args, **kwargs)

    monkeypatch.setattr(evaluate_module, "predict", spy_predict)
    monkeypatch.setattr(calibration_module, "fit_calibration", spy_fit)
    train(cfg)
    splits, _ = task_splits(synth_data, "joint", task_label_set("joint", synth_labels), [0.5, 0.25, 0.25], 2024)
    val = sorted(s.path for s in splits["val"])
    assert predicted == [val]
    assert not set(val) & {s.path for s in splits["test"]}
    assert len(fitted) == 1 and fitted[0][0] == len(val)


@pytest.mark.parametrize("override, message", [
    ({"backbone": "videomae_tinyy"}, "unknown backbone 'videomae_tinyy'"),
    ({"task": "tracee"}, "did you mean 'trace'"),
    ({"batchsize": 2}, "did you mean 'batch_size'"),
    ({"split": {"ratio": [0.8, 0.2]}}, "did you mean 'ratios'"),
    ({"data": "/nonexistent/data"}, "dataset not found"),
    ({"mixed_precision": "fp8"}, "mixed_precision"),
    ({"best_metric": "macro-f1"}, "did you mean 'macro_f1'"),
])
def test_bad_configs_fail_before_training(tmp_path, synth_data, synth_labels, override, message):
    cfg = tiny_config(synth_data, tmp_path / "x", synth_labels)
    cfg.update(override)
    with pytest.raises((ConfigError, InputError), match=message):
        train(cfg)
    assert not (tmp_path / "x" / "last").exists()


def test_train_config_files_and_overrides(tmp_path):
    cfg = load_train_config("videomae_trace9", {"lr": 3e-4, "split.seed": 7})
    assert cfg["backbone"] == "videomae" and cfg["lr"] == 3e-4 and cfg["split"]["seed"] == 7
    assert cfg["split"]["ratios"] == [0.8, 0.1, 0.1] and cfg["batch_size"] == 4
    typo = tmp_path / "t.yaml"
    typo.write_text("backbone: videomae_tiny\nepoch: 3\n")
    with pytest.raises(ConfigError, match="did you mean 'epochs'"):
        load_train_config(typo)


def test_epoch_sampler_and_schedule():
    s = EpochSampler(10, seed=1)
    s.set_epoch(0)
    first = list(s)
    s.set_epoch(1)
    assert sorted(first) == list(range(10)) and list(s) != first
    s.set_epoch(0)
    assert list(s) == first
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    sched = linear_schedule(opt, warmup=2, total=6)
    lrs = []
    for _ in range(6):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert lrs[0] < lrs[1] < lrs[2] == 1.0 and lrs[-1] < lrs[3] and opt.param_groups[0]["lr"] == 0.0


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_bf16_training_and_evaluation(tmp_path, synth_data, synth_labels):
    cfg = tiny_config(synth_data, tmp_path / "gpu", synth_labels, cpu=False, mixed_precision="bf16", epochs=1)
    result = train(cfg)
    assert result.global_step > 0 and result.history[0]["train_loss"] == result.history[0]["train_loss"]  # not NaN
    r = evaluate_module.evaluate(result.best_dir, synth_data, device="cuda", workers=0, progress=False)
    assert r["n"] == 6 and 0.0 <= r["accuracy"] <= 1.0


def test_two_trainings_in_one_process_may_differ_in_precision(tmp_path, monkeypatch, synth_data, synth_labels):
    """accelerate's process-wide state outlives a run; the next run may still choose its own precision,
    validates under it, and the checkpoint records it."""
    validated = []
    real_predict = evaluate_module.predict

    def spy_predict(*args, **kwargs):
        validated.append(kwargs["precision"])
        return real_predict(*args, **kwargs)

    monkeypatch.setattr(evaluate_module, "predict", spy_predict)
    for i, (precision, recorded) in enumerate((("no", "fp32"), ("bf16", "bf16"), ("no", "fp32"))):
        cfg = tiny_config(synth_data, tmp_path / str(i), synth_labels, epochs=1, max_steps=1,
                          mixed_precision=precision)  # bf16 autocast also runs on CPU
        result = train(cfg)
        assert result.global_step == 1
        assert validated[-1] == recorded
        assert read_meta(result.last_dir).precision == read_meta(result.best_dir).precision == recorded


def test_training_from_hf_weights_uses_their_processor_statistics(tmp_path, synth_data, synth_labels):
    """--weights DIR with a preprocessor_config.json: the checkpoint's preprocessing (what trace and
    scan apply later) carries the statistics the weights were trained with."""
    from mmvgm.models import build_backbone

    weights = tmp_path / "weights"
    build_backbone("videomae_tiny").videomae.save_pretrained(weights)
    (weights / "preprocessor_config.json").write_text(
        json.dumps({"image_mean": [0.1, 0.2, 0.3], "image_std": [0.3, 0.3, 0.3], "resample": 3}))
    result = train(tiny_config(synth_data, tmp_path / "run", synth_labels, epochs=1, weights=str(weights)))
    pre = read_meta(result.last_dir).preprocess
    assert pre["mean"] == [0.1, 0.2, 0.3] and pre["std"] == [0.3, 0.3, 0.3] and pre["resample"] == "bicubic"


def test_calibration_warnings_are_printed_once_and_kept_in_the_history(tmp_path, capsys, synth_data, synth_labels):
    """2 real validation videos cannot resolve a 5% false-positive target: each epoch's history
    record says so, the train output says it once, not every epoch."""
    result = train(tiny_config(synth_data, tmp_path / "warn", synth_labels))
    records = [json.loads(line) for line in (result.out_dir / "history.jsonl").read_text().splitlines()]
    assert len(records) == 2 and [r["calibration_warnings"] for r in records] == \
        [r["calibration_warnings"] for r in result.history]
    for record in records:
        assert any("needs at least 20 real validation videos" in w and "fitted on 2" in w
                   for w in record["calibration_warnings"])
    distinct = {w for r in records for w in r["calibration_warnings"]}
    assert sum(len(r["calibration_warnings"]) for r in records) > len(distinct)  # repeated, printed once
    assert capsys.readouterr().err.count("warning: calibration:") == len(distinct)
    assert result.calibration["warnings"] == read_meta(result.best_dir).calibration.warnings
    assert read_meta(result.best_dir).calibration.fpr_interval == pytest.approx([0.0, 1 - 0.025 ** 0.5])


def test_trace_and_eval_show_what_the_threshold_was_fitted_on(trained_run, synth_data, tmp_path):
    """The interval is a property of the checkpoint: trace's table and eval's output and
    metrics.json show it (trace --json keeps its per-video schema)."""
    from click.testing import CliRunner

    from mmvgm.cli import cli

    summary = "fitted for 5% FPR on 2 real validation videos: 0 false positives, 95% interval on the FPR 0% to 84%"
    wide = {"COLUMNS": "400"}
    video = str(next((synth_data / "real").iterdir()))
    table = CliRunner().invoke(cli, ["trace", video, "-c", str(trained_run.best_dir)], env=wide)
    assert table.exit_code == 0, table.output
    assert summary in table.output
    line = CliRunner().invoke(cli, ["trace", video, "-c", str(trained_run.best_dir), "--json"])
    assert "interval" not in line.output
    out = tmp_path / "ev"
    ev = CliRunner().invoke(cli, ["eval", "-c", str(trained_run.best_dir), "-d", str(synth_data), "--out", str(out),
                                  "--workers", "0", "--no-progress"], env=wide)
    assert ev.exit_code == 0, ev.output
    assert summary in ev.output and "warning: calibration: a 5% false-positive target" in ev.output
    metrics = json.loads((out / "metrics.json").read_text())
    assert summary in metrics["threshold_summary"]
    assert metrics["calibration"]["n_real"] == 2 and metrics["calibration"]["false_positives"] == 0
