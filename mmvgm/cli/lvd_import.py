"""``mmvgm lvd-import``: convert the research pred_x0.pth + label CSV into a trajectory store."""
from __future__ import annotations

import click

from mmvgm.cli.lvd_record import _print_summary


@click.command("lvd-import")
@click.argument("pred_x0", type=click.Path(dir_okay=False))
@click.option("--labels", "labels_csv", required=True, type=click.Path(dir_okay=False),
              help="5-column CSV: column k lists the indices of the videos in category k "
                   "(Distorted, Terrifying, Pornographic, Violent, Political); empty cells allowed.")
@click.option("--normal", type=click.Path(dir_okay=False), help="pred_x0 file of normal prompts.")
@click.option("--out", required=True, type=click.Path(file_okay=False), help="Trajectory store directory.")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
def command(pred_x0, labels_csv, normal, out, as_json):
    """Import research trajectories (N, steps, 4, frames, H, W), read safely (no pickle).

    \b
    Examples:
      mmvgm lvd-import pred_x0.pth --labels labels.csv --normal normal_pred_x0.pth --out traj/
    """
    from mmvgm.lvd.trajectories import import_research, summarize

    store = import_research(pred_x0, labels_csv, out, normal=normal)
    _print_summary(summarize(store), as_json)
