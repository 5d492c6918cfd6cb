"""Finding the videos to read: folder walks and manifests, for labelled data and for scans.

One home for the rules every command shares (``mmvgm train``, ``eval``, ``dataset`` and
``scan``):

* Videos are what ``info`` and ``trace`` read (:func:`mmvgm.io.paths.is_video_file`): an
  extension in :data:`mmvgm.io.paths.VIDEO_EXTENSIONS`, or content that starts like a video
  container; image extensions are frames, never sniffed. Hidden files and folders (``.x``) and
  symbolic links to folders are skipped (a scan counts them).
* A frame folder is one video: a folder, other than the walked root or a label folder, that
  holds image files and no video file, at any depth. All it holds belongs to that one video.
  Images beside videos (posters, thumbnails) or directly in the root/label folder are ignored
  with a warning.
* A manifest is one of :data:`MANIFEST_EXTENSIONS`:

  - ``.csv``: header ``path[,label][,split]``, extra columns ignored; read without labels, a
    CSV whose header has no ``path`` column lists the paths in its first column;
  - ``.jsonl``/``.ndjson``: one JSON object per line with ``path`` (and ``label``, ``split``);
  - ``.txt``: one path per line, ``#`` comments and blank lines skipped; with labels, each
    line is ``path<TAB>label[<TAB>split]``.

  Relative paths are resolved against the manifest's folder; a byte-order mark is ignored.

:func:`discover` returns labelled :class:`Sample` s (folder layout ``root/<label>/**``);
:func:`scan_listing` returns the unlabelled paths a scan reads, the root its shard hash is
relative to, and every other entry of a scanned folder (:class:`Listing`: a scan drops no file
without counting it); :func:`list_inputs` returns the first two.
"""
from __future__ import annotations

import csv
import difflib
import io
import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Dict, Iterable, Iterator, List, NamedTuple, Optional, Sequence, Tuple, Union

from mmvgm.errors import InputError, PathLike
from mmvgm.io.paths import IMAGE_EXTENSIONS, VIDEO_EXTENSIONS, is_video_file

if TYPE_CHECKING:
    from mmvgm.data.labels import LabelSet

# The warnings are about data sets; "mmvgm.data" is the logger users and tests already filter on.
log = logging.getLogger("mmvgm.data")

MANIFEST_EXTENSIONS = (".csv", ".jsonl", ".ndjson", ".txt")
_JSON_LINES = (".jsonl", ".ndjson")

SPLITS = ("train", "val", "test")
_SPLIT_ALIASES = {"train": "train", "training": "train", "val": "val", "valid": "val",
                  "validation": "val", "dev": "val", "test": "test", "testing": "test"}

LabelsArg = Union["LabelSet", PathLike, Sequence[str], None]


@dataclass(frozen=True, order=True)
class Sample:
    """One video (file or frame directory) with its label name and optional fixed split."""

    path: str
    label: Optional[str]
    split: Optional[str] = None


class _Row(NamedTuple):
    """One manifest entry as written: ``path`` stripped but unresolved, ``label``/``split`` raw (or None)."""

    line: int
    path: str
    label: Optional[str]
    split: Any


def manifest_formats() -> str:
    """``".csv, .jsonl, .ndjson, .txt"``: the formats, as error messages and help texts name them."""
    return ", ".join(MANIFEST_EXTENSIONS)


def is_manifest(path: Path) -> bool:
    return path.suffix.lower() in MANIFEST_EXTENSIONS


def normalize_split(value: Any, where: Optional[PathLike] = None) -> Optional[str]:
    """``train``/``val``/``test`` (with common aliases), ``None`` for empty."""
    if value is None:
        return None
    text = str(value).strip().lower()
    if not text:
        return None
    if text not in _SPLIT_ALIASES:
        raise InputError(f"unknown split '{value}' (use train, val or test)", where)
    return _SPLIT_ALIASES[text]


