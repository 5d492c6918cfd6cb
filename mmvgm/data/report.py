"""Look at a dataset before training: counts per label and split, copies, unreadable files, the split.

``mmvgm dataset`` prints this; ``mmvgm train`` computes the same split from the same seed.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

from mmvgm.data.labels import LabelSet, require_all_classes
from mmvgm.data.splits import (DEFAULT_RATIOS, DEFAULT_SEED, DUPLICATE_POLICIES, Ratios, _ratios,
                               find_copies, split_counts, split_samples)
from mmvgm.data.tasks import FAKE, REAL, map_label, relabel, split_used, task_label_set
from mmvgm.errors import InputError, PathLike
from mmvgm.io.discovery import LabelsArg, Sample, as_label_set, discover, write_manifest


@dataclass
class DatasetReport:
    """What ``mmvgm dataset`` found. ``splits`` hold the samples a task uses with their *data*
    labels (as ``mmvgm train`` splits them); ``counts`` are in the label set's classes."""

    source: str
    labels: LabelSet
    seed: int
    ratios: Dict[str, float]
    splits: Dict[str, List[Sample]]
    duplicates: List[Tuple[Sample, Sample]] = field(default_factory=list)  # same label, two splits
    unused: Dict[str, int] = field(default_factory=dict)  # data labels the task leaves out
    task: Optional[str] = None  # whose label mapping applies (None: labels as they are)
    conflicts: List[Tuple[Sample, Sample]] = field(default_factory=list)  # same content, two labels
    unreadable: Optional[List[Tuple[str, str]]] = None  # (path, reason); None: not checked
    checked: int = 0  # files decoded by the check

    @property
    def counts(self) -> Dict[str, Dict[str, int]]:
        return split_counts({name: self.as_trained(items) for name, items in self.splits.items()}, self.labels)

    @property
    def total(self) -> int:
        return sum(len(v) for v in self.splits.values())

    def as_trained(self, samples: Sequence[Sample]) -> List[Sample]:
        """``samples`` with the labels the task trains them as (e.g. ``gen-blur`` as ``fake``)."""
        return list(samples) if self.task is None else relabel(samples, self.task, self.labels)

    @property
    def mapping(self) -> List[Tuple[str, Optional[str], int]]:
        """``(data label, class it trains as or None when left out, videos)`` per data label."""
        used: Dict[str, int] = {}
        for s in (s for items in self.splits.values() for s in items):
            used[s.label] = used.get(s.label, 0) + 1
        rows = [(label, label if self.task is None else map_label(self.task, label, self.labels.names), n)
                for label, n in used.items()]
        order = {name: i for i, name in enumerate(self.labels.names)}  # class order, then label
        rows.sort(key=lambda row: (order.get(row[1], len(order)), str(row[0])))
        return rows + [(label, None, n) for label, n in self.unused.items()]

    @property
    def errors(self) -> List[str]:
        """Error-level findings, one line each: contradicting labels and unreadable files."""
        lines = [f"same content under two labels, {a.label} and {b.label}: {a.path} and {b.path}"
                 for a, b in self.conflicts]
        return lines + [f"{path}: {reason}" for path, reason in self.unreadable or []]

    def to_dict(self) -> dict:
        out = {"source": self.source, "labels": self.labels.name, "classes": self.labels.names,
               "task": self.task, "seed": self.seed, "ratios": self.ratios, "total": self.total,
               "counts": self.counts,
               "mapping": [{"label": label, "as": trained, "videos": n} for label, trained, n in self.mapping],
               "duplicates": [{"a": a.path, "a_split": a.split, "b": b.path, "b_split": b.split}
                              for a, b in self.duplicates],
               "label_conflicts": [{"a": a.path, "a_label": a.label, "b": b.path, "b_label": b.label}
                                   for a, b in self.conflicts],
               "unused": self.unused}
        if self.unreadable is not None:
            out["checked"] = self.checked
            out["unreadable"] = [{"path": p, "reason": r} for p, r in self.unreadable]
        return out

    def write_split(self, dest: PathLike) -> Path:
        """The split as a ``path,label,split`` CSV next to ``dest`` (re-readable by ``discover``)."""
        dest = Path(dest)
        samples = [s for name in self.splits for s in self.splits[name]]
        protect = self.source if Path(self.source).is_file() else None
        return write_manifest(dest, samples, relative_to=dest.resolve().parent, protect=protect)


def dataset_report(source: PathLike, labels: LabelsArg = None, ratios: Ratios = DEFAULT_RATIOS,
                   seed: int = DEFAULT_SEED, duplicates: str = "warn", require_all: bool = False,
                   progress: bool = False, task: Optional[str] = None, check: bool = False,
                   workers: Optional[int] = None) -> DatasetReport:
    """Discover ``source``, split it (seeded, stratified) and look for copies.

    ``task`` (detect, trace, joint) maps data labels as ``mmvgm train --task`` does, with
    ``labels`` as its label file; without it, ``labels`` that are real/fake map as detect, a
    trace label set as trace, and other labels are kept as they are. Data labels the task does
    not use are counted in ``unused``. ``duplicates``: ``warn`` (list the same content in two
    splits and under two labels), ``refuse`` (``InputError`` for a cross-split copy) or ``off``
    (no hashing). ``require_all``: every class must appear in every non-empty-ratio split.
    ``check``: decode every file in ``workers`` processes (default: as scan) and list the
    unreadable ones.
    """
    if duplicates not in DUPLICATE_POLICIES:
        raise InputError(f"duplicates must be one of {', '.join(DUPLICATE_POLICIES)}, got '{duplicates}'")
    samples = discover(source)
    label_set, task = _label_space(source, samples, labels, task)
    used, unused = _used(source, samples, label_set, task)
    fractions = _ratios(ratios)
    splits = split_samples(used, ratios=fractions, seed=seed, duplicates="off")
    report = DatasetReport(str(source), label_set, int(seed), fractions, splits, unused=unused, task=task)
    if require_all:
        for name, fraction in fractions.items():
            if fraction > 0:
                require_all_classes(report.as_trained(splits[name]), label_set, where=f"the {name} split")
    if duplicates != "off":
        _find_copies(report, samples, duplicates, progress)
    if check:
        report.unreadable = check_decoding(samples, workers=workers, progress=progress)
        report.checked = len(samples)
    return report


