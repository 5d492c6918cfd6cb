"""``mmvgm fit-real``: argument parsing and printing over ``mmvgm.engine.fit_real.fit_real``."""
from __future__ import annotations

import json
from typing import Optional

import click

from mmvgm.cli.options import precision_option, run_options

ORDERS = ("1", "2", "3")
DISTANCES = ("l2", "cosine")      # models.temporal.DISTANCES, spelled out so --help needs no torch
DIRECTIONS = ("both", "low", "high")  # models.temporal.DIRECTIONS
UNITS = ("frame", "clip")


def _ratios(ctx: click.Context, param: click.Parameter, value: Optional[str]):
    if value is None:
        return None
    try:
        return [float(v) for v in value.split(",")]
    except ValueError:
        raise click.BadParameter(f"expected fractions such as 0.5,0.3,0.2, got '{value}'") from None


@click.command(name="fit-real")
@click.option("--data", "-d", required=True, type=click.Path(),
              help="Real videos only: a folder (searched recursively), a manifest or a video. "
                   "No generated video needed.")
@click.option("--backbone", "-b", required=True,
              help="Any registered backbone: a config name (timm_tiny, videomae, xclip_base_p32, ...), "
                   "a YAML or timm:NAME.")
@click.option("--weights", default=None, type=click.Path(), help="Pretrained backbone weights: a file, a dir or a hub id (org/name[@revision]).")
@click.option("--out", "-o", required=True, type=click.Path(), help="Checkpoint directory to write.")
@click.option("--order", type=click.Choice(ORDERS), default="2", show_default=True,
              help="1: spread of the per-step feature distances; 2: of their differences (D3).")
@click.option("--distance", type=click.Choice(DISTANCES), default="l2", show_default=True,
              help="Distance between consecutive embeddings.")
@click.option("--direction", type=click.Choice(DIRECTIONS), default="both", show_default=True,
              help="Which spread is suspect: lower than real videos' (D3's rule), higher, or either.")
@click.option("--unit", type=click.Choice(UNITS), default=None,
              help="Embed each frame or each window of frames [default: frame when the backbone gives "
                   "per-frame features].")
@click.option("--window", type=click.IntRange(min=1), default=None,
              help="Frames per window for --unit clip [default: the backbone's clip length].")
@click.option("--stride", type=click.IntRange(min=1), default=1, show_default=True,
              help="Frames between windows (--unit clip).")
@click.option("--frames", "-t", type=click.IntRange(min=1), default=None,
              help="Frames per clip [default: 16 per-frame embeddings, or 8 windows].")
@click.option("--sampling", default="consecutive", show_default=True, help="consecutive | uniform | stride:K")
@click.option("--target-fpr", type=click.FloatRange(0, 1, max_open=True), default=0.05, show_default=True,
              help="False-positive rate on the held-out real videos that fits the threshold.")
@click.option("--split", "ratios", callback=_ratios, default=None,
              help="Real videos for the statistic's center/scale, the threshold, and test (left for eval) "
                   "[default: 0.5,0.3,0.2].")
@click.option("--seed", type=int, default=2024, show_default=True, help="Split seed.")
@run_options
@click.option("--synthetic", is_flag=True,
              help="The videos are synthetic (made, not filmed): the checkpoint records it and every verdict says so.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object (what was fitted) on stdout.")
@click.option("--no-progress", is_flag=True, help="No progress bars.")
@precision_option
def command(data: str, backbone: str, weights: Optional[str], out: str, order: str, distance: str, direction: str,
            unit: Optional[str], window: Optional[int], stride: int, frames: Optional[int], sampling: str,
            target_fpr: float, ratios: Optional[list], seed: int, batch_size: int, workers: int, device: str,
            threads: Optional[int], synthetic: bool, as_json: bool, no_progress: bool, precision: str) -> None:
    """Build a detector from real videos alone: no training, no generated video.

    \b
    Its score is the D3 statistic (the spread of the second-order differences of
    per-frame feature distances) of any registered backbone's embeddings, standardised
    on part of the real videos; its threshold is fitted at --target-fpr on another
    part. The checkpoint is an ordinary one: trace, scan, serve and eval use it as is.

    \b
    Examples:
      mmvgm fit-real --data real/ --backbone timm:resnet50 --weights ~/w/resnet50.safetensors --out ck/
      mmvgm fit-real -d real/ -b videomae --weights ~/w/videomae-base --unit clip --stride 2 --out ck/
      mmvgm fit-real -d real.csv -b timm_tiny --order 1 --distance cosine --direction low --out ck/
      mmvgm eval -c ck/ -d labelled/        # real/ plus generated folders: the usual metrics
    """
    from mmvgm.cli import echo_warning
    from mmvgm.engine.fit_real import DEFAULT_RATIOS, fit_real

    result = fit_real(data, backbone, out, weights=weights,
                      statistic={"order": int(order), "distance": distance, "direction": direction},
                      unit=unit, window=window, stride=stride, frames=frames, sampling=sampling, target_fpr=target_fpr,
                      ratios=ratios or DEFAULT_RATIOS, seed=seed, batch_size=batch_size, workers=workers,
                      device=None if device == "auto" else device, precision=precision, synthetic=synthetic,
                      progress=not no_progress, threads=threads, say=echo_warning)
    meta = result.meta
    if as_json:
        click.echo(json.dumps({"checkpoint": str(result.checkpoint), "split_sizes": result.split_sizes,
                               "statistic": meta.config["statistic"], "embedding": meta.config["embedding"],
                               "fitted": meta.val_metrics, "calibration": meta.calibration.to_dict(),
                               "skipped": result.skipped, "seconds": result.seconds}))
        return
    _print_summary(result)


def _print_summary(result) -> None:
    from mmvgm.checkpoint.calibration import threshold_summary

    meta, sizes = result.meta, result.split_sizes
    stat = meta.config["statistic"]
    click.echo(f"fitted on {sizes['train']} real videos (center {meta.val_metrics['center']:.4f}, scale "
               f"{meta.val_metrics['scale']:.4f}); threshold on {sizes['val']}; {sizes['test']} left for eval")
    click.echo(f"statistic: order {stat['order']}, {stat['distance']} distance, direction {stat['direction']}, "
               f"{meta.config['embedding']['unit']} embeddings of {meta.config['backbone']}, {meta.frames} frames")
    click.echo(f"threshold {threshold_summary(meta.calibration)}")
    for warning in meta.calibration.warnings:
        click.echo(f"warning: calibration: {warning}")
    click.echo(f"checkpoint: {result.checkpoint}")
    click.echo(f"next: mmvgm eval --checkpoint {result.checkpoint} --data DATA/   # DATA/real/ plus generated folders")
