"""Detection without a fake corpus, and enrolling a generator from a few examples, on synthetic media.

Prints, measured in one run on the same data:

1. ``fit-real`` (the D3 statistic over a frozen, randomly initialised ``timm_tiny``, fitted on
   the real videos alone) against a tiny VideoMAE detector trained on real *and* generated
   videos (``tiny_detect``): test AUC, fit/train time, and scoring time per 1000 videos
   (``Predictor.predict_batch``). The generated videos are the demo's real scenes with
   temporal faults only (``real-flicker``: brightness wavering; ``real-jitter``: frames
   repeated and skipped), so only temporal statistics tell them apart.
2. The few-shot curve of ``eval --enrol-curve``: a tiny joint model trained on three sources,
   a fourth held out and enrolled from k of its videos, for both enrolment methods
   (``prototype``, ``refit``): attribution accuracy on all test videos, on the new class and
   on the existing classes.

    python benchmarks/bench_zeroshot.py
    python benchmarks/bench_zeroshot.py --per-source 60 --epochs 15
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout, uninstalled

from mmvgm.demo import make_dataset, write_labels  # noqa: E402

DETECT_SOURCES = ("real", "real-flicker", "real-jitter")
TRACE_SOURCES = ("real", "gen-flicker", "gen-blocks", "real-flicker")
HELD_OUT = "real-jitter"


def fit_real_vs_trained(root: Path, args) -> None:
    from mmvgm.engine.evaluate import evaluate
    from mmvgm.engine.fit_real import fit_real
    from mmvgm.engine.train import load_train_config, train

    data = root / "detect"
    make_dataset(data, per_source=args.per_source, frames=args.frames, size=args.size, seed=1, sources=DETECT_SOURCES)
    t0 = time.perf_counter()
    fitted = fit_real(data / "real", "timm_tiny", root / "fit-real", frames=args.frames, workers=0,
                      progress=False, synthetic=True, ratios=(0.5, 0.3, 0.2))
    fit_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    trained = train(load_train_config("tiny_detect", {
        "data": str(data), "out": str(root / "trained"), "epochs": args.epochs, "progress": False, "cpu": True,
        "synthetic": True, "split": {"ratios": [0.5, 0.3, 0.2], "seed": 2024, "duplicates": "warn"}}))
    train_s = time.perf_counter() - t0
    checkpoints = {"fit-real (no fakes)": (fitted.checkpoint, fit_s),
                   "trained tiny_detect": (trained.best_dir, train_s)}
    scoring = _per_1000(checkpoints, data)
    rows = [(name, evaluate(ck, data, progress=False, workers=0), spent, scoring[name])
            for name, (ck, spent) in checkpoints.items()]
    print(f"\n1. detection on {args.per_source} videos per source ({', '.join(DETECT_SOURCES)}), "
          f"{args.frames} frames at {args.size} px; test split of each: the same videos")
    print(f"{'detector':<22} {'test AUC':>8} {'TPR@5%FPR':>9} {'fit/train s':>11} {'s per 1000 videos':>17}")
    for name, m, spent, per in rows:
        print(f"{name:<22} {m['auc']:>8.4f} {m['tpr_at_fpr_5'] or 0:>9.4f} {spent:>11.1f} {per:>17.1f}")
    (_, a, fs, fp), (_, b, ts, tp) = rows
    print(f"ratios fit-real / trained: AUC {a['auc'] / b['auc']:.2f}, fitting time {fs / ts:.3f}, "
          f"scoring time {fp / tp:.2f}")


def _per_1000(checkpoints: dict, data: Path, rounds: int = 3) -> dict:
    """Seconds per 1000 videos of ``predict_batch`` over every video of ``data``, per checkpoint:
    the median of ``rounds`` passes taken in alternation, so that other load on the machine
    weighs on both alike."""
    import statistics

    from mmvgm.io.discovery import list_inputs
    from mmvgm.predict.predictor import Predictor

    paths, _ = list_inputs(data)
    predictors = {name: Predictor.from_checkpoint(ck, device="cpu") for name, (ck, _) in checkpoints.items()}
    seconds = {name: [] for name in predictors}
    for p in predictors.values():
        p.predict_batch(paths[:8], batch_size=16)  # warm-up: first-call costs are not per video
    for _ in range(rounds):
        for name, p in predictors.items():
            t0 = time.perf_counter()
            p.predict_batch(paths, batch_size=16)
            seconds[name].append(1000 * (time.perf_counter() - t0) / len(paths))
    for p in predictors.values():
        p.close()
    return {name: statistics.median(values) for name, values in seconds.items()}


def few_shot_curve(root: Path, args) -> None:
    from mmvgm.engine.evaluate import evaluate
    from mmvgm.engine.train import train

    data = root / "trace"
    make_dataset(data, per_source=args.per_source, frames=args.frames, size=args.size, seed=2,
                 sources=(*TRACE_SOURCES, HELD_OUT))
    labels = write_labels(root / "labels.yaml", sources=TRACE_SOURCES)
    run = train({"backbone": "videomae_tiny", "task": "joint", "data": str(data), "labels": str(labels),
                 "epochs": args.epochs, "batch_size": 8, "lr": 5e-3, "weight_decay": 0.0, "workers": 0,
                 "split": {"ratios": [0.6, 0.2, 0.2], "seed": 2024, "duplicates": "warn"}, "out": str(root / "joint"),
                 "cpu": True, "progress": False, "synthetic": True})
    ks = [k for k in (1, 5, 10, 20) if k < args.per_source]
    print(f"\n2. enrolling '{HELD_OUT}' into a joint tiny VideoMAE trained on {', '.join(TRACE_SOURCES[1:])} "
          f"(+ real)")
    for method in ("prototype", "refit"):
        t0 = time.perf_counter()
        curve = evaluate(run.best_dir, data, holdout_class=HELD_OUT, enrol_curve=ks, enrol_method=method,
                         progress=False, workers=0, out=root / f"eval-{method}")["enrol_curve"]
        before = curve["before"]
        print(f"{method} (mean over {curve['repeats']} draws): open-set AUROC before "
              f"{before['open_set_auroc']:.4f}, existing-class accuracy before "
              f"{before['existing_accuracy']:.4f} ({time.perf_counter() - t0:.1f} s with the embedding passes)")
        print(f"  {'k':>3} {'all':>15} {'new class':>15} {'existing':>15}")
        for p in curve["curve"]:
            print(f"  {p['k']:>3} " + " ".join(f"{p[key]:.3f} ± {p[key + '_std']:.3f}"
                                               for key in ("accuracy", "new_class_accuracy", "existing_accuracy")))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--per-source", type=int, default=40)
    parser.add_argument("--frames", type=int, default=16)
    parser.add_argument("--size", type=int, default=48)
    parser.add_argument("--epochs", type=int, default=8)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="mmvgm-bench-zeroshot-") as tmp:
        fit_real_vs_trained(Path(tmp), args)
        few_shot_curve(Path(tmp), args)


if __name__ == "__main__":
    main()
