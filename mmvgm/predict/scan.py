"""Resumable, sharded scanning of many videos: one result line per file, written as it goes.

The output file is the only state. Every batch of results is appended and flushed (a killed
process loses nothing written: it is in the kernel's cache) and fsync'd at most once a second
and at the end (a power cut loses at most that second, which a resume scans again);
``resume=True`` repairs a torn last line (left by ``kill -9`` mid-write), drops duplicate lines
and skips every path already present, so after any number of kills and resumes each input
appears exactly once.

Distribution: each process scans one shard, chosen by a stable hash of the path relative to the
scanned root (so machines that mount the data at different places agree). Under ``torchrun`` /
``accelerate launch`` the shard is the process rank (``RANK``/``WORLD_SIZE``); by hand it is
``--shard I/N``. Shard ``I`` writes ``OUT.rankI.<ext>``; :func:`merge_outputs` (``mmvgm scan
--merge OUT``) joins them into ``OUT``. Under torchrun, rank 0 waits for the others on a
``torch.distributed`` barrier (gloo, 24 h timeout) and merges by itself.
"""
from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, Iterable, List, Optional, Sequence, Tuple, Union

from mmvgm.errors import InputError, PathLike
from mmvgm.io.discovery import Listing, extension_counts, scan_listing
from mmvgm.predict.verdict import Verdict, csv_columns, upgrade_record

OUTPUT_FORMATS = ("jsonl", "csv")

# --------------------------------------------------------------------------- shards and ranks

@dataclass(frozen=True)
class Shard:
    index: int
    count: int

    def __post_init__(self) -> None:
        if self.count < 1 or not 0 <= self.index < self.count:
            raise InputError(f"invalid shard {self.index}/{self.count}: need 0 <= I < N")

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"


def parse_shard(text: str) -> Shard:
    """``"I/N"`` (0-based ``I``) -> :class:`Shard`."""
    try:
        index, count = (int(part) for part in str(text).split("/"))
    except ValueError:
        raise InputError(f"--shard expects I/N with integers, e.g. 0/4 (got '{text}')") from None
    return Shard(index, count)


def rank_from_env(env: Optional[Dict[str, str]] = None) -> Optional[Shard]:
    """The shard of this process under torchrun / accelerate launch (``RANK``, ``WORLD_SIZE``).

    ``None`` for a single process. ``LOCAL_RANK`` alone (one node, no ``RANK``) also counts.
    """
    env = os.environ if env is None else env
    world = env.get("WORLD_SIZE")
    rank = env.get("RANK", env.get("LOCAL_RANK"))
    if world is None or rank is None:
        return None
    try:
        shard = Shard(int(rank), int(world))
    except ValueError:
        raise InputError(f"cannot read RANK={rank!r} / WORLD_SIZE={world!r} from the environment") from None
    return shard if shard.count > 1 else None


def rank_device(preference: Optional[str] = None, env: Optional[Dict[str, str]] = None) -> Optional[str]:
    """Under torchrun with CUDA, ``auto`` means this rank's own GPU (``cuda:LOCAL_RANK``)."""
    env = os.environ if env is None else env
    if preference not in (None, "auto") or "LOCAL_RANK" not in env or rank_from_env(env) is None:
        return preference
    import torch

    if torch.cuda.is_available():
        return f"cuda:{int(env['LOCAL_RANK']) % torch.cuda.device_count()}"
    return preference


