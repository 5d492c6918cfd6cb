"""Datasets: find labelled videos (folder layout or manifest) and load them as uint8 clips.

Sources accepted by :func:`discover`:

* a folder ``root/<label>/**``: every video file (by extension) and every frame directory
  (a folder holding png/jpg frames) below ``root/<label>/`` is one sample of ``label``;
* a CSV manifest with the header ``path,label[,split]`` (extra columns are ignored);
* a JSONL manifest, one object per line with the same keys.

Relative manifest paths are resolved against the manifest's folder. ``split`` is one of
``train``, ``val`` (``valid``/``validation``/``dev``), ``test`` or empty.

:class:`VideoDataset` reads clips with ``mmvgm.io.read_clip`` inside ``__getitem__`` (nothing
is opened in ``__init__``, so it works in DataLoader workers), keeps them uint8 and applies the
transform's geometric stage so clips stack. A file that cannot be read becomes a
:class:`BadSample`; :func:`collate_skip_bad` drops it and the :class:`Batch` lists it in
``skipped``. :func:`make_loader` builds a seeded DataLoader whose :class:`SkipLog` reports
each bad path once per loader (across workers and epochs) and never stops the epoch.
"""
from __future__ import annotations

import csv
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import (Any, Callable, Dict, Iterable, Iterator, List, Mapping, NamedTuple, Optional, Sequence,
                    Tuple, Union)

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from mmvgm.data.labels import LabelSet
from mmvgm.errors import InputError, MMVGMError, PathLike
from mmvgm.io.paths import IMAGE_EXTENSIONS
from mmvgm.io.paths import VIDEO_EXTENSIONS as _VIDEO_EXTENSIONS

log = logging.getLogger("mmvgm.data")

VIDEO_EXTENSIONS = frozenset(_VIDEO_EXTENSIONS)
FRAME_EXTENSIONS = frozenset(IMAGE_EXTENSIONS)
MANIFEST_EXTENSIONS = (".csv", ".jsonl", ".ndjson")

SPLITS = ("train", "val", "test")
_SPLIT_ALIASES = {"train": "train", "training": "train", "val": "val", "valid": "val",
                  "validation": "val", "dev": "val", "test": "test", "testing": "test"}

LabelsArg = Union[LabelSet, PathLike, Sequence[str], None]


@dataclass(frozen=True, order=True)
class Sample:
    """One video (file or frame directory) with its label name and optional fixed split."""

    path: str
    label: Optional[str]
    split: Optional[str] = None


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


def as_label_set(labels: LabelsArg) -> Optional[LabelSet]:
    if labels is None or isinstance(labels, LabelSet):
        return labels
    if isinstance(labels, (list, tuple)):
        return LabelSet("labels", list(labels))
    return LabelSet.load(labels)


