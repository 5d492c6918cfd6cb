"""``mmvgm eval``: argument parsing and printing over ``mmvgm.engine.evaluate.evaluate``."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import click

from mmvgm.cli.options import precision_option


@click.command(name="eval")
@click.option("--checkpoint", "-c", required=True, type=click.Path(),
              help="Checkpoint directory (e.g. runs/x/best) or hub id (org/name[@revision]).")
@click.option("--data", "-d", required=True, type=click.Path(),
              help="The dataset: a folder or a manifest (.csv, .jsonl, .ndjson, .txt), as for `mmvgm train`; "
                   "the test split is recomputed from the checkpoint's seed.")
@click.option("--split", type=click.Choice(["test", "val", "train", "all"]), default="test", show_default=True,
              help="Which split of --data; 'all' evaluates every video (e.g. a separate test set).")
@click.option("--out", "-o", default=None, type=click.Path(),
              help="Folder for metrics.json, roc.png, confusion.png [default: <run>/eval-<checkpoint>-<split>].")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object (the metrics) on stdout.")
@click.option("--perturb", default=None,
              help="Robustness sweep, e.g. jpeg:50,h264:28,resize:0.5,fps:0.5 ('+' chains: jpeg:70+resize:0.5).")
@click.option("--holdout-class", default=None,
              help="A data label the model never saw: AUROC of known vs this source (open set).")
@click.option("--enrol-curve", default=None,
              help="With --holdout-class: enrol it from k of its videos for each k (e.g. 1,5,10,20) and report "
                   "attribution accuracy; writes enrol_curve.png.")
@click.option("--enrol-method", type=click.Choice(["prototype", "refit"]), default="prototype", show_default=True,
              help="How --enrol-curve enrols (as mmvgm enrol --method).")
@click.option("--attack", default=None,
              help="Clean and adversarial accuracy at the table's threshold, e.g. pgd:eps=4/255,steps=10 "
                   "(needs torchattacks: python -m pip install --no-deps \"torchattacks>=3.5\").")
@click.option("--batch-size", type=click.IntRange(min=1), default=8, show_default=True)
@click.option("--workers", type=click.IntRange(min=0), default=2, show_default=True)
@click.option("--device", default="auto", show_default=True, help="auto | cpu | cuda | cuda:N")
@click.option("--threads", type=click.IntRange(min=1), default=None,
              help="Torch compute threads of the scoring loop (also $MMVGM_THREADS) [default: torch's].")
@click.option("--no-progress", is_flag=True, help="No progress bars.")
@click.option("--predictions", "predictions_out", default=None, type=click.Path(dir_okay=False),
              help="Write the per-file verdicts (scan's JSONL schema) with each file's true 'label'.")
@precision_option
def command(checkpoint: str, data: str, split: str, out: Optional[str], as_json: bool, perturb: Optional[str],
            holdout_class: Optional[str], enrol_curve: Optional[str], enrol_method: str,
            attack: Optional[str], batch_size: int, workers: int, device: str,
            no_progress: bool, predictions_out: Optional[str], precision: str,
            threads: Optional[int]) -> None:
    """Evaluate a checkpoint: accuracy, balanced accuracy, macro-F1, per-class P/R/F1,
    ROC-AUC / AP, TPR at 1% and 5% FPR, confusion matrix.

    \b
    Uses the checkpoint's validation-fitted calibration; the test split is the one
    training set aside (same seed and ratios).

    \b
    Examples:
      mmvgm eval --checkpoint runs/det/best --data data/
      mmvgm eval -c runs/det/best -d data/ --perturb jpeg:50,h264:28,resize:0.5,fps:0.5
      mmvgm eval -c runs/trace/best -d data/ --holdout-class lavie --json > metrics.json
      mmvgm eval -c runs/trace/best -d data/ --holdout-class lavie --enrol-curve 1,5,10,20
      mmvgm eval -c runs/det/best -d other_set/ --split all --out eval_other/
      mmvgm eval -c runs/det/best -d data/ --attack pgd:eps=4/255,steps=10
      mmvgm eval -c runs/det/best -d data/ --predictions test_verdicts.jsonl   # per-file, for error analysis
    """
    from mmvgm.engine.evaluate import evaluate, results_table

    if out is None:
        out = _default_out(checkpoint, split)
    ks = None
    if enrol_curve is not None:
        from mmvgm.engine.enrol import parse_ks

        ks = parse_ks(enrol_curve)
    results = evaluate(checkpoint, data, split=split, out=out, perturb=perturb, holdout_class=holdout_class,
                       enrol_curve=ks, enrol_method=enrol_method, attack=attack, batch_size=batch_size, workers=workers,
                       device=None if device == "auto" else device, progress=not no_progress,
                       precision=precision, predictions_out=predictions_out, threads=threads)
    if as_json:
        click.echo(json.dumps(results, default=str))
        return
    from rich.markup import escape
    from rich.table import Table

    from mmvgm.progress import stdout_console

    console = stdout_console()
    console.print(results_table(results))
    if results.get("threshold_summary"):
        console.print(f"threshold {results['threshold_summary']}")
    for warning in results["calibration"].get("warnings") or []:
        console.print(f"[yellow]warning: calibration: {escape(warning)}")
    per_class = Table(title="per class")
    for col in ("class", "precision", "recall", "f1", "support"):
        per_class.add_column(col, justify="left" if col == "class" else "right")
    for name, m in results["per_class"].items():
        per_class.add_row(name, f"{m['precision']:.4f}", f"{m['recall']:.4f}", f"{m['f1']:.4f}", str(m["support"]))
    console.print(per_class)
    if "holdout" in results:
        h = results["holdout"]
        parts = [f"{k} {v:.4f}" for k, v in h.items() if isinstance(v, float)]
        console.print(f"held-out '{h['class']}' ({h['n_heldout']} videos): " + ", ".join(parts))
    if "enrol_curve" in results:
        _print_enrol_curve(console, results["enrol_curve"])
    if "attack" in results:
        from mmvgm.attacks.robustness import summary

        console.print(summary(results["attack"]))
    if results.get("skipped"):
        console.print(f"[yellow]{len(results['skipped'])} unreadable video(s) skipped (listed in metrics.json)")
    extra = ", enrol_curve.png" if "enrol_curve" in results else ""
    console.print(f"wrote {Path(out) / 'metrics.json'}, roc.png, confusion.png{extra}")
    if predictions_out:
        console.print(f"wrote the per-file verdicts to {predictions_out}")


def _print_enrol_curve(console, curve: dict) -> None:
    from rich.table import Table

    before = curve["before"]
    table = Table(title=f"enrolling '{curve['class']}' ({curve['method']}; mean over {curve['repeats']} draws; "
                        f"tested on {curve['n_heldout_test']} of its videos and {curve['n_existing_test']} others)")
    for col in ("k", "accuracy", "new class", "existing classes"):
        table.add_column(col, justify="right")
    for p in curve["curve"]:
        table.add_row(str(p["k"]), *(f"{p[key]:.4f} ± {p[key + '_std']:.4f}"
                                     for key in ("accuracy", "new_class_accuracy", "existing_accuracy")))
    console.print(table)
    auroc = "n/a" if before["open_set_auroc"] is None else f"{before['open_set_auroc']:.4f}"
    existing = "n/a" if before["existing_accuracy"] is None else f"{before['existing_accuracy']:.4f}"
    console.print(f"before enrolment: open-set AUROC {auroc}, existing classes' accuracy {existing}")


def _default_out(checkpoint: str, split: str) -> str:
    """``<run>/eval-<checkpoint>-<split>`` beside a local checkpoint; for a hub id, in the
    current folder (``eval-org--name-test``), not in a folder named after the org."""
    from mmvgm.checkpoint.hub import is_hub_id, parse_hub_id

    if is_hub_id(checkpoint):
        return f"eval-{parse_hub_id(checkpoint).repo_id.replace('/', '--')}-{split}"
    ck = Path(checkpoint).resolve()
    return str(ck.parent / f"eval-{ck.name}-{split}")
