"""``mmvgm lvd-record``: generate prompts with a local pipeline and store every step's x0."""
from __future__ import annotations

import json

import click


@click.command("lvd-record")
@click.option("--pipeline", "pipeline_dir", required=True, type=click.Path(file_okay=False),
              help="Diffusers text-to-video pipeline: a directory (AnimateDiff/MagicTime style) or a hub id.")
@click.option("--prompts", required=True, type=click.Path(dir_okay=False), help="One prompt per line.")
@click.option("--labels", "labels_csv", type=click.Path(dir_okay=False),
              help="5-column category CSV of prompt indices (research format); none: all normal.")
@click.option("--steps", type=int, default=50, show_default=True, help="Denoising steps.")
@click.option("--frames", type=int, default=16, show_default=True, help="Frames per video.")
@click.option("--height", type=int, help="Video height (default: the pipeline's).")
@click.option("--width", type=int, help="Video width (default: the pipeline's).")
@click.option("--guidance", type=float, default=7.5, show_default=True, help="Classifier-free guidance scale.")
@click.option("--scheduler", type=click.Choice(["ddim", "keep"]), default="ddim", show_default=True,
              help="ddim (the research setting) or keep the pipeline's own.")
@click.option("--seed", type=int, default=0, show_default=True, help="Prompt i uses seed + i.")
@click.option("--device", default="auto", show_default=True, help="cpu, cuda or auto.")
@click.option("--out", required=True, type=click.Path(file_okay=False),
              help="Trajectory store directory (re-running resumes it).")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
def command(pipeline_dir, prompts, labels_csv, steps, frames, height, width, guidance, scheduler, seed,
            device, out, as_json):
    """Record predicted-x0 latents at every denoising step (float16, one file per video).

    \b
    Examples:
      mmvgm lvd-record --pipeline ~/models/magictime --prompts prompts.txt \\
          --labels categories.csv --steps 50 --frames 16 --seed 0 --out traj/
    """
    from mmvgm.lvd.trajectories import record_prompts, summarize

    store = record_prompts(pipeline_dir, prompts, out, labels_csv=labels_csv, steps=steps, frames=frames,
                           seed=seed, height=height, width=width, guidance_scale=guidance,
                           scheduler=scheduler, device=device)
    _print_summary(summarize(store), as_json)


def _print_summary(summary: dict, as_json: bool) -> None:
    if as_json:
        click.echo(json.dumps(summary, indent=2))
        return
    cats = ", ".join(f"{k} {v}" for k, v in summary["per_category"].items())
    click.echo(f"{summary['videos']} videos ({summary['unsafe']} unsafe, {summary['normal']} normal) "
               f"in {summary['root']}; trajectory shape {summary['shape']}")
    click.echo(f"per category: {cats}")