def as_label_set(labels: LabelsArg) -> Optional["LabelSet"]:
    """A :class:`LabelSet` from a label set, a name/path of one, or a list of names."""
    from mmvgm.data.labels import LabelSet  # lazily: mmvgm.io does not need mmvgm.data to import

    if labels is None or isinstance(labels, LabelSet):
        return labels
    if isinstance(labels, (list, tuple)):
        return LabelSet("labels", list(labels))
    return LabelSet.load(labels)


# -- labelled: discover -----------------------------------------------------------------------
def discover(root_or_manifest: PathLike, labels: LabelsArg = None, on_missing: str = "error") -> List[Sample]:
    """All samples of a folder dataset ``root/<label>/**`` or a manifest, sorted by path.

    ``labels`` (a :class:`LabelSet`, a label-set name/path or a list of names): labels in the
    data must belong to it, else ``InputError`` listing the known ones. ``on_missing``:
    ``"error"`` (default) refuses a manifest naming files that do not exist, ``"warn"`` logs
    and drops them.
    """
    if on_missing not in ("error", "warn"):
        raise ValueError("on_missing must be 'error' or 'warn'")
    label_set = as_label_set(labels)
    path = Path(root_or_manifest).expanduser()
    if not path.exists():
        raise InputError(f"dataset not found (expected a folder root/<label>/... or a manifest: "
                         f"{manifest_formats()})", path)
    if path.is_dir():
        samples = _discover_folder(path, label_set)
    elif is_manifest(path):
        samples = _manifest_samples(path, label_set, on_missing)
    else:
        raise InputError(f"not a dataset: expected a folder or a manifest ({manifest_formats()})", path)
    if not samples:
        raise InputError("no videos found in the dataset", path)
    return sorted(samples)


def _discover_folder(root: Path, label_set: Optional["LabelSet"]) -> List[Sample]:
    label_dirs = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not label_dirs:
        raise InputError("no label folders: expected root/<label>/<videos>", root)
    if label_set is not None:
        for d in label_dirs:
            if not label_set.is_known(d.name):
                raise InputError(label_set.unknown_message(d.name), d)
    samples: List[Sample] = []
    for label_dir in label_dirs:
        samples.extend(Sample(str(p), label_dir.name) for p in _videos_under(label_dir, "label folder"))
    return samples


def _manifest_samples(path: Path, label_set: Optional["LabelSet"], on_missing: str) -> List[Sample]:
    by_path: Dict[str, Sample] = {}
    missing: List[str] = []
    for row in _manifest_rows(path, labelled=True):
        where = f"{path}: line {row.line}"
        label = (row.label or "").strip()
        if not label:
            raise InputError("empty label", where)
        if label_set is not None and not label_set.is_known(label):
            raise InputError(label_set.unknown_message(label), where)
        sample = Sample(_resolve(row, path), label, normalize_split(row.split, where))
        if not os.path.exists(sample.path):
            missing.append(f"{row.path} (line {row.line})")
            continue
        previous = by_path.get(sample.path)
        if previous is not None and previous.label != label:
            raise InputError(f"'{row.path}' is listed twice with different labels "
                             f"('{previous.label}' and '{label}')", where)
        if previous is not None:
            log.warning("%s: '%s' is listed twice; keeping the first entry", where, row.path)
            continue
        by_path[sample.path] = sample
    if missing:
        _report_missing(path, missing, on_missing)
    return list(by_path.values())


def _report_missing(path: Path, missing: List[str], on_missing: str) -> None:
    shown = "; ".join(missing[:5]) + (f"; and {len(missing) - 5} more" if len(missing) > 5 else "")
    message = f"{len(missing)} listed file(s) do not exist: {shown}"
    if on_missing == "error":
        raise InputError(message, path)
    log.warning("%s: %s (skipped)", path, message)


