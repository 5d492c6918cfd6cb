"""``mmvgm scan``: score a folder or manifest into a resumable JSONL/CSV (over ``mmvgm.predict.scan``)."""
from __future__ import annotations

from typing import Optional

import click

from mmvgm.cli.options import precision_option
from mmvgm.cli.trace import _sampling
from mmvgm.errors import InputError


@click.command(name="scan")
@click.argument("path", required=False, type=click.Path())
@click.option("--checkpoint", "-c", type=click.Path(), envvar="MMVGM_CHECKPOINT", show_envvar=True,
              help="Checkpoint directory (from `mmvgm train` or `mmvgm demo`) or hub id (org/name[@revision]).")
@click.option("--out", "-o", required=True, type=click.Path(dir_okay=False),
              help="Results file: .jsonl (one JSON object per line) or .csv.")
@click.option("--batch-size", "-b", type=click.IntRange(min=1), default=8, show_default=True)
@click.option("--workers", "-j", type=click.IntRange(min=0), default=None,
              help="DataLoader processes decoding ahead of the model (0: decode in-process) "
                   "[default: the usable cores less 2, from 2 to 16; under torchrun, this rank's share].")
@click.option("--resume", is_flag=True, help="Continue an existing output: skip files already in it.")
@click.option("--retry-errors", is_flag=True, help="With --resume: score files that failed before again.")
@click.option("--shard", default=None, metavar="I/N",
              help="Scan only shard I of N (0-based) into OUT.rankI.<ext>; merge with --merge.")
@click.option("--merge", "merge_only", is_flag=True,
              help="Only join OUT.rank*.<ext> (from --shard or torchrun) into OUT, then exit.")
@click.option("--frames", "-t", type=click.IntRange(min=1), default=None,
              help="Frames per clip [default: the checkpoint's].")
@click.option("--sampling", callback=_sampling, default=None,
              help="consecutive | uniform | stride:K [default: the checkpoint's].")
@click.option("--device", default="auto", show_default=True, help="auto | cpu | cuda | cuda:N")
@click.option("--threads", type=click.IntRange(min=1), default=None,
              help="Torch compute threads of the scoring loop (also $MMVGM_THREADS) [default: on CPU, "
                   "every core, less one per worker while the scan waits for decoded clips].")
@click.option("--quiet", "-q", is_flag=True, help="No progress bar.")
@click.option("--summary", "summary_out", type=click.Path(dir_okay=False), default=None, metavar="FILE.json",
              help="Also write the counts as JSON: inputs, scored, errors, already done, files that "
                   "are not videos (by extension), hidden entries; a shard writes FILE.rankI.json.")
@precision_option
def command(path: Optional[str], checkpoint: Optional[str], out: str, batch_size: int, workers: Optional[int],
            resume: bool, retry_errors: bool, shard: Optional[str], merge_only: bool,
            frames: Optional[int], sampling: Optional[str], device: str, quiet: bool, precision: str,
            threads: Optional[int], summary_out: Optional[str]) -> None:
    """Score every video under PATH: a folder (recursive), a video, or a manifest.

    \b
    A manifest (.csv, .jsonl, .ndjson, .txt) lists the files, relative to its folder:
    a .csv with a path column (or the paths in its first column), .jsonl/.ndjson
    objects with "path", a .txt with one path per line (# comments).

    \b
    In a folder, videos are the files `mmvgm info` and `trace` read (by extension or by
    content); a folder holding images and no video is one video, its frames. Every
    other file is counted at the end ("skipped 2 files that are not videos (.json,
    .txt)"), as are hidden entries (.x) and links to folders, which are not followed.

    \b
    One line per file, flushed per batch (a kill loses nothing written) and fsync'd at
    most once a second and at the end (a power cut loses at most that second); a bad
    file gets a line with "error" and the scan goes on. After a crash or kill, rerun
    with --resume: files
    already in the output are skipped and a half-written last line is repaired.
    An existing output is never overwritten without --resume.

    \b
    Several machines: run `--shard I/N` on each (files are split by a hash of their
    path relative to PATH), then `mmvgm scan --merge --out OUT`.
    Several GPUs: `torchrun --nproc-per-node 4 -m mmvgm scan PATH -c ckpt/ --out OUT`
    (or `accelerate launch -m mmvgm scan ...`): each rank writes OUT.rankK.<ext>,
    rank 0 waits for the others and merges them into OUT.

    \b
    Examples:
      mmvgm scan uploads/ --checkpoint ckpt/ --out results.jsonl
      mmvgm scan uploads/ --checkpoint ckpt/ --out results.jsonl --resume
      mmvgm scan uploads/ -c ckpt/ --out results.jsonl --summary counts.json
      mmvgm scan list.csv -c ckpt/ --out results.csv --batch-size 16 --workers 4
      mmvgm scan uploads/ -c ckpt/ --out r.jsonl --shard 0/2   # machine 1 (and 1/2 on machine 2)
      mmvgm scan --merge --out r.jsonl
    """
    from mmvgm.predict.scan import merge_outputs, output_format, parse_shard

    output_format(out)
    if merge_only:
        if summary_out:
            raise InputError("--summary describes a scan; --merge only joins shard outputs (their "
                             "summaries are the scans' own)")
        merged, lines = merge_outputs(out)
        click.echo(f"merged {lines} results into {merged}")
        return
    if path is None:
        raise InputError("give the folder or manifest to scan (or --merge to join shard outputs)")
    if retry_errors and not resume:
        raise InputError("--retry-errors only makes sense with --resume")
    from mmvgm.cli import echo_warning
    from mmvgm.predict.predictor import Predictor
    from mmvgm.runtime import default_decode_workers
    from mmvgm.io.discovery import scan_listing
    from mmvgm.predict.scan import rank_device, run_scan

    if workers is None:
        workers = default_decode_workers()
    # Listed once, here: how many files the workers will decode decides their decoder
    # (torchcodec pays only on many), and a bad PATH is refused before the checkpoint loads.
    listing = scan_listing(path)
    # the decoding workers start while the checkpoint loads, before the model is on the GPU
    with Predictor.from_checkpoint(checkpoint, device=rank_device(None if device == "auto" else device),
                                   workers=workers, precision=precision, threads=threads,
                                   expected_files=len(listing.inputs)) as predictor:
        predictor.frames = predictor.check_frames(frames)  # refuse before any output is created
        if predictor.meta.warning:
            echo_warning(predictor.meta.warning)
        predictor.sampling = sampling or predictor.sampling
        summary = run_scan(predictor, path, out, batch_size=batch_size, workers=workers, resume=resume,
                           shard=parse_shard(shard) if shard else None, retry_errors=retry_errors,
                           progress=not quiet, summary=summary_out, listing=listing)
    parts = [f"{summary.scored} scored", f"{summary.errors} errors"]
    if summary.skipped:
        parts.append(f"{summary.skipped} already done")
    if summary.repaired_bytes:
        parts.append(f"repaired a torn last line ({summary.repaired_bytes} bytes)")
    where = f" (shard {summary.shard})" if summary.shard else ""
    click.echo(f"{summary.out}{where}: {', '.join(parts)}; {summary.files_per_second:.1f} files/s",
               err=True)
    for note in summary.notes():
        click.echo(note, err=True)
    if summary.summary_file is not None:
        click.echo(f"summary: {summary.summary_file}", err=True)
    if summary.merged is not None:
        click.echo(f"merged all shards into {summary.merged}", err=True)
    elif summary.shard is not None and not summary.distributed:
        click.echo(f"when every shard is done: mmvgm scan --merge --out {out}", err=True)
