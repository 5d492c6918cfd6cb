"""``mmvgm dataset``: counts per label and split, copies, unreadable files, and the split written out."""
from __future__ import annotations

import json
from typing import Optional

import click

TASKS = ("detect", "trace", "joint")


@click.command("dataset")
@click.argument("data", type=click.Path(path_type=str))
@click.option("--labels", default=None, metavar="NAME|PATH",
              help="Label set the data must use (vgmshield9, detect, uvd5 or a YAML file); with --task, "
                   "train's label file for trace/joint. Default: the labels found in the data.")
@click.option("--task", type=click.Choice(TASKS), default=None,
              help="Count the data as `mmvgm train --task` uses it [default: detect for --labels detect, "
                   "trace for a tracing label set].")
@click.option("--ratios", default=None, metavar="TRAIN,VAL[,TEST]",
              help="Split fractions, e.g. 0.8,0.1,0.1 (default) or 80/20.")
@click.option("--seed", type=int, default=2024, show_default=True, help="Split seed.")
@click.option("--duplicates", type=click.Choice(["warn", "refuse", "off"]), default="warn", show_default=True,
              help="Identical content (sha256) in two splits: list it, fail, or skip the check. Under two "
                   "labels it is an error unless off (no hashing at all).")
@click.option("--require-all-classes", is_flag=True,
              help="Fail unless every class appears in every split.")
@click.option("--check", is_flag=True,
              help="Decode every file (a clip, as training reads it) and list the unreadable ones.")
@click.option("--workers", "-j", type=click.IntRange(min=0), default=None,
              help="Decoding processes for --check (0: decode in-process) [default: as scan, the usable "
                   "cores less 2, from 2 to 16].")
@click.option("--out", type=click.Path(dir_okay=False, path_type=str), default=None,
              help="Write the split as a path,label,split CSV (reusable as a manifest).")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object instead of a table.")
@click.pass_context
def command(ctx: click.Context, data: str, labels: Optional[str], task: Optional[str], ratios: Optional[str],
            seed: int, duplicates: str, require_all_classes: bool, check: bool, workers: Optional[int],
            out: Optional[str], as_json: bool) -> None:
    """Inspect a dataset: videos per label in each split, copies, and (--check) unreadable files.

    DATA is a folder laid out as DATA/<label>/... (videos or frame folders, any depth) or a
    manifest (.csv, .jsonl, .ndjson, .txt) of path,label[,split]: a .csv with that header,
    .jsonl/.ndjson objects with those keys, a .txt with path<TAB>label[<TAB>split] lines.
    Relative paths are relative to the manifest. The split is stratified and seeded as in
    `mmvgm train`: the same seed, ratios and labels give the same split. With --labels or
    --task, every data label is described as training uses it: for detect, every label but
    real counts as fake (gen-blur -> fake); for trace, labels outside the set (e.g. real/)
    are counted and left out.

    \b
    Exit code 1 when the same content is under two labels, or --check finds unreadable
    files: each is one "mmvgm: error:" line on stderr (and in --json); the report is
    still printed. The same content in two splits under one label is a warning.

    \b
    Examples:
      mmvgm dataset data/ --labels vgmshield9
      mmvgm dataset data/ --labels detect --check --workers 4
      mmvgm dataset manifest.csv --ratios 80/20 --duplicates refuse --out split.csv
    """
    from mmvgm.data.report import dataset_report, parse_ratios

    report = dataset_report(data, labels=labels, ratios=parse_ratios(ratios), seed=seed, duplicates=duplicates,
                            require_all=require_all_classes, progress=not as_json, task=task, check=check,
                            workers=workers)
    written = report.write_split(out) if out else None
    if as_json:
        payload = report.to_dict()
        if written:
            payload["split_manifest"] = str(written)
        click.echo(json.dumps(payload))
    else:
        _print_report(report, written)
    for line in report.errors:
        click.secho("mmvgm: error: " + " ".join(line.split()), fg="red", err=True)
    if report.errors:
        ctx.exit(1)


def _print_report(report, written) -> None:
    _print_table(report)
    _print_mapping(report)
    for a, b in report.duplicates:
        click.echo(f"mmvgm: warning: same content in {a.split} and {b.split}: {a.path} and {b.path}", err=True)
    if report.unreadable is not None:
        click.echo(f"decoded {report.checked} file(s): {len(report.unreadable) or 'none'} unreadable")
    if written:
        click.echo(f"split written to {written}")


def _print_mapping(report) -> None:
    """Every data label as training uses it: the class it trains as, or why it is left out."""
    from mmvgm.data.tasks import unused_message

    if report.task is None:
        if report.unused:
            left_out = ", ".join(f"{label} ({n})" for label, n in report.unused.items())
            click.echo(f"left out, not in label set '{report.labels.name}': {left_out}")
        return
    used = [f"{label} -> {trained} ({n})" for label, trained, n in report.mapping if trained is not None]
    click.echo(f"as task '{report.task}' trains on them: {', '.join(used)}")
    note = unused_message(report.unused, report.labels, report.task)
    if note:
        click.echo(note)


def _print_table(report) -> None:
    from rich.table import Table

    from mmvgm.progress import stdout_console

    counts = report.counts
    splits = [name for name in counts if report.ratios.get(name, 0) > 0 or any(counts[name].values())]
    task = f", task '{report.task}'" if report.task else ""
    table = Table(title=f"{report.source}: {report.total} videos, labels '{report.labels.name}'{task}, "
                        f"seed {report.seed}", show_edge=False, header_style="bold")
    table.add_column("label")
    for name in splits:
        table.add_column(f"{name} ({report.ratios.get(name, 0):.0%})", justify="right")
    table.add_column("total", justify="right")
    for label in report.labels.names:
        cells = [counts[name][label] for name in splits]
        table.add_row(label, *[str(c) if c else "[red]0[/red]" for c in cells], str(sum(cells)))
    table.add_row("[bold]all[/bold]", *[str(sum(counts[name].values())) for name in splits], str(report.total))
    stdout_console().print(table)