# -- discovery ------------------------------------------------------------------------------
def discover(root_or_manifest: PathLike, labels: LabelsArg = None, on_missing: str = "error") -> List[Sample]:
    """All samples of a folder dataset or a CSV/JSONL manifest, sorted by path.

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
        raise InputError("dataset not found (expected a folder root/<label>/... or a .csv/.jsonl manifest)", path)
    if path.is_dir():
        samples = _discover_folder(path, label_set)
    elif path.suffix.lower() in MANIFEST_EXTENSIONS:
        samples = _read_manifest(path, label_set, on_missing)
    else:
        raise InputError(f"not a dataset: expected a folder or a manifest ({', '.join(MANIFEST_EXTENSIONS)})", path)
    if not samples:
        raise InputError("no videos found in the dataset", path)
    return sorted(samples)


def _discover_folder(root: Path, label_set: Optional[LabelSet]) -> List[Sample]:
    label_dirs = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not label_dirs:
        raise InputError("no label folders: expected root/<label>/<videos>", root)
    if label_set is not None:
        for d in label_dirs:
            if not label_set.is_known(d.name):
                raise InputError(label_set.unknown_message(d.name), d)
    samples: List[Sample] = []
    for label_dir in label_dirs:
        found, loose_images = _videos_under(label_dir)
        if loose_images:
            log.warning("%s: ignoring %d image file(s) lying beside videos or directly in the label folder "
                        "(put the frames of one video in a folder of their own)", label_dir, loose_images)
        samples.extend(Sample(str(p), label_dir.name) for p in found)
    return samples


def _videos_under(label_dir: Path) -> Tuple[List[Path], int]:
    """Videos and frame directories below ``label_dir`` (not descending into frame dirs)."""
    found: List[Path] = []
    loose_images = 0
    for dirpath, dirnames, filenames in os.walk(label_dir):
        current = Path(dirpath)
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        visible = [f for f in filenames if not f.startswith(".")]
        frames = [f for f in visible if Path(f).suffix.lower() in FRAME_EXTENSIONS]
        videos = sorted(f for f in visible if Path(f).suffix.lower() in VIDEO_EXTENSIONS)
        # a folder of frames is one video; images beside videos are thumbnails, not frames
        if frames and not videos and current != label_dir:
            found.append(current)
            dirnames[:] = []
            continue
        loose_images += len(frames)
        found.extend(current / f for f in videos)
    return found, loose_images


def _read_manifest(path: Path, label_set: Optional[LabelSet], on_missing: str) -> List[Sample]:
    rows = _jsonl_rows(path) if path.suffix.lower() in (".jsonl", ".ndjson") else _csv_rows(path)
    base = path.parent
    by_path: Dict[str, Sample] = {}
    missing: List[str] = []
    for line, row in rows:
        where = f"{path}: line {line}"
        raw_path = str(row.get("path") or "").strip()
        label = str(row.get("label") if row.get("label") is not None else "").strip()
        if not raw_path:
            raise InputError("empty path", where)
        if not label:
            raise InputError("empty label", where)
        if label_set is not None and not label_set.is_known(label):
            raise InputError(label_set.unknown_message(label), where)
        split = normalize_split(row.get("split"), where)
        resolved = Path(raw_path).expanduser()
        if not resolved.is_absolute():
            resolved = base / resolved
        resolved = Path(os.path.normpath(resolved))
        if not resolved.exists():
            missing.append(f"{raw_path} (line {line})")
            continue
        sample = Sample(str(resolved), label, split)
        previous = by_path.get(sample.path)
        if previous is not None:
            if previous.label != label:
                raise InputError(f"'{raw_path}' is listed twice with different labels "
                                 f"('{previous.label}' and '{label}')", where)
            log.warning("%s: '%s' is listed twice; keeping the first entry", where, raw_path)
            continue
        by_path[sample.path] = sample
    if missing:
        shown = "; ".join(missing[:5]) + (f"; and {len(missing) - 5} more" if len(missing) > 5 else "")
        message = f"{len(missing)} listed file(s) do not exist: {shown}"
        if on_missing == "error":
            raise InputError(message, path)
        log.warning("%s: %s (skipped)", path, message)
    return list(by_path.values())


def _csv_rows(path: Path) -> Iterator[Tuple[int, Mapping[str, Any]]]:
    try:
        with open(path, "r", encoding="utf-8-sig", newline="") as fh:
            reader = csv.reader(fh)
            header = next(reader, None)
            if header is None:
                raise InputError("empty manifest", path)
            columns = [h.strip().lower() for h in header]
            _require_columns(columns, path)
            for row in reader:
                if not any(cell.strip() for cell in row):
                    continue
                yield reader.line_num, dict(zip(columns, row))
    except UnicodeDecodeError:
        raise InputError("manifest is not UTF-8 text", path) from None
    except csv.Error as exc:
        raise InputError(f"malformed CSV: {exc}", path) from None


def _jsonl_rows(path: Path) -> Iterator[Tuple[int, Mapping[str, Any]]]:
    try:
        with open(path, "r", encoding="utf-8-sig") as fh:
            for line_no, line in enumerate(fh, start=1):
                if not line.strip():
                    continue
                try:
                    row = json.loads(line)
                except json.JSONDecodeError as exc:
                    raise InputError(f"line {line_no}: invalid JSON ({exc.msg})", path) from None
                if not isinstance(row, dict):
                    raise InputError(f"line {line_no}: expected a JSON object with path and label", path)
                _require_columns([str(k).lower() for k in row], path, line_no)
                yield line_no, {str(k).lower(): v for k, v in row.items()}
    except UnicodeDecodeError:
        raise InputError("manifest is not UTF-8 text", path) from None


def _require_columns(columns: Sequence[str], path: Path, line: Optional[int] = None) -> None:
    import difflib

    for required in ("path", "label"):
        if required not in columns:
            close = difflib.get_close_matches(required, list(columns), n=1)
            hint = f" (is '{close[0]}' a typo?)" if close else ""
            at = f"line {line}: " if line else ""
            raise InputError(f"{at}manifest needs a '{required}' column{hint}; expected path,label[,split]", path)


def write_manifest(dest: PathLike, samples: Iterable[Sample], relative_to: Optional[PathLike] = None,
                   protect: Optional[PathLike] = None) -> Path:
    """Write ``path,label,split`` CSV atomically (e.g. to record the exact split of a run).

    ``relative_to``: write paths relative to this folder (use the destination's folder so
    that :func:`discover` reads the file back anywhere). ``protect``: an input never overwritten.
    """
    import io

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


# -- torch dataset --------------------------------------------------------------------------
class BadSample(NamedTuple):
    """What ``VideoDataset`` returns for a file it cannot read; ``collate_skip_bad`` drops it."""

    path: str
    reason: str


class Batch(NamedTuple):
    """A collated batch. ``clips`` is uint8 (B,T,C,H,W), or ``None`` when every item was bad."""

    clips: Optional[torch.Tensor]
    labels: torch.Tensor
    paths: List[str]
    skipped: List[Tuple[str, str]]

    @property
    def size(self) -> int:
        return len(self.paths)


def _default_reader(path: str, **kwargs: Any) -> np.ndarray:
    from mmvgm.io import read_clip

    return read_clip(path, **kwargs)


class VideoDataset(Dataset):
    """``(uint8 clip (T,C,S,S), label index, path)`` per sample; ``BadSample`` for unreadable files.

    ``label_to_index``: a dict name -> index or a :class:`LabelSet`. Samples without a label
    (``label=None``, e.g. files to scan) get index -1. ``reader`` defaults to
    ``mmvgm.io.read_clip`` (must be a picklable top-level function for DataLoader workers).
    """

    def __init__(self, samples: Sequence[Sample], label_to_index: Union[Mapping[str, int], LabelSet],
                 num_frames: int = 16, sampling: str = "consecutive", transform: Optional[Any] = None,
                 start: int = 0, backend: str = "auto", max_pixels: Optional[int] = None,
                 max_frames: Optional[int] = None, reader: Optional[Callable[..., np.ndarray]] = None) -> None:
        if isinstance(label_to_index, LabelSet):
            label_to_index = label_to_index.label_to_index
        self.samples = list(samples)
        self.label_to_index = dict(label_to_index)
        for s in self.samples:
            if s.label is not None and s.label not in self.label_to_index:
                known = ", ".join(self.label_to_index)
                raise InputError(f"label '{s.label}' is not one of the model's labels: {known}", s.path)
        self.transform = transform
        self.reader = reader or _default_reader
        self.read_kwargs = {"num_frames": int(num_frames), "sampling": sampling, "start": int(start),
                            "backend": backend, "max_pixels": max_pixels, "max_frames": max_frames}

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> Union[Tuple[torch.Tensor, int, str], BadSample]:
        sample = self.samples[index]
        target = -1 if sample.label is None else self.label_to_index[sample.label]
        try:
            clip = self.reader(sample.path, **self.read_kwargs)
            video = torch.from_numpy(np.ascontiguousarray(clip))  # (T,H,W,C) uint8
            if self.transform is not None:
                video = self.transform.geometric(video, layout="channels_last")
            else:
                video = video.permute(0, 3, 1, 2).contiguous()
        except MMVGMError as exc:
            return BadSample(sample.path, exc.message)
        except Exception as exc:  # noqa: BLE001 - one broken file must not kill a training epoch
            return BadSample(sample.path, f"{type(exc).__name__}: {exc}")
        return video, target, sample.path


def collate_skip_bad(items: Sequence[Any]) -> Batch:
    """Stack the good items (uint8), drop ``BadSample`` markers and list them in ``skipped``."""
    good = [item for item in items if not isinstance(item, BadSample)]
    skipped = [(item.path, item.reason) for item in items if isinstance(item, BadSample)]
    if not good:
        return Batch(None, torch.empty(0, dtype=torch.long), [], skipped)
    shapes = {tuple(item[0].shape) for item in good}
    if len(shapes) > 1:
        raise InputError(f"clips in one batch have different shapes {sorted(shapes)}; "
                         "give the dataset a transform with a crop so they stack")
    clips = torch.stack([item[0] for item in good])
    labels = torch.tensor([int(item[1]) for item in good], dtype=torch.long)
    return Batch(clips, labels, [item[2] for item in good], skipped)


class SkipLog:
    """Remembers bad files; logs each one once (a warning on ``mmvgm.data``)."""

    def __init__(self, logger: Optional[logging.Logger] = None) -> None:
        self.bad: Dict[str, str] = {}
        self.logger = logger or log

    def update(self, skipped: Iterable[Tuple[str, str]]) -> List[Tuple[str, str]]:
        """Record ``(path, reason)`` pairs; returns (and logs) the ones not seen before."""
        new = []
        for path, reason in skipped:
            if path not in self.bad:
                self.bad[path] = reason
                new.append((path, reason))
                self.logger.warning("skipping unreadable file %s: %s", path, reason)
        return new

    def __len__(self) -> int:
        return len(self.bad)


class SkipBadLoader(DataLoader):
    """A DataLoader whose batches' ``skipped`` entries are reported once through ``skip_log``.

    If a wrapper (e.g. ``accelerate.prepare``) rebuilds the loader, call
    ``skip_log.update(batch.skipped)`` in the loop instead; the batches still carry them.
    """

    skip_log: SkipLog

    def __iter__(self) -> Iterator[Batch]:  # type: ignore[override]
        for batch in super().__iter__():
            if isinstance(batch, Batch) and batch.skipped:
                self.skip_log.update(batch.skipped)
            yield batch


def _seed_worker(worker_id: int) -> None:
    import random

    seed = torch.initial_seed() % 2**32  # distinct per worker, derived from the loader's generator
    np.random.seed(seed)
    random.seed(seed)


def make_loader(dataset: Dataset, batch_size: int, shuffle: bool = False, workers: int = 0,
                seed: int = 2024, drop_last: bool = False, pin_memory: Optional[bool] = None,
                persistent_workers: bool = False, skip_log: Optional[SkipLog] = None,
                multiprocessing_context: Optional[str] = None) -> SkipBadLoader:
    """A seeded DataLoader with :func:`collate_skip_bad`; same ``seed`` -> same order.

    ``multiprocessing_context``: ``None`` (``$MMVGM_WORKER_START``, else the platform default,
    fork on Linux) or e.g. ``"forkserver"``/``"spawn"`` when the main process already runs CUDA
    or other threads (see ``runtime.worker_start_method``).
    """
    if batch_size < 1:
        raise InputError(f"batch size must be >= 1, got {batch_size}")
    if workers < 0:
        raise InputError(f"workers must be >= 0, got {workers}")
    if workers > 0:
        from mmvgm.runtime import prepare_decoding_workers

        method = prepare_decoding_workers()
        multiprocessing_context = multiprocessing_context or method
    generator = torch.Generator()
    generator.manual_seed(int(seed))
    loader = SkipBadLoader(
        dataset, batch_size=batch_size, shuffle=shuffle, num_workers=workers, collate_fn=collate_skip_bad,
        generator=generator, worker_init_fn=_seed_worker if workers > 0 else None, drop_last=drop_last,
        pin_memory=torch.cuda.is_available() if pin_memory is None else pin_memory,
        persistent_workers=persistent_workers and workers > 0,
        multiprocessing_context=multiprocessing_context if workers > 0 else None,
    )
    loader.skip_log = skip_log if skip_log is not None else SkipLog()
    return loader
