"""``mmvgm info``: probe videos and frame directories."""
from __future__ import annotations

import json

import click

from mmvgm.errors import MMVGMError

#: ``mmvgm.io``'s registered backends, spelled out so that ``mmvgm --help`` imports no decoder;
#: a test keeps the list equal to the registry.
BACKEND_CHOICES = ("auto", "opencv", "pyav", "torchcodec")


@click.command("info")
@click.argument("paths", nargs=-1, required=True, type=click.Path(path_type=str))
@click.option("--json", "as_json", is_flag=True,
              help="One JSON object per line and file: path, frames, fps, width, height, codec, "
                   "duration (or path, error).")
@click.option("--exact", is_flag=True,
              help="Count frames by decoding every one (slower) instead of counting packets.")
@click.option("--backend", type=click.Choice(BACKEND_CHOICES), default="auto",
              show_default=True, help="Decoder; auto tries PyAV, then OpenCV. torchcodec counts frames from "
                                      "the packets only, so not with --exact.")
@click.option("--max-pixels", type=click.IntRange(min=1), default=None,
              help="Pixel budget per frame (default: mmvgm.io's, 8K UHD).")
@click.option("--max-frames", type=click.IntRange(min=1), default=None,
              help="Frame budget, applied with --exact (default: mmvgm.io's, 100000).")
@click.pass_context
def command(ctx: click.Context, paths: tuple, as_json: bool, exact: bool, backend: str,
            max_pixels: int, max_frames: int) -> None:
    """Print frames, fps, size, codec and duration of each video (or frame directory).

    Frame counts come from the demuxed packet stream (or, with --exact, from decoding),
    never from header metadata. A file that fails is reported on stderr as
    "mmvgm: error: PATH: REASON" and the others are still probed; the exit code is 1
    if any file failed (with --debug the first failure stops it with a traceback).

    \b
    Examples:
      mmvgm info clip.mp4
      mmvgm info uploads/*.mp4 frames_dir/ --json > probe.jsonl
    """
    from mmvgm.cli import debug_enabled, echo_error
    from mmvgm.io import probe
    from mmvgm.progress import track

    debug = debug_enabled(ctx)
    rows = []
    for path in track(paths, "probing", disable=len(paths) < 20):
        try:
            rows.append(probe(path, backend=backend, exact=exact, max_pixels=max_pixels,
                              max_frames=max_frames).to_dict())
        except MMVGMError as exc:
            if debug:
                raise
            rows.append({"path": path, "error": exc.message})
            echo_error(exc)
        if as_json:
            click.echo(json.dumps(rows[-1]))
    if not as_json:
        _print_table([row for row in rows if "error" not in row])
    if any("error" in row for row in rows):
        ctx.exit(1)


def _print_table(rows: list) -> None:
    if not rows:
        return
    from rich.table import Table

    from mmvgm.progress import stdout_console

    table = Table(show_edge=False, header_style="bold")
    for name, justify in (("path", "left"), ("frames", "right"), ("fps", "right"),
                          ("size", "right"), ("codec", "left"), ("duration", "right")):
        table.add_column(name, justify=justify, overflow="fold")
    for row in rows:
        table.add_row(row["path"], str(row["frames"]), _num(row["fps"], "{:.3g}"),
                      f"{row['width']}x{row['height']}", row["codec"],
                      _num(row["duration"], "{:.2f} s"))
    stdout_console().print(table)  # in a pipe or a file, long paths stay on one line


def _num(value, fmt: str) -> str:
    return "-" if value is None else fmt.format(value)
