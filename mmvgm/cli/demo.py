"""``mmvgm demo``: synthetic data -> tiny model -> trace, offline (over ``mmvgm.demo``)."""
from __future__ import annotations

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
    from rich.console import Console
    from rich.panel import Panel
    from rich.table import Table

    from mmvgm.cli.trace import _pct, _print_table
    from mmvgm.demo import DISCLAIMER, TRAIN_HINT, _predicted, run_demo

    console = Console()
    console.print(Panel(DISCLAIMER, title="mmvgm demo", border_style="yellow"))
    result = run_demo(out, keep=keep, per_source=per_source, epochs=epochs, seed=seed,
                      device=None if device == "auto" else device, progress=not quiet,
                      say=lambda message: console.print(f"[bold]{message}"))
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
    console.print(f"\n[bold]mmvgm trace {result.examples[example]} --checkpoint {result.checkpoint}[/]")
    _print_table(result.predictor, result.results[example])
    console.print(f"\n{result.correct} of {len(result.results)} held-out videos traced correctly "
                  f"in {result.seconds:.0f} s.")
    console.print(f"checkpoint: [bold]{result.checkpoint}[/]")
    if result.data is not None:
        console.print(f"training videos: {result.data}")
    console.print(f"try: mmvgm trace {result.examples[example]} --checkpoint {result.checkpoint} --explain "
                  f"{result.out / 'saliency.png'}")
    console.print(Panel(DISCLAIMER + "\n\n" + TRAIN_HINT, title="next steps", border_style="yellow"))
