"""``mmvgm demo``: synthetic data -> tiny model -> trace, offline (over ``mmvgm.demo``)."""
from __future__ import annotations

from shlex import quote

import click


@click.command(name="demo")
@click.option("--out", "-o", type=click.Path(file_okay=False), default="mmvgm-demo", show_default=True,
              help="Folder for the demo checkpoint and example videos (an earlier demo's is replaced).")
@click.option("--keep", is_flag=True, help="Also keep the synthetic training videos (in OUT/data).")
@click.option("--epochs", type=click.IntRange(min=1), default=15, show_default=True)
@click.option("--per-source", type=click.IntRange(min=6), default=20, show_default=True,
              help="Synthetic training videos per source.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--device", default="cpu", show_default=True, help="cpu | auto | cuda | cuda:N")
@click.option("--quiet", "-q", is_flag=True, help="No progress bars.")
def command(out: str, keep: bool, epochs: int, per_source: int, seed: int, device: str,
            quiet: bool) -> None:
    """A short end-to-end run on synthetic media, fully offline, on a CPU.

    \b
    Writes small videos from four made-up "sources" (real + three stand-in generators),
    trains a tiny VideoMAE to detect fakes and trace their source, traces one held-out
    video per source and prints the results and the checkpoint path.

    \b
    This is a DEMONSTRATION: the sources are synthetic patterns, not real generators.
    Real use needs a checkpoint trained on real data (the commands are printed at the end).

    \b
    Examples:
      mmvgm demo
      mmvgm demo --out /tmp/demo --keep
    """
    from rich.markup import escape
    from rich.panel import Panel
    from rich.table import Table

    from mmvgm.cli.trace import _pct
    from mmvgm.demo import DISCLAIMER, _predicted, run_demo
    from mmvgm.progress import stdout_console

    console = stdout_console()
    # in a pipe the console has no width to fill: a panel as wide as its text, not 100k columns
    fit = not console.is_terminal
    console.print(Panel(DISCLAIMER, title="mmvgm demo", border_style="yellow", expand=not fit))
    result = run_demo(out, keep=keep, per_source=per_source, epochs=epochs, seed=seed,
                      device=None if device == "auto" else device, progress=not quiet,
                      say=lambda message: console.print(f"[bold]{escape(message)}"))
    summary = Table(title="held-out videos (one per synthetic source)", title_justify="left",
                    header_style="bold")
    for column in ("true source", "verdict", "P(fake)", "traced source", "correct"):
        summary.add_column(column)
    for source, rec in result.results.items():
        if rec["verdict"] == "real":
            traced = "- (verdict real)"
        elif rec["source"] == "unknown":
            traced = "unknown (below the open-set threshold)"
        else:
            traced = f"{rec['source']['label']} {_pct(rec['source']['probability'])}"
        ok = _predicted(rec) == source
        summary.add_row(source, rec["verdict"], _pct(rec.get("fake_probability")), traced,
                        "[green]yes[/]" if ok else "[red]no[/]")
    console.print(summary)
    example = next((s for s in result.results if s != "real"), next(iter(result.results)))
    _print_next_steps(console, result, example, expand=not fit)


def _print_next_steps(console, result, example: str, expand: bool) -> None:
    """The example's trace, the run's numbers and the commands to try and to train for real.

    Commands are printed soft-wrapped (no line break of rich's inside one) and shell-quoted,
    so they paste as they are."""
    from rich.markup import escape
    from rich.panel import Panel

    from mmvgm.cli.trace import _print_table
    from mmvgm.demo import DISCLAIMER, TRAIN_HINT

    trace = f"mmvgm trace {quote(str(result.examples[example]))} --checkpoint {quote(str(result.checkpoint))}"
    console.print(f"\n[bold]{escape(trace)}[/]", soft_wrap=True)
    _print_table(result.predictor, result.results[example])
    console.print(f"\n{result.correct} of {len(result.results)} held-out videos traced correctly "
                  f"in {result.seconds:.0f} s.")
    console.print(f"checkpoint: [bold]{escape(str(result.checkpoint))}[/]", soft_wrap=True)
    if result.data is not None:
        console.print(f"training videos: {escape(str(result.data))}", soft_wrap=True)
    console.print(f"try: {escape(trace)} --explain {escape(quote(str(result.out / 'saliency.png')))}",
                  soft_wrap=True)
    console.print(Panel(DISCLAIMER, title="next steps", border_style="yellow", expand=expand))
    console.print(escape(TRAIN_HINT), soft_wrap=True)