# -- unlabelled: list_inputs --------------------------------------------------------------------
@dataclass
class Listing:
    """What a scan reads, and every other entry its folder walk met, so that none goes unaccounted.

    Each visible entry below the folder is in exactly one list: an input (a video, or a frame
    folder with everything it holds), ``not_videos`` (files, loose images included), ``links``
    or ``unreadable``; ``hidden`` entries (``.x``) are named, not looked into. A manifest or a
    single file gives ``inputs`` only.
    """

    inputs: List[str]   # videos and frame folders, sorted (a manifest: in its order)
    root: Path          # shard hashes are relative to it
    frame_folders: List[str] = field(default_factory=list)  # the inputs that are frame folders
    not_videos: List[str] = field(default_factory=list)     # files that are not videos
    hidden: List[str] = field(default_factory=list)         # names starting with "."
    links: List[str] = field(default_factory=list)          # symbolic links to folders, not followed
    unreadable: List[str] = field(default_factory=list)     # folders that could not be listed


_ACCOUNTS = ("inputs", "frame_folders", "not_videos", "hidden", "links", "unreadable")  # Listing's lists


def scan_listing(path: PathLike) -> Listing:
    """The videos to scan, their shard root, and what else lies under a scanned folder.

    ``path`` is a folder (searched recursively, sorted), a manifest (its order; the files are
    not checked here, a scan reports a missing one as an error line) or a single video file
    (by extension or by content, as :func:`mmvgm.io.paths.check_media_file` accepts it).
    """
    path = Path(path).expanduser()
    if not path.exists():
        raise InputError("no such file or folder", path)
    if path.is_dir():
        listing = _walk(path, "scanned folder")
        if not listing.inputs:
            raise InputError(f"no videos found (looked for {', '.join(sorted(VIDEO_EXTENSIONS))} "
                             f"and folders of frames{_not_videos_note(listing.not_videos)})", path)
        listing.inputs.sort()
        return listing
    if is_manifest(path):
        entries = _manifest_paths(path)
        if not entries:
            raise InputError("the manifest lists no files", path)
        return Listing(entries, path.parent)
    if is_video_file(path):
        return Listing([str(path)], path.parent)
    raise InputError(f"expected a folder of videos, a video or a manifest ({manifest_formats()})", path)


def list_inputs(path: PathLike) -> Tuple[List[str], Path]:
    """``(inputs, root)`` of :func:`scan_listing`."""
    listing = scan_listing(path)
    return listing.inputs, listing.root


def extension_counts(paths: Iterable[str]) -> Dict[str, int]:
    """``{".txt": 2, "(no extension)": 1}``, most frequent first (then by name)."""
    counts: Dict[str, int] = {}
    for p in paths:
        key = Path(p).suffix.lower() or "(no extension)"
        counts[key] = counts.get(key, 0) + 1
    return dict(sorted(counts.items(), key=lambda item: (-item[1], item[0])))


def _not_videos_note(not_videos: List[str]) -> str:
    if not not_videos:
        return ""
    return f"; {len(not_videos)} other file(s): {', '.join(extension_counts(not_videos))}"


def _manifest_paths(path: Path) -> List[str]:
    """Resolved paths in manifest order; a path listed twice is scanned once."""
    seen: Dict[str, None] = {}
    for row in _manifest_rows(path, labelled=False):
        resolved = _resolve(row, path)
        if resolved in seen:
            log.warning("%s: line %d: '%s' is listed twice; keeping the first entry", path, row.line, row.path)
        seen.setdefault(resolved, None)
    return list(seen)


# -- folders ------------------------------------------------------------------------------------
def _videos_under(top: Path, kind: str) -> List[Path]:
    """Video files and frame folders below ``top`` (``kind`` names ``top`` in the warning)."""
    return [Path(p) for p in _walk(top, kind).inputs]


class _Folder(NamedTuple):
    """One folder's own entries, sorted by name (its sub-folders are walked separately)."""

    videos: List[str]
    images: List[str]
    others: List[str]
    subfolders: List[str]


def _walk(top: Path, kind: str) -> Listing:
    listing = Listing([], top)
    loose: List[int] = [0]
    try:
        _visit(str(top), True, listing, loose)
    except RecursionError:
        raise InputError("folders nested too deep to walk", top) from None
    if loose[0]:
        log.warning("%s: ignoring %d image file(s) lying beside videos or directly in the %s "
                    "(put the frames of one video in a folder of their own)", top, loose[0], kind)
    return listing


