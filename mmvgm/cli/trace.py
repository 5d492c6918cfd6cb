"""``mmvgm trace``: real/fake verdict and source ranking for each video (over ``mmvgm.predict.predictor``)."""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Dict, Optional, Tuple

import click

from mmvgm.cli.options import precision_option
from mmvgm.errors import InputError, MMVGMError
from mmvgm.predict.verdict import Verdict, trace_record

SAMPLINGS = ("consecutive", "uniform")


def _sampling(ctx: click.Context, param: click.Parameter, value: Optional[str]) -> Optional[str]:
    if value is None or value in SAMPLINGS or (value.startswith("stride:") and value[7:].isdigit()
                                               and int(value[7:]) > 0):
        return value
    raise click.BadParameter("use consecutive, uniform or stride:K")


@click.command(name="trace")
@click.argument("videos", nargs=-1, required=True, type=click.Path())
@click.option("--checkpoint", "-c", type=click.Path(), envvar="MMVGM_CHECKPOINT", show_envvar=True,
              help="Checkpoint directory (from `mmvgm train` or `mmvgm demo`) or hub id (org/name[@revision]).")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per video per line on stdout.")
@click.option("--frames", "-t", type=click.IntRange(min=1), default=None,
              help="Frames per clip [default: the checkpoint's].")
@click.option("--sampling", callback=_sampling, default=None,
              help="consecutive | uniform | stride:K [default: the checkpoint's].")
@click.option("--windows", "-w", type=click.IntRange(min=1), default=1, show_default=True,
              help="Score N clips spread over the video (at most one per start frame: fewer when "
                   "fewer fit, with a note); report each and their mean.")
@click.option("--explain", "explain_png", type=click.Path(dir_okay=False), default=None,
              help="Write a saliency PNG (gradient x input over the sampled frames; with --windows, "
                   "of the window scored most likely fake), each frame labelled with its frame "
                   "number and time. The folder must exist. With several videos, '{stem}' in the "
                   "name is replaced by each video's name.")
@click.option("--device", default="auto", show_default=True, help="auto | cpu | cuda | cuda:N")
@click.option("--threads", type=click.IntRange(min=1), default=None,
              help="Torch compute threads (also $MMVGM_THREADS) [default: torch's].")
@precision_option
def command(videos: Tuple[str, ...], checkpoint: Optional[str], as_json: bool, frames: Optional[int],
            sampling: Optional[str], windows: int, explain_png: Optional[str], device: str,
            precision: str, threads: Optional[int]) -> None:
    """Say whether each video is real or AI-generated, and which model made it.

    \b
    Probabilities are calibrated on the checkpoint's validation split. The source is
    "unknown" when no known generator is likely enough (the open-set threshold).
    A bad video gives one error line; the others still run; the exit code is then 1.

    \b
    Examples:
      mmvgm trace clip.mp4 --checkpoint ckpt/
      mmvgm trace a.mp4 b.webm --json > verdicts.jsonl
      mmvgm trace long.mp4 --windows 4 --explain saliency.png
    """
    from mmvgm.cli import echo_error, echo_warning, fail
    from mmvgm.predict.explain import explain_verdict
    from mmvgm.predict.predictor import Predictor

    pngs = _explain_outputs(videos, explain_png)  # before the checkpoint loads: a bad name fails at once
    predictor = Predictor.from_checkpoint(checkpoint, device=None if device == "auto" else device,
                                          precision=precision, threads=threads)
    predictor.check_frames(frames)
    failures = 0
    if predictor.meta.warning:
        echo_warning(predictor.meta.warning)
    for video in videos:
        try:
            result = predictor.predict(video, frames=frames, sampling=sampling, windows=windows)
            _fewer_windows(video, result, windows)
            if pngs:
                result.explanation = explain_verdict(predictor, video, pngs[video], result, frames, sampling)
        except MMVGMError as exc:
            failures += 1
            if as_json:
                click.echo(json.dumps(Verdict.failed(video, exc.message).to_json()))
            echo_error(f"{video}: {exc.message}")
            continue
        if as_json:
            click.echo(json.dumps(trace_record(result, windows)))
        else:
            _print_table(predictor, result)
    if failures:
        fail(f"{failures} of {len(videos)} video(s) failed", 1)


