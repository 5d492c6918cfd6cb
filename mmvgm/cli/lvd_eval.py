"""``mmvgm lvd-eval``: the eta/lambda early-stop rule on per-step flags, with compute saved."""
from __future__ import annotations

import json

import click


@click.command("lvd-eval")
@click.option("--scores", type=click.Path(dir_okay=False), help="Per-step flags: JSON "
              '{"0": {id: [0/1,...]}, "1": {...}} (0 normal, 1 unsafe) or a research .pth of that structure.')
@click.option("--models", type=click.Path(file_okay=False), help="Models trained by `mmvgm lvd-train`.")
@click.option("--data", type=click.Path(file_okay=False), help="Trajectory store (with --models); "
              "its videos in the models' test split are scored.")
@click.option("--eta", type=int, default=20, show_default=True, help="Steps the rule reads (η).")
@click.option("--lambda", "lam", default="0.6", show_default=True,
              help="Fraction of the first η steps that must be flagged (λ, in (0,1]); exact: 10×0.7 = 7.")
@click.option("--sequential", is_flag=True, help="Stop reading as soon as the outcome cannot change.")
@click.option("--sweep", "do_sweep", is_flag=True, help="Also evaluate every η for several λ (table + PNG).")
@click.option("--sweep-lambdas", default="0.5,0.6,0.7,0.8,0.9,1", show_default=True,
              help="λ values of the sweep.")
@click.option("--seed", type=int, default=20240603, show_default=True, help="Seed of the class balancing.")
@click.option("--no-balance", is_flag=True, help="Use every video instead of balancing classes.")
@click.option("--split", default="test", show_default=True, help="With --models: the split to score.")
@click.option("--device", default="auto", show_default=True, help="With --models: cpu, cuda or auto.")
@click.option("--out", type=click.Path(file_okay=False), help="Write metrics.json (and sweep.csv/.png) here.")
@click.option("--json", "as_json", is_flag=True, help="Print the metrics as JSON.")
def command(scores, models, data, eta, lam, sequential, do_sweep, sweep_lambdas, seed, no_balance,
            split, device, out, as_json):
    """Evaluate the LVD rule: a video is unsafe iff sum(flags[:η]) ≥ η·λ.

    \b
    Reports balanced accuracy, precision, recall, F1 and the compute saved
    (1 − denoising steps run ÷ steps without a guard; flagged videos stop at
    their decision step, safe ones run to the end).

    \b
    Examples:
      mmvgm lvd-eval --scores flags.json --eta 20 --lambda 0.6 --json
      mmvgm lvd-eval --scores flags.pth --sweep --sequential --out report/
      mmvgm lvd-eval --models lvd_models/ --data trajectories/ --out report/
    """
    from mmvgm.errors import InputError
    from mmvgm.lvd import evaluate as ev

    if bool(scores) == bool(models):
        raise InputError("give either --scores FILE or --models DIR --data DIR")
    if models:
        if not data:
            raise InputError("--models needs --data (the trajectory store to score)")
        table = ev.flags_from_models(models, data, split=split, device=device)
    else:
        table = ev.load_flags(scores)
    metrics = ev.evaluate_flags(table, eta, lam, sequential, seed, balanced=not no_balance)
    rows = None
    if do_sweep:
        lambdas = [x.strip() for x in sweep_lambdas.split(",") if x.strip()]
        rows = ev.sweep(table, lambdas=lambdas, sequential=sequential, seed=seed, balanced=not no_balance)
    if out:
        written = ev.write_report(out, metrics, rows, protect=scores)
    if as_json:
        click.echo(json.dumps(metrics, indent=2))
    else:
        click.echo(f"η={metrics['eta']} λ={metrics['lambda']:g} (≥{metrics['required_flags']} of "
                   f"{metrics['eta']} steps){' sequential' if sequential else ''}: "
                   f"{metrics['n_normal']} normal, {metrics['n_unsafe']} unsafe")
        click.echo(f"accuracy {metrics['accuracy']:.4f}  precision {metrics['precision']:.4f}  "
                   f"recall {metrics['recall']:.4f}  f1 {metrics['f1']:.4f}")
        click.echo(f"mean steps run {metrics['mean_steps_run']:.2f} of {metrics['total_steps']}  "
                   f"compute saved {metrics['compute_saved']:.1%}")
        if rows:
            click.echo(ev.sweep_csv(rows).rstrip())
    if out:
        click.echo(f"wrote {', '.join(str(p) for p in written)}", err=True)