def _label_space(source: PathLike, samples: Sequence[Sample], labels: LabelsArg,
                 task: Optional[str]) -> Tuple[LabelSet, Optional[str]]:
    """The label set the counts are in, and the task whose mapping applies (None: no mapping)."""
    if task is not None:
        return task_label_set(task, labels), task
    label_set = as_label_set(labels)
    if label_set is None:
        return LabelSet.from_names({s.label for s in samples if s.label is not None},
                                   name=Path(source).name or "dataset"), None
    if set(label_set.names) == {REAL, FAKE}:
        return label_set, "detect"
    return label_set, "trace" if label_set.task == "trace" else None


def _used(source: PathLike, samples: Sequence[Sample], label_set: LabelSet,
          task: Optional[str]) -> Tuple[List[Sample], Dict[str, int]]:
    if task is not None:
        used, unused = split_used(samples, task, label_set)
    else:  # a multilabel set: its classes and its negative label are its data
        used = [s for s in samples if label_set.is_known(s.label)]
        unused = dict(sorted(Counter(s.label for s in samples if not label_set.is_known(s.label)).items(),
                             key=lambda kv: str(kv[0])))
    if samples and not used:
        raise InputError(label_set.unknown_message(min(unused, key=str)), source)
    return used, unused


def _find_copies(report: DatasetReport, samples: Sequence[Sample], policy: str, progress: bool) -> None:
    """Cross-split copies (a warning, or refused) and copies under two labels as training maps
    them (an error: under detect, the same file in gen-a/ and gen-b/ is fake twice, no conflict)."""
    in_split = {(s.path, s.label): s for items in report.splits.values() for s in items}
    copies = find_copies([in_split.get((s.path, s.label), s) for s in samples], progress=progress)

    def trained(sample: Sample) -> Optional[str]:
        return sample.label if report.task is None else map_label(report.task, sample.label, report.labels.names)

    pairs = copies.across_splits + copies.across_labels
    report.conflicts = [(a, b) for a, b in copies.across_labels if trained(a) != trained(b)]
    report.duplicates = [(a, b) for a, b in pairs if trained(a) == trained(b) and a.split != b.split]
    if report.duplicates and policy == "refuse":
        a, b = report.duplicates[0]
        n = len(report.duplicates)
        more = f" (and {n - 1} more pair(s))" if n > 1 else ""
        raise InputError(f"same content in {a.split} and {b.split}: {a.path} and {b.path}{more}", report.source)


class _OnePixel:
    """The check's transform: one pixel per frame, so that workers send back whether a file
    decodes, not its frames (a 4K clip is hundreds of megabytes)."""

    def geometric(self, video: Any, layout: str = "channels_last") -> Any:
        return video[:, :1, :1].permute(0, 3, 1, 2).contiguous()


def check_decoding(samples: Sequence[Sample], workers: Optional[int] = None,
                   progress: bool = False) -> List[Tuple[str, str]]:
    """``(path, reason)`` of each sample that ``VideoDataset`` cannot read, in sample order.

    Each file is read as training reads it (the dataset's default clip: 16 frames from the first), in
    ``workers`` processes (default: ``runtime.default_decode_workers``, as scan; 0: here).
    """
    from mmvgm.data.dataset import SkipLog, VideoDataset, make_loader
    from mmvgm.progress import make_progress
    from mmvgm.runtime import default_decode_workers

    workers = default_decode_workers() if workers is None else int(workers)
    dataset = VideoDataset([Sample(s.path, None) for s in samples], transform=_OnePixel())
    skipped = SkipLog(say=lambda _message: None)  # listed once at the end, not as they come
    loader = make_loader(dataset, batch_size=1, workers=min(workers, len(dataset)), pin_memory=False,
                         skip_log=skipped)
    with make_progress(disable=not progress) as bar:
        task = bar.add_task("decoding", total=len(dataset))
        for batch in loader:
            bar.advance(task, len(batch.items))
    return list(skipped.bad.items())


def parse_ratios(text: Optional[str]) -> Tuple[float, ...]:
    """``"0.8,0.1,0.1"`` or ``"80/10/10"`` -> fractions summing to 1."""
    if text is None:
        return DEFAULT_RATIOS
    parts = [p for p in text.replace("/", ",").replace(":", ",").split(",") if p.strip()]
    try:
        values = [float(p) for p in parts]
    except ValueError:
        raise InputError(f"ratios must be numbers like 0.8,0.1,0.1 or 80/10/10, got '{text}'") from None
    total = sum(values)
    if total > 1.0 + 1e-6 and abs(total - 100) < 1e-6:
        values = [v / 100 for v in values]
    return tuple(values)