def _explain_outputs(videos: Tuple[str, ...], explain_png: Optional[str]) -> Dict[str, Path]:
    """Each video's saliency PNG ('{stem}' replaced), each checked writable (``check_output``);
    empty without ``--explain``."""
    if not explain_png:
        return {}
    if len(videos) > 1 and "{stem}" not in explain_png:
        raise InputError("--explain with several videos needs '{stem}' in the file name, "
                         "e.g. --explain 'saliency-{stem}.png'")
    from mmvgm.predict.explain import check_output

    outputs: Dict[str, Path] = {}
    writers: Dict[str, str] = {}  # absolute PNG path -> the video that writes it
    for video in videos:
        out = check_output(explain_png.replace("{stem}", Path(video).stem))
        first = writers.setdefault(os.path.abspath(out), video)
        if os.path.abspath(first) != os.path.abspath(video):
            raise InputError(f"--explain: {first} and {video} have the same name, so both would write "
                             f"{out}; trace them separately", out)
        outputs[video] = out
    return outputs


def _fewer_windows(video: str, result: Verdict, windows: int) -> bool:
    """Whether fewer than ``windows`` windows fit in ``video`` (one per start frame); if so,
    says how many were scored in one line on stderr."""
    scored = len(result.windows or [])
    if windows <= 1 or scored >= windows:
        return False
    fit = "window fits" if scored == 1 else "windows fit"
    last = result.windows[-1].end  # capped, the last window ends at the video's last frame
    where = "this video" if last is None else f"a {last + 1}-frame video"
    click.echo(f"mmvgm: note: {video}: only {scored} {fit} in {where} ({result.frames} frames each); "
               f"scored {scored} of the {windows} asked for", err=True)
    return True


def _pct(p: Optional[float]) -> str:
    return "-" if p is None else f"{100 * p:.1f}%"


def _print_table(predictor: Any, result: Verdict) -> None:
    from rich.table import Table

    from mmvgm.checkpoint.calibration import threshold_summary
    from mmvgm.progress import stdout_console

    cal = predictor.calibration
    verdict = result.verdict
    style = {"fake": "bold red", "real": "bold green"}.get(verdict, "bold yellow")
    title = result.path
    table = Table(title=title, title_justify="left", show_header=True, header_style="bold")
    table.add_column("", style="dim")
    table.add_column("value")
    if result.fake_probability is not None:
        table.add_row("verdict", f"[{style}]{verdict}[/] (P(fake) = {_pct(result.fake_probability)}, "
                                 f"threshold {_pct(cal.threshold)})")
        table.add_row("threshold", threshold_summary(cal))
    elif verdict == "not-assessed":
        table.add_row("verdict", "[yellow]not assessed[/] (trace-only checkpoint: assumes the video is "
                                 "generated)")
    else:
        table.add_row("verdict", f"[{style}]{verdict}[/]")
    if result.source is not None:
        qualifier = " (if generated)" if predictor.task == "joint" and verdict == "real" else ""
        best = result.best_source
        if result.source.unknown:
            table.add_row("source", f"[yellow]unknown[/]{qualifier}: no known source fits "
                                    f"(best {predictor.display.get(best.label, best.label)} {_pct(best.probability)}"
                                    f" < open-set threshold {_pct(cal.open_set_threshold)})")
        else:
            label = predictor.display.get(best.label, best.label)
            table.add_row("source", f"[bold]{label}[/] {_pct(best.probability)}{qualifier}")
    if result.warning:
        table.add_row("warning", f"[yellow]{result.warning}[/]")
    clip = f"{result.frames} frames, {result.sampling}"
    if result.padded:
        clip += f", [yellow]{result.padded} padded[/] (short video: last frame repeated)"
    if result.windows:
        clip += f", mean of {len(result.windows)} windows"
    table.add_row("clip", clip)
    if result.explanation:
        table.add_row("saliency", result.explanation)
    console = stdout_console()
    console.print(table)
    if result.sources:
        ranking = Table(show_header=True, header_style="bold", title="source ranking", title_justify="left")
        ranking.add_column("#", justify="right")
        ranking.add_column("source")
        ranking.add_column("probability", justify="right")
        for rank, (label, p) in enumerate(result.sources.items(), start=1):
            ranking.add_row(str(rank), predictor.display.get(label, label), _pct(p))
        console.print(ranking)
    if result.windows:
        per = Table(show_header=True, header_style="bold", title="windows", title_justify="left")
        per.add_column("start", justify="right")
        per.add_column("end", justify="right")
        per.add_column("verdict")
        if result.fake_probability is not None:
            per.add_column("P(fake)", justify="right")
        if result.source is not None:
            per.add_column("source")
        for w in result.windows:
            row = [str(w.start), "" if w.end is None else str(w.end), w.verdict]
            if result.fake_probability is not None:
                row.append(_pct(w.fake_probability))
            if result.source is not None:
                row.append("unknown" if w.source.unknown else f"{w.source.label} {_pct(w.source.probability)}")
            per.add_row(*row)
        console.print(per)