def shard_of(path: str, root: Path, count: int) -> int:
    """Stable shard index of ``path``: a hash of its path relative to ``root``."""
    try:
        key = os.path.relpath(path, root)
    except ValueError:  # different drive on Windows
        key = path
    digest = hashlib.sha1(key.replace(os.sep, "/").encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") % count


def select_shard(paths: Sequence[str], root: Path, shard: Optional[Shard]) -> List[str]:
    if shard is None or shard.count == 1:
        return list(paths)
    return [p for p in paths if shard_of(p, root, shard.count) == shard.index]


def rank_output(out: PathLike, rank: int) -> Path:
    """``results.jsonl`` -> ``results.rank3.jsonl``."""
    out = Path(out)
    return out.with_name(f"{out.stem}.rank{rank}{out.suffix}")


# --------------------------------------------------------------------------- output

def output_format(out: PathLike) -> str:
    suffix = Path(out).suffix.lower().lstrip(".")
    if suffix not in OUTPUT_FORMATS:
        raise InputError("the output must end in .jsonl or .csv", out)
    return suffix


def _path_key(path: str) -> str:
    return os.path.normpath(os.path.abspath(path))


def _repair_tail(path: Path) -> int:
    """Cut a torn (unterminated) last line; returns the number of bytes removed."""
    size = path.stat().st_size
    if size == 0:
        return 0
    with open(path, "rb+") as fh:
        fh.seek(max(0, size - 1))
        if fh.read(1) == b"\n":
            return 0
        # Scan backwards for the last newline.
        pos, chunk = size, 1 << 16
        cut = 0
        while pos > 0:
            start = max(0, pos - chunk)
            fh.seek(start)
            block = fh.read(pos - start)
            idx = block.rfind(b"\n")
            if idx >= 0:
                cut = start + idx + 1
                break
            pos = start
        fh.truncate(cut)
        fh.flush()
        os.fsync(fh.fileno())
        return size - cut


def read_results(path: PathLike, upgrade: bool = True) -> List[Dict[str, Any]]:
    """Parse a scan output (JSONL or CSV) into records; a torn last line is ignored. JSONL
    records of an older schema come upgraded (``verdict.upgrade_record``) unless ``upgrade``
    is False."""
    path = Path(path)
    fmt = output_format(path)
    data = path.read_bytes()
    if data and not data.endswith(b"\n"):
        data = data[: data.rfind(b"\n") + 1]
    text = data.decode("utf-8", errors="replace")
    if fmt == "jsonl":
        records = []
        lines = text.splitlines()
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                if number == len(lines):
                    continue  # a final line cut by a crash between write and newline
                raise InputError(f"line {number} is not JSON: this is not a scan output", path) from None
            if not isinstance(record, dict) or "path" not in record:
                raise InputError(f"line {number} has no 'path': this is not a scan output", path)
            records.append(upgrade_record(record) if upgrade else record)
        return records
    rows = list(csv.DictReader(io.StringIO(text)))
    if rows and "path" not in rows[0]:
        raise InputError("no 'path' column: this is not a scan output", path)
    return [dict(r) for r in rows if r.get("path")]


class ResultWriter:
    """Appends verdicts to a JSONL or CSV file: flushed per :meth:`write` call, fsync'd at most
    every ``fsync_every`` seconds and on close. An fsync per batch would make a fast GPU scan wait
    on the disk; a crash loses at most the last second, which a resume scans again."""

    def __init__(self, path: PathLike, source_labels: Sequence[str] = (), resume: bool = False,
                 retry_errors: bool = False, protect: Iterable[PathLike] = (),
                 fsync_every: float = 1.0) -> None:
        self.path = Path(path)
        self.fsync_every = fsync_every
        self._synced = time.monotonic()
        self.format = output_format(self.path)
        self.columns = csv_columns(source_labels)
        for item in protect:
            if self.path.exists() and Path(item).exists() and os.path.samefile(self.path, item):
                raise InputError("refusing to write results over an input file", self.path)
        self.done: Dict[str, Dict[str, Any]] = {}
        self.repaired_bytes = 0
        if self.path.exists() and self.path.stat().st_size > 0:
            if not resume:
                raise InputError("output exists; add --resume to continue it, or choose another --out",
                                 self.path)
            self._load_existing(retry_errors)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._fh = open(self.path, "a", encoding="utf-8", newline="")
        if self.format == "csv" and self._fh.tell() == 0:
            self._write_text(self._csv_line(dict(zip(self.columns, self.columns))))

    # -- resume
    def _load_existing(self, retry_errors: bool) -> None:
        self.repaired_bytes = _repair_tail(self.path)
        raw = read_results(self.path, upgrade=False)
        records = [upgrade_record(r) for r in raw] if self.format == "jsonl" else raw
        stale = records != raw  # lines of an older schema: rewritten in the current one
        if self.format == "csv":
            with open(self.path, newline="", encoding="utf-8") as fh:
                header = next(csv.reader(fh), [])
            if header and header != self.columns:
                raise InputError("the existing CSV has other columns (another checkpoint's labels?); "
                                 "choose another --out", self.path)
        kept: Dict[str, Dict[str, Any]] = {}
        dropped = 0
        for record in records:
            key = _path_key(str(record["path"]))
            if key in kept or (retry_errors and record.get("error")):
                dropped += 1
                continue
            kept[key] = record
        self.done = kept
        if dropped or stale:
            self._rewrite(list(kept.values()))

    def _rewrite(self, records: List[Dict[str, Any]]) -> None:
        from mmvgm.io.atomic import atomic_path

        with atomic_path(self.path) as tmp:
            with open(tmp, "w", encoding="utf-8", newline="") as fh:
                if self.format == "csv":
                    fh.write(self._csv_line(dict(zip(self.columns, self.columns))))
                for record in records:
                    fh.write(self._line(record))

    def is_done(self, path: str) -> bool:
        return _path_key(path) in self.done

    # -- writing
    def _line(self, record: Union[Verdict, Dict[str, Any]]) -> str:
        """A verdict as a new line; a plain dict is a line read back on resume, kept as it was."""
        if self.format == "jsonl":
            return jsonl_line(record) + "\n"
        return self._csv_line(record.to_csv_row() if isinstance(record, Verdict) else record)

    def _csv_line(self, row: Dict[str, Any]) -> str:
        buffer = io.StringIO()
        csv.DictWriter(buffer, fieldnames=self.columns, extrasaction="ignore",
                       lineterminator="\n").writerow(row)
        return buffer.getvalue()

    def _write_text(self, text: str) -> None:
        self._fh.write(text)
        self._fh.flush()
        if time.monotonic() - self._synced >= self.fsync_every:
            self._sync()

    def _sync(self) -> None:
        os.fsync(self._fh.fileno())
        self._synced = time.monotonic()

    def write(self, records: Iterable[Verdict]) -> int:
        """Append verdicts (one line each; a path already written is skipped); returns how many."""
        lines = []
        for record in records:
            key = _path_key(record.path)
            if key in self.done:
                continue
            self.done[key] = record
            lines.append(self._line(record))
        if lines:
            self._write_text("".join(lines))
        return len(lines)

    def close(self) -> None:
        if not self._fh.closed:
            self._fh.flush()
            self._sync()
            self._fh.close()

    def __enter__(self) -> "ResultWriter":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def jsonl_line(record: Union[Verdict, Dict[str, Any]]) -> str:
    """One line of a ``.jsonl`` results file (no newline): a verdict's record, or a record read back."""
    data = record.to_json() if isinstance(record, Verdict) else record
    return json.dumps(data, ensure_ascii=False, default=_jsonable)


def _jsonable(obj: Any) -> Any:
    if hasattr(obj, "item"):
        return obj.item()
    if hasattr(obj, "tolist"):
        return obj.tolist()
    return str(obj)


# --------------------------------------------------------------------------- merging

def shard_outputs(out: PathLike) -> List[Tuple[int, Path]]:
    """``(K, OUT.rankK.<ext>)`` for each shard output beside ``out``, ordered by K."""
    out = Path(out)
    found = []
    for candidate in out.parent.glob(f"{out.stem}.rank*{out.suffix}"):
        middle = candidate.name[len(out.stem) + len(".rank"): len(candidate.name) - len(out.suffix)]
        if middle.isdigit():
            found.append((int(middle), candidate))
    return sorted(found)


def merge_outputs(out: PathLike, expected: Optional[int] = None) -> Tuple[Path, int]:
    """Join ``OUT.rank*.<ext>`` into ``OUT`` (atomically), each path once; returns (OUT, lines).

    ``expected``: the number of shards that must be present (all ranks 0..N-1).
    """
    out = Path(out)
    fmt = output_format(out)
    found = shard_outputs(out)
    if not found:
        raise InputError(f"no shard outputs to merge (looked for {out.stem}.rank*{out.suffix})", out)
    ranks = [rank for rank, _ in found]
    parts = [part for _, part in found]
    count = expected if expected is not None else ranks[-1] + 1
    missing = sorted(set(range(count)) - set(ranks))
    if missing:
        raise InputError(f"shard outputs missing for rank(s) {', '.join(map(str, missing))}; "
                         "finish those shards first", out)
    header: Optional[List[str]] = None
    seen: Dict[str, Dict[str, Any]] = {}
    for part in parts:
        if fmt == "csv":
            with open(part, newline="", encoding="utf-8") as fh:
                part_header = next(csv.reader(fh), [])
            if header is None:
                header = part_header
            elif part_header and part_header != header:
                raise InputError("shard outputs have different columns; were they made by the same "
                                 "checkpoint?", part)
        for record in read_results(part):
            seen.setdefault(_path_key(str(record["path"])), record)
    from mmvgm.io.atomic import atomic_path

    with atomic_path(out) as tmp:
        with open(tmp, "w", encoding="utf-8", newline="") as fh:
            if fmt == "jsonl":
                for record in seen.values():
                    fh.write(json.dumps(record, ensure_ascii=False) + "\n")
            else:
                writer = csv.DictWriter(fh, fieldnames=header or [], extrasaction="ignore",
                                        lineterminator="\n")
                writer.writeheader()
                writer.writerows(seen.values())
    return out, len(seen)


# --------------------------------------------------------------------------- the scan

@dataclass
class ScanSummary:
    """What one process's scan did, and what else lay under the scanned folder (its shard's share):
    each file there is an input (``skipped`` + ``scored`` + ``errors`` = ``total``) or counted
    in ``not_videos``; ``hidden``, ``links`` and ``unreadable`` entries are not looked into."""

    out: Path                   # the file this process wrote
    total: int                  # inputs in this process's shard
    skipped: int                # already in the output (resume)
    scored: int                 # newly scored
    errors: int                 # newly written error lines
    seconds: float
    shard: Optional[Shard] = None
    merged: Optional[Path] = None   # the merged OUT (rank 0 under torch.distributed)
    distributed: bool = False   # ranks synchronised on a torch.distributed barrier
    repaired_bytes: int = 0     # bytes of a torn last line removed on resume
    scanned: Optional[Path] = None  # the folder, manifest or video given
    frame_folders: int = 0      # of ``total``: folders of frames, one input each
    not_videos: Dict[str, int] = field(default_factory=dict)  # files that are not videos, by extension
    hidden: int = 0             # files and folders named ".x"
    links: int = 0              # symbolic links to folders, not followed
    unreadable: int = 0         # folders that could not be listed
    summary_file: Optional[Path] = None  # where :meth:`to_json` was written

    @property
    def files_per_second(self) -> float:
        return (self.scored + self.errors) / self.seconds if self.seconds > 0 else 0.0

    @property
    def not_video_count(self) -> int:
        return sum(self.not_videos.values())

    def notes(self) -> List[str]:
        """Closing lines for what was not scored: files that are not videos, entries not read."""
        lines = []
        n = self.not_video_count
        if n:
            shown = list(self.not_videos)
            listed = ", ".join(shown[:10]) + (f", and {len(shown) - 10} more" if len(shown) > 10 else "")
            lines.append(f"skipped {_count(n, 'file')} that {'is not a video' if n == 1 else 'are not videos'}"
                         f" ({listed})")
        unread = [_count(count, noun) + why for count, noun, why in (
            (self.hidden, "hidden entry", " (name starting with '.')"),
            (self.links, "link to a folder", " (not followed: scan its target)"),
            (self.unreadable, "unreadable folder", "")) if count]
        if unread:
            lines.append("not looked into: " + ", ".join(unread))
        return lines

    def to_json(self) -> Dict[str, Any]:
        """The counts as ``mmvgm scan --summary`` writes them."""
        return {"scanned": _str_or_none(self.scanned), "out": str(self.out),
                "shard": _str_or_none(self.shard), "inputs": self.total,
                "frame_folders": self.frame_folders, "already_done": self.skipped,
                "scored": self.scored, "errors": self.errors,
                "not_videos": {"count": self.not_video_count, "extensions": dict(self.not_videos)},
                "hidden": self.hidden, "links_not_followed": self.links,
                "unreadable_folders": self.unreadable, "repaired_bytes": self.repaired_bytes,
                "seconds": round(self.seconds, 3), "files_per_second": round(self.files_per_second, 2),
                "merged": _str_or_none(self.merged)}


def _count(n: int, noun: str) -> str:
    if n == 1:
        return f"1 {noun}"
    plural = noun[:-1] + "ies" if noun.endswith("y") else noun + "s"
    return f"{n} {plural}"


def _str_or_none(value: Any) -> Optional[str]:
    return None if value is None else str(value)


def _barrier() -> Optional[bool]:
    """Wait for every rank (torch.distributed, gloo). None: no process group can be had;
    True: this call created the group (the caller destroys it); False: it existed already."""
    try:
        import datetime

        import torch.distributed as dist
    except ImportError:
        return None
    if not dist.is_available():
        return None
    created = False
    if not dist.is_initialized():
        if not (os.environ.get("MASTER_ADDR") and os.environ.get("MASTER_PORT")):
            return None
        # Ranks finish their shards at different times: allow a long wait.
        dist.init_process_group("gloo", timeout=datetime.timedelta(hours=24))
        created = True
    dist.barrier()
    return created


def run_scan(predictor: Any, path: PathLike, out: PathLike, batch_size: int = 8, workers: int = 2,
             resume: bool = False, shard: Optional[Shard] = None, retry_errors: bool = False,
             progress: bool = True, merge: bool = True,
             on_batch: Optional[Callable[[List[Verdict]], None]] = None,
             summary: Optional[PathLike] = None, listing: Optional[Listing] = None) -> ScanSummary:
    """Scan ``path`` (folder or manifest) with ``predictor`` into ``out`` (.jsonl or .csv).

    ``predictor`` needs ``source_labels`` and ``stream(paths, batch_size, workers)`` (see
    :class:`mmvgm.predict.predictor.Predictor`). With ``shard`` (or RANK/WORLD_SIZE in the
    environment) only that shard is scanned, into ``OUT.rankI.<ext>``; under an initialised or
    initialisable torch.distributed group rank 0 then merges all shards into ``out``.
    Files of a folder that are not videos are counted in the returned summary, which
    ``summary`` names a JSON file for (``SUMMARY.rankI.json`` for a shard), written atomically.
    ``listing``: ``scan_listing(path)`` made already (the CLI counts the files before loading).
    """
    output_format(out)
    listing = scan_listing(path) if listing is None else listing
    env_shard = rank_from_env()
    if shard is not None and env_shard is not None:
        raise InputError("--shard cannot be combined with torchrun/accelerate ranks "
                         "(RANK/WORLD_SIZE are set); use one or the other")
    active = shard or env_shard
    split = active is not None and active.count > 1
    target = rank_output(out, active.index) if split else Path(out)
    summary_file = None if summary is None else (rank_output(summary, active.index) if split else Path(summary))
    _refuse_inputs_as_outputs(listing, Path(path).expanduser(), [target, Path(out)], summary_file)
    started = time.perf_counter()
    result = _score(predictor, select_shard(listing.inputs, listing.root, active), target, batch_size,
                    workers, resume, retry_errors, progress, on_batch, started)
    result.shard, result.scanned = active, Path(path)
    _account(result, listing, active)
    if env_shard is not None and merge:
        created = _barrier()
        result.distributed = created is not None
        if result.distributed and env_shard.index == 0:
            result.merged, _ = merge_outputs(out, expected=env_shard.count)
        if created:
            import torch.distributed as dist

            dist.destroy_process_group()
    if summary_file is not None:
        from mmvgm.io.atomic import write_json_atomic

        result.summary_file = write_json_atomic(summary_file, result.to_json())
    return result


def _refuse_inputs_as_outputs(listing: Listing, scanned: Path, outputs: List[Path],
                              summary_file: Optional[Path]) -> None:
    """Neither this process's file, the merged OUT nor the summary may be an input: a listed video
    or the manifest itself (resuming "over" a JSONL manifest would truncate and append to it)."""
    guarded = {_path_key(p) for p in listing.inputs} | {_path_key(str(scanned))}
    for dest in dict.fromkeys(outputs + ([summary_file] if summary_file is not None else [])):
        if _path_key(str(dest)) in guarded or (dest.exists() and os.path.samefile(dest, scanned)):
            raise InputError("refusing to write results over an input file", dest)
    if summary_file is not None:
        _check_summary_file(summary_file, listing, outputs)


def _check_summary_file(summary_file: Path, listing: Listing, outputs: List[Path]) -> None:
    """Before any scanning: the summary goes to a new (or an earlier summary's) ``.json`` file in a
    folder that exists and takes files, never over a file of the scanned folder or the results."""
    if _path_key(str(summary_file)) in {_path_key(str(o)) for o in outputs}:
        raise InputError("the summary needs a file of its own, not the results file", summary_file)
    if summary_file.suffix.lower() != ".json":
        raise InputError("the summary file's name must end in .json", summary_file)
    if _path_key(str(summary_file)) in {_path_key(p) for p in listing.not_videos}:
        raise InputError("refusing to write the summary over a file of the scanned folder", summary_file)
    if summary_file.exists() and not _is_summary(summary_file):
        raise InputError("refusing to overwrite a file that is not an earlier scan summary", summary_file)
    folder = summary_file.parent
    if not folder.is_dir():
        raise InputError("no such folder for the summary (create it first)", folder)
    if not os.access(folder, os.W_OK | os.X_OK):
        raise InputError("cannot create files in this folder", folder)


def _is_summary(path: Path) -> bool:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return False
    return isinstance(data, dict) and "not_videos" in data and "scored" in data


def _score(predictor: Any, mine: List[str], target: Path, batch_size: int, workers: int, resume: bool,
           retry_errors: bool, progress: bool, on_batch: Optional[Callable[[List[Verdict]], None]],
           started: float) -> ScanSummary:
    """Score the shard's inputs not yet in ``target``; the bar counts exactly those."""
    scored = errors = 0
    with ResultWriter(target, predictor.source_labels, resume=resume,
                      retry_errors=retry_errors) as writer:
        todo = [p for p in mine if not writer.is_done(p)]
        from rich.progress import TextColumn

        from mmvgm.progress import make_progress

        with make_progress(TextColumn("{task.fields[rate]:.1f} files/s"),
                           TextColumn("[red]{task.fields[errors]} errors"),
                           disable=not progress) as bar:
            task = bar.add_task("scan", total=len(todo), rate=0.0, errors=0)
            for batch in predictor.stream(todo, batch_size=batch_size, workers=workers):
                writer.write(batch)
                bad = sum(1 for r in batch if not r.ok)
                errors += bad
                scored += len(batch) - bad
                elapsed = time.perf_counter() - started
                bar.update(task, advance=len(batch), errors=errors,
                           rate=(scored + errors) / elapsed if elapsed > 0 else 0.0)
                if on_batch is not None:
                    on_batch(batch)
    return ScanSummary(out=target, total=len(mine), skipped=len(mine) - len(todo), scored=scored,
                       errors=errors, seconds=time.perf_counter() - started,
                       repaired_bytes=writer.repaired_bytes)


def _account(result: ScanSummary, listing: Listing, active: Optional[Shard]) -> None:
    """This shard's share of what the folder walk met besides inputs (each entry is counted by
    one shard, by the same path hash as the inputs, so the shards' counts add up)."""
    def share(paths: List[str]) -> List[str]:
        return select_shard(paths, listing.root, active)

    result.frame_folders = len(share(listing.frame_folders))
    result.not_videos = extension_counts(share(listing.not_videos))
    result.hidden = len(share(listing.hidden))
    result.links = len(share(listing.links))
    result.unreadable = len(share(listing.unreadable))