def _visit(folder: str, is_top: bool, listing: Listing, loose: List[int]) -> bool:
    """Walk ``folder`` into ``listing``; True when a video file lies in it or below it.

    A folder of frames is one video, whatever lies below it, unless a video file does (then
    its images are loose: posters or thumbnails). The walk goes bottom-up to know that.
    """
    mark = _lengths(listing)
    own = _read_folder(folder, listing)
    if own is None:
        return False
    below = [_visit(sub, False, listing, loose) for sub in own.subfolders]
    if own.images and not own.videos and not any(below) and not is_top:
        _truncate(listing, mark)  # the frame folder accounts for all it holds
        listing.inputs.append(folder)
        listing.frame_folders.append(folder)
        return False
    loose[0] += len(own.images)
    listing.inputs.extend(own.videos)
    listing.not_videos.extend(own.images + own.others)
    return bool(own.videos) or any(below)


def _read_folder(folder: str, listing: Listing) -> Optional[_Folder]:
    """Sort ``folder``'s entries; hidden ones, links to folders and an unreadable folder go
    straight to ``listing`` (None for the last)."""
    try:
        with os.scandir(folder) as it:
            entries = sorted(it, key=lambda e: e.name)
    except OSError as exc:
        log.warning("%s: cannot list this folder (%s); its files are not scanned",
                    folder, exc.strerror or exc)
        listing.unreadable.append(folder)
        return None
    own = _Folder([], [], [], [])
    for entry in entries:
        if entry.name.startswith("."):
            listing.hidden.append(entry.path)
        elif _is_folder(entry, follow=False):
            own.subfolders.append(entry.path)
        elif _is_folder(entry, follow=True):
            listing.links.append(entry.path)
        else:
            _sort_file(entry.path, own)
    return own


def _sort_file(path: str, own: _Folder) -> None:
    suffix = os.path.splitext(path)[1].lower()
    if suffix in VIDEO_EXTENSIONS:
        own.videos.append(path)
    elif suffix in IMAGE_EXTENSIONS:  # frames are never opened to be sniffed
        own.images.append(path)
    elif not suffix and is_video_file(Path(path)):  # an upload that lost its extension; a file
        own.videos.append(path)                      # with another one (sidecars) is not opened
    else:
        own.others.append(path)


def _is_folder(entry: "os.DirEntry[str]", follow: bool) -> bool:
    try:
        return entry.is_dir(follow_symlinks=follow)
    except OSError:
        return False


def _lengths(listing: Listing) -> Tuple[int, ...]:
    return tuple(len(getattr(listing, name)) for name in _ACCOUNTS)


def _truncate(listing: Listing, mark: Tuple[int, ...]) -> None:
    for name, length in zip(_ACCOUNTS, mark):
        del getattr(listing, name)[length:]


# -- manifests ----------------------------------------------------------------------------------
def _resolve(row: _Row, manifest: Path) -> str:
    if not row.path:
        raise InputError("empty path", f"{manifest}: line {row.line}")
    resolved = Path(row.path).expanduser()
    if not resolved.is_absolute():
        resolved = manifest.parent / resolved
    return os.path.normpath(resolved)


def _manifest_rows(path: Path, labelled: bool) -> Iterator[_Row]:
    """The entries of any manifest format; ``labelled``: each must carry a label."""
    text = _manifest_text(path)
    suffix = path.suffix.lower()
    if suffix == ".csv":
        return _csv_rows(text, path, labelled)
    if suffix in _JSON_LINES:
        return _json_rows(text, path, labelled)
    return _txt_rows(text, path, labelled)


def _manifest_text(path: Path) -> str:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise InputError(f"cannot read the manifest: {exc.strerror or exc}", path) from None
    try:
        return data.decode("utf-8-sig")  # a BOM (Excel, Notepad) is not part of the first path
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise InputError(f"line {line}: manifest is not UTF-8 text", path) from None


