"""Look at a dataset before training: counts per label and split, duplicates, the split itself.

``mmvgm dataset`` prints this; ``mmvgm train`` computes the same split from the same seed.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Tuple

from mmvgm.data.labels import LabelSet, require_all_classes
from mmvgm.data.splits import (DEFAULT_RATIOS, DEFAULT_SEED, DUPLICATE_POLICIES, Ratios, _ratios,
                               find_duplicates, split_counts, split_samples)
from mmvgm.errors import InputError, PathLike
from mmvgm.io.discovery import LabelsArg, Sample, as_label_set, discover, write_manifest


@dataclass
class DatasetReport:
    source: str
    labels: LabelSet
    seed: int
    ratios: Dict[str, float]
    splits: Dict[str, List[Sample]]
    duplicates: List[Tuple[Sample, Sample]] = field(default_factory=list)
    unused: Dict[str, int] = field(default_factory=dict)  # data labels outside the label set

    @property
    def counts(self) -> Dict[str, Dict[str, int]]:
        return split_counts(self.splits, self.labels)

    @property
    def total(self) -> int:
        return sum(len(v) for v in self.splits.values())

    def to_dict(self) -> dict:
        return {"source": self.source, "labels": self.labels.name, "classes": self.labels.names,
                "seed": self.seed, "ratios": self.ratios, "total": self.total, "counts": self.counts,
                "duplicates": [{"a": a.path, "a_split": a.split, "b": b.path, "b_split": b.split}
                               for a, b in self.duplicates],
                "unused": self.unused}

    def write_split(self, dest: PathLike) -> Path:
        """The split as a ``path,label,split`` CSV next to ``dest`` (re-readable by ``discover``)."""
        dest = Path(dest)
        samples = [s for name in self.splits for s in self.splits[name]]
        protect = self.source if Path(self.source).is_file() else None
        return write_manifest(dest, samples, relative_to=dest.resolve().parent, protect=protect)


def dataset_report(source: PathLike, labels: LabelsArg = None, ratios: Ratios = DEFAULT_RATIOS,
                   seed: int = DEFAULT_SEED, duplicates: str = "warn", require_all: bool = False,
                   progress: bool = False) -> DatasetReport:
    """Discover ``source``, split it (seeded, stratified) and look for cross-split duplicates.

    ``duplicates``: ``warn`` (listed in the report), ``refuse`` (``InputError`` naming a pair) or
    ``off``. Data labels outside ``labels`` are left out and counted in ``unused``. ``require_all``: every class of ``labels`` must appear in every non-empty-ratio split.
    """
    if duplicates not in DUPLICATE_POLICIES:
        raise InputError(f"duplicates must be one of {', '.join(DUPLICATE_POLICIES)}, got '{duplicates}'")
    label_set = as_label_set(labels)
    samples = discover(source)
    unused: Dict[str, int] = {}
    if label_set is not None:  # e.g. real/ beside the generators of a trace label set: left out, and said so
        for s in samples:
            if not label_set.is_known(s.label):
                unused[s.label] = unused.get(s.label, 0) + 1
        if len(unused) == len({s.label for s in samples}):
            raise InputError(label_set.unknown_message(sorted(unused)[0]), source)
        samples = [s for s in samples if label_set.is_known(s.label)]
    else:
        label_set = LabelSet.from_names({s.label for s in samples if s.label is not None},
                                        name=Path(source).name or "dataset")
    fractions = _ratios(ratios)
    splits = split_samples(samples, ratios=fractions, seed=seed, duplicates="off")
    if require_all:
        for name, fraction in fractions.items():
            if fraction > 0:
                require_all_classes(splits[name], label_set, where=f"the {name} split")
    pairs = find_duplicates(splits, progress=progress) if duplicates != "off" else []
    if pairs and duplicates == "refuse":
        a, b = pairs[0]
        more = f" (and {len(pairs) - 1} more pair(s))" if len(pairs) > 1 else ""
        raise InputError(f"same content in {a.split} and {b.split}: {a.path} and {b.path}{more}", source)
    return DatasetReport(str(source), label_set, int(seed), fractions, splits, pairs, dict(sorted(unused.items())))


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
