"""``mmvgm dataset``: counts per label and split, duplicate check, and the split written out."""
from __future__ import annotations

import json

import click


@click.command("dataset")
@click.argument("data", type=click.Path(path_type=str))
@click.option("--labels", default=None, metavar="NAME|PATH",
              help="Label set the data must use (vgmshield9, detect, uvd5 or a YAML file). "
                   "Default: the labels found in the data.")
@click.option("--ratios", default=None, metavar="TRAIN,VAL[,TEST]",
              help="Split fractions, e.g. 0.8,0.1,0.1 (default) or 80/20.")
@click.option("--seed", type=int, default=2024, show_default=True, help="Split seed.")
@click.option("--duplicates", type=click.Choice(["warn", "refuse", "off"]), default="warn", show_default=True,
              help="Identical content (sha256) in two splits: list it, fail, or skip the check.")
@click.option("--require-all-classes", is_flag=True,
              help="Fail unless every class appears in every split.")
@click.option("--out", type=click.Path(dir_okay=False, path_type=str), default=None,
              help="Write the split as a path,label,split CSV (reusable as a manifest).")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object instead of a table.")
def command(data: str, labels: str, ratios: str, seed: int, duplicates: str, require_all_classes: bool,
            out: str, as_json: bool) -> None:
    """Inspect a dataset: videos per label in each split, and duplicates across splits.

    DATA is a folder laid out as DATA/<label>/... (videos or frame folders, any depth) or a
    manifest (.csv, .jsonl, .ndjson, .txt) of path,label[,split]: a .csv with that header,
    .jsonl/.ndjson objects with those keys, a .txt with path<TAB>label[<TAB>split] lines.
    Relative paths are relative to the manifest. The split is stratified and seeded as in
    `mmvgm train`: the same seed and ratios give the same split. An explicit split column
    is kept. With --labels, data labels outside the set (e.g. real/ for a tracing set) are
    counted and left out, as training leaves them out.

    \b
    Examples:
      mmvgm dataset data/ --labels vgmshield9
      mmvgm dataset manifest.csv --ratios 80/20 --duplicates refuse --out split.csv
    """
    from mmvgm.data.report import dataset_report, parse_ratios

    report = dataset_report(data, labels=labels, ratios=parse_ratios(ratios), seed=seed, duplicates=duplicates,
                            require_all=require_all_classes, progress=not as_json)
    written = report.write_split(out) if out else None
    if as_json:
        payload = report.to_dict()
        if written:
            payload["split_manifest"] = str(written)
        click.echo(json.dumps(payload))
        return
    _print_table(report)
    if report.unused:
        left_out = ", ".join(f"{label} ({n})" for label, n in report.unused.items())
        click.echo(f"left out, not in label set '{report.labels.name}': {left_out}")
    for a, b in report.duplicates:
        click.echo(f"mmvgm: warning: same content in {a.split} and {b.split}: {a.path} and {b.path}", err=True)
    if written:
        click.echo(f"split written to {written}")


def _print_table(report) -> None:
    from rich.console import Console
    from rich.table import Table

    counts = report.counts
    splits = [name for name in counts if report.ratios.get(name, 0) > 0 or any(counts[name].values())]
    table = Table(title=f"{report.source}: {report.total} videos, labels '{report.labels.name}', "
                        f"seed {report.seed}", show_edge=False, header_style="bold")
    table.add_column("label")
    for name in splits:
        table.add_column(f"{name} ({report.ratios.get(name, 0):.0%})", justify="right")
    table.add_column("total", justify="right")
    for label in report.labels.names:
        cells = [counts[name][label] for name in splits]
        table.add_row(label, *[str(c) if c else "[red]0[/red]" for c in cells], str(sum(cells)))
    table.add_row("[bold]all[/bold]", *[str(sum(counts[name].values())) for name in splits], str(report.total))
    console = Console()
    if not console.is_terminal:
        console = Console(width=100_000)
    console.print(table)
