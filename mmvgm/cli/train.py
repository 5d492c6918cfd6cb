"""``mmvgm train``: argument parsing over ``mmvgm.engine.train.train``."""
from __future__ import annotations

from typing import Any, Dict, Optional

import click

TASKS = ("detect", "trace", "joint")
PRECISIONS = ("auto", "no", "bf16", "fp16")


@click.command(name="train")
@click.option("--config", "config_file", default=None,
              help="Train config: a YAML path or a name in configs/train/ (e.g. videomae_trace9).")
@click.option("--backbone", "-b", default=None,
              help="Backbone config name or YAML (videomae, xclip_base_p32, i3d_r50, ..._tiny) or timm:NAME.")
@click.option("--task", type=click.Choice(TASKS), default=None, help="detect | trace | joint [default: detect].")
@click.option("--data", "-d", default=None, type=click.Path(),
              help="Dataset: folder root/<label>/<videos> or a manifest (.csv, .jsonl, .ndjson, .txt) "
                   "of path,label[,split] (see `mmvgm dataset --help`).")
@click.option("--labels", default=None,
              help="Label file for trace/joint (name in configs/labels/ or a YAML) [default: vgmshield9].")
@click.option("--epochs", type=click.IntRange(min=1), default=None, help="[default: 20]")
@click.option("--batch-size", type=click.IntRange(min=1), default=None, help="Per process [default: 4].")
@click.option("--lr", type=float, default=None, help="AdamW learning rate [default: 1e-5].")
@click.option("--frames", "-t", type=click.IntRange(min=1), default=None, help="Frames per clip [default: the backbone's].")
@click.option("--size", type=click.IntRange(min=8), default=None, help="Input side in pixels [default: the backbone's].")
@click.option("--weights", default=None, type=click.Path(), help="Pretrained backbone weights: a local file or dir, or a hub id "
                   "(MCG-NJU/videomae-base, org/name@revision, hf://org/name/file.pyth).")
@click.option("--seed", type=int, default=None, help="Training seed [default: 2024]; the split seed is split.seed.")
@click.option("--workers", type=click.IntRange(min=0), default=None, help="DataLoader decode workers [default: 2].")
@click.option("--threads", type=click.IntRange(min=1), default=None,
              help="Torch compute threads of the training loop (also $MMVGM_THREADS) [default: on CPU, "
                   "every core, or one less per worker when decoding is a large share of the work].")
@click.option("--out", "-o", default=None, type=click.Path(),
              help="Run folder: last/, best/, history.jsonl [default: runs/<backbone>-<task>].")
@click.option("--resume", is_flag=True, help="Continue from <out>/last (its stored config is reused).")
@click.option("--grad-accum", type=click.IntRange(min=1), default=None, help="Gradient accumulation steps [default: 1].")
@click.option("--mixed-precision", type=click.Choice(PRECISIONS), default=None,
              help="[default: auto = bf16 on CUDA when supported, else no]")
@click.option("--max-steps", type=click.IntRange(min=1), default=None, help="Stop after N optimizer steps.")
@click.option("--threshold", type=click.FloatRange(0, 1), default=None,
              help="Fixed detection threshold (e.g. 0.5) instead of the one fitted to --target-fpr.")
@click.option("--target-fpr", type=click.FloatRange(0, 1, max_open=True), default=None,
              help="False-positive rate on real validation videos that fits the threshold [default: 0.05].")
@click.option("--cpu", is_flag=True, default=None, help="Train on CPU even when a GPU is present.")
@click.option("--synthetic", is_flag=True, default=None,
              help="The data is synthetic (made, not filmed): the checkpoint records it and every "
                   "verdict it gives carries a warning.")
@click.option("--no-progress", is_flag=True, help="No progress bars (logs only).")
def command(config_file: Optional[str], resume: bool, no_progress: bool, threshold: Optional[float],
            target_fpr: Optional[float], **options: Any) -> None:
    """Train a real/fake detector or a source tracer on a folder of videos.

    \b
    Every epoch: train, validate, fit calibration (temperature, threshold at
    --target-fpr on real validation videos, open-set threshold) on the validation
    split only, save <out>/last (resumable) and <out>/best (by validation AUC for
    detect, macro-F1 for trace/joint). Split: stratified 80/10/10, seed 2024.

    \b
    Examples:
      mmvgm train --backbone videomae --task detect --data data/ --out runs/det
      mmvgm train --config videomae_trace9 --data data/ --out runs/trace9
      mmvgm train --out runs/trace9 --resume
      accelerate launch --num_processes 4 -m mmvgm train --config videomae_trace9 --data data/
    """
    from mmvgm.engine.train import load_train_config, train

    overrides: Dict[str, Any] = {k: v for k, v in options.items() if v is not None}
    for flag in ("cpu", "synthetic"):  # an absent flag leaves the config's value
        if options.get(flag) is False:
            overrides.pop(flag)
    if resume:
        overrides["resume"] = True
    if no_progress:
        overrides["progress"] = False
    overrides["calibration.threshold"] = threshold
    overrides["calibration.target_fpr"] = target_fpr
    cfg = load_train_config(config_file, overrides)
    result = train(cfg)
    if not result.is_main_process:
        return
    best = "n/a" if result.best_value is None else f"{result.best_value:.4f}"
    click.echo(f"trained {result.epochs_run} epoch(s), {result.global_step} step(s); best validation "
               f"{result.best_metric} {best} at epoch {result.best_epoch}")
    click.echo(f"checkpoints: {result.best_dir} (best), {result.last_dir} (last)")
    click.echo(f"next: mmvgm eval --checkpoint {result.best_dir} --data {cfg['data']}")
