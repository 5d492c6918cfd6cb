"""``mmvgm lvd-train``: per-step or step-conditioned unsafe-content detectors on x0 trajectories."""
from __future__ import annotations

import json

import click


@click.command("lvd-train")
@click.option("--data", required=True, type=click.Path(file_okay=False),
              help="Trajectory store (from lvd-record or lvd-import).")
@click.option("--mode", type=click.Choice(["per-step", "conditioned"]),
              help="per-step: one binary model per (category, step), the research design; "
                   "conditioned: one model with a step embedding and one output per category. [conditioned]")
@click.option("--steps", help="Steps to train on: all, 0-49, 0,5,10 (0-based). [all]")
@click.option("--categories", help="Comma-separated categories. [every category of the store]")
@click.option("--backbone", help="Backbone config name or YAML (videomae, i3d_r50, ...). [videomae_tiny]")
@click.option("--input", "input_kind", type=click.Choice(["latent", "rgb"]),
              help="latent: 4-channel x0 straight into the backbone; rgb: decode with --vae first. [latent]")
@click.option("--vae", type=click.Path(file_okay=False), help="AutoencoderKL (or pipeline) dir or hub id for --input rgb.")
@click.option("--epochs", type=int, help="Training epochs per model. [3]")
@click.option("--batch-size", type=int, help="Batch size. [8]")
@click.option("--lr", type=float, help="AdamW learning rate. [1e-4]")
@click.option("--seed", type=int, help="Seed of the split and the training. [2024]")
@click.option("--steps-per-video", metavar="K|all",
              help="conditioned: random steps of each video per epoch (diffusion-style), or all. [4]")
@click.option("--config", default="default", show_default=True,
              help="configs/lvd/<name>.yaml or a YAML path (e.g. research: per-step VideoMAE-base).")
@click.option("--device", default="auto", show_default=True, help="cpu, cuda or auto.")
@click.option("--out", required=True, type=click.Path(file_okay=False), help="Model directory to write.")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
def command(data, mode, steps, categories, backbone, input_kind, vae, epochs, batch_size, lr, seed,
            steps_per_video, config, device, out, as_json):
    """Train LVD detectors; thresholds are fitted on the validation split.

    \b
    Examples:
      mmvgm lvd-train --data traj/ --mode conditioned --backbone videomae --out lvd_models/
      mmvgm lvd-train --data traj/ --mode per-step --steps 0-19 --categories violent,political \\
          --backbone videomae --out lvd_per_step/
      mmvgm lvd-train --data traj/ --input rgb --vae ~/models/magictime --out lvd_rgb/
    """
    from mmvgm.lvd.train import train_from_config

    overrides = {"mode": mode, "steps": steps, "backbone": backbone, "input": input_kind, "vae": vae,
                 "epochs": epochs, "batch_size": batch_size, "lr": lr, "seed": seed,
                 "steps_per_video": steps_per_video,
                 "categories": categories.split(",") if categories else None}
    _, summary = train_from_config(data, out, config, overrides, device=device)
    if as_json:
        click.echo(json.dumps(summary, indent=2))
        return
    click.echo(f"{summary['models']} {summary['mode']} model(s) over {summary['steps']} steps x "
               f"{len(summary['categories'])} categories in {summary['train_seconds']:.1f}s, "
               f"{summary['bytes'] / 1e6:.2f} MB -> {summary['out']}")
    click.echo(f"split (videos): {summary['split']}")
    for key, v in summary["validation"].items():
        auc = "n/a (one class in validation)" if v["val_auc"] is None else f"{v['val_auc']:.3f}"
        click.echo(f"  {key}: threshold {v['threshold']:.3f}, validation AUC {auc}")