def _csv_rows(text: str, path: Path, labelled: bool) -> Iterator[_Row]:
    reader = csv.reader(io.StringIO(text))
    try:
        header = next((cells for cells in reader if _filled(cells)), None)
        if header is None:
            if labelled:
                raise InputError("empty manifest", path)
            return
        columns = [h.strip().lower() for h in header]
        if labelled:
            _require_keys(columns, ("path", "label"), path, "a header path,label[,split]")
        elif "path" not in columns:
            # a bare list of paths: the first column, and the first row is one of them
            columns = ["path"] + columns[1:]
            yield _csv_row(reader.line_num, header, columns)
        for cells in reader:
            if _filled(cells):
                yield _csv_row(reader.line_num, cells, columns)
    except csv.Error as exc:
        raise InputError(f"line {reader.line_num}: malformed CSV: {exc}", path) from None


def _filled(cells: List[str]) -> bool:
    return any(cell.strip() for cell in cells)


def _csv_row(line: int, cells: List[str], columns: List[str]) -> _Row:
    row = dict(zip(columns, cells))
    return _Row(line, (row.get("path") or "").strip(), row.get("label"), row.get("split"))


def _numbered_lines(text: str) -> Iterator[Tuple[int, str]]:
    # "\n" only (not str.splitlines' form feeds and separators): the numbers editors show
    return enumerate(text.split("\n"), start=1)


def _json_rows(text: str, path: Path, labelled: bool) -> Iterator[_Row]:
    required = ("path", "label") if labelled else ("path",)
    for number, line in _numbered_lines(text):
        if not line.strip():
            continue
        try:
            item = json.loads(line)
        except json.JSONDecodeError as exc:
            raise InputError(f"line {number}: invalid JSON ({exc.msg}): not JSON Lines "
                             "(one object per line)", path) from None
        if not isinstance(item, dict):
            raise InputError(f"line {number}: expected a JSON object with {' and '.join(required)}", path)
        item = {str(k).lower(): v for k, v in item.items()}
        _require_keys(list(item), required, path, "keys " + ",".join(required) + "[,split]", number, "key")
        label = item.get("label")
        yield _Row(number, str(item.get("path") or "").strip(), None if label is None else str(label),
                   item.get("split"))


def _txt_rows(text: str, path: Path, labelled: bool) -> Iterator[_Row]:
    for number, line in _numbered_lines(text):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        fields = [f.strip() for f in stripped.split("\t")]
        label = fields[1] if len(fields) > 1 else None
        if labelled and not label:
            shown = stripped if len(stripped) <= 60 else stripped[:57] + "..."
            raise InputError(f"line {number} ('{shown}') has no label; expected path<TAB>label[<TAB>split]",
                             path)
        yield _Row(number, fields[0], label, fields[2] if len(fields) > 2 else None)


def _require_keys(columns: Sequence[str], required: Sequence[str], path: Path, expected: str,
                  line: Optional[int] = None, noun: str = "column") -> None:
    for key in required:
        if key not in columns:
            close = difflib.get_close_matches(key, list(columns), n=1)
            hint = f" (is '{close[0]}' a typo?)" if close else ""
            at = f"line {line}: " if line else ""
            raise InputError(f"{at}manifest needs a '{key}' {noun}{hint}; expected {expected}", path)


def write_manifest(dest: PathLike, samples: Iterable[Sample], relative_to: Optional[PathLike] = None,
                   protect: Optional[PathLike] = None) -> Path:
    """Write ``path,label,split`` CSV atomically (e.g. to record the exact split of a run).

    ``relative_to``: write paths relative to this folder (use the destination's folder so
    that :func:`discover` reads the file back anywhere). ``protect``: an input never overwritten.
    """
    from mmvgm.io.atomic import write_text_atomic

    base = Path(relative_to) if relative_to is not None else None
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["path", "label", "split"])
    for s in samples:
        p = Path(s.path)
        if base is not None:
            try:
                p = Path(os.path.relpath(p, base))
            except ValueError:  # another drive on Windows
                pass
        writer.writerow([p.as_posix(), s.label or "", s.split or ""])
    return write_text_atomic(dest, buffer.getvalue(), protect=protect)
