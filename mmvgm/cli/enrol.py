"""``mmvgm enrol``: argument parsing and printing over ``mmvgm.engine.enrol.enrol``."""
from __future__ import annotations

import json
from typing import Optional

import click

from mmvgm.cli.options import precision_option, run_options

METHODS = ("prototype", "refit")  # engine.enrol.HEAD_FITS, spelled out so --help needs no torch


@click.command(name="enrol")
@click.option("--checkpoint", "-c", required=True, type=click.Path(), help="A trace or joint checkpoint directory.")
@click.option("--source", "-s", required=True, help="Name of the new source class (a generator).")
@click.option("--data", "-d", required=True, type=click.Path(),
              help="Examples of the new source: a folder, a manifest or a video (a handful is enough).")
@click.option("--out", "-o", required=True, type=click.Path(), help="Checkpoint directory to write.")
@click.option("--base-data", default=None, type=click.Path(),
              help="Videos of the existing classes, split as in training [default: the training data the "
                   "checkpoint records].")
@click.option("--method", type=click.Choice(METHODS), default="prototype", show_default=True,
              help="prototype: nearest class mean on the frozen embedding; refit: logistic-regression head on it.")
@click.option("--display", default=None, help="Display name of the new source [default: --source].")
@run_options
@click.option("--synthetic", is_flag=True,
              help="The examples are synthetic: the checkpoint records it and every verdict says so.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as one JSON object on stdout.")
@click.option("--no-progress", is_flag=True, help="No progress bars.")
@precision_option
def command(checkpoint: str, source: str, data: str, out: str, base_data: Optional[str], method: str,
            display: Optional[str], batch_size: int, workers: int, device: str, threads: Optional[int],
            synthetic: bool, as_json: bool, no_progress: bool, precision: str) -> None:
    """Add a source class (a new generator) from a few examples, the backbone frozen.

    \b
    The open-set threshold is refitted on the validation split; the accuracy on the
    existing classes (test split) is reported before and after. The new checkpoint
    is an ordinary one: trace, scan, serve and eval use it as is.

    \b
    Examples:
      mmvgm enrol --checkpoint runs/trace/best --source sora2 --data sora2_examples/ --out runs/trace+sora2
      mmvgm enrol -c ck/ -s newgen -d examples/ --base-data data/ --method refit --out ck2/ --json
      mmvgm eval -c runs/trace/best -d data/ --holdout-class newgen --enrol-curve 1,5,10,20   # how many are needed
    """
    from mmvgm.engine.enrol import enrol

    result = enrol(checkpoint, source, data, out, base_data=base_data, method=method, display=display,
                   batch_size=batch_size, workers=workers, device=None if device == "auto" else device,
                   precision=precision, synthetic=synthetic, progress=not no_progress, threads=threads)
    report = result.report
    if as_json:
        click.echo(json.dumps({"checkpoint": str(result.checkpoint), **report}, default=str))
        return
    existing, new, open_set = report["existing_classes"], report["new_class"], report["open_set_threshold"]
    click.echo(f"enrolled '{source}' from {report['k']} example(s) ({method}); classes: "
               f"{', '.join(result.meta.source_labels)}")
    click.echo(f"existing classes, test split ({existing['n_test']} videos): accuracy "
               f"{_pct(existing['accuracy_before'])} before, {_pct(existing['accuracy_after'])} after")
    if new.get("leave_one_out_accuracy") is not None:
        click.echo(f"new class, leave-one-out over the examples: accuracy {_pct(new['leave_one_out_accuracy'])}")
    if new.get("detected_as_fake") is not None:
        click.echo(f"new class, examples the detection head calls fake: {_pct(new['detected_as_fake'])}")
    click.echo(f"open-set threshold {_pct(open_set['before'])} before, {_pct(open_set['after'])} after")
    for warning in result.meta.calibration.warnings:
        click.echo(f"warning: calibration: {warning}")
    click.echo(f"checkpoint: {result.checkpoint}")


def _pct(value: Optional[float]) -> str:
    return "n/a" if value is None else f"{100 * value:.1f}%"
