"""Seeded, stratified train/val/test splits and a content-hash duplicate check across them.

* Stratified: each label is split on its own with the same ratios, so class balance holds in
  every split, and every class appears in every split with a non-zero ratio whenever it has
  at least as many samples as there are such splits.
* Deterministic across runs and platforms: each class's samples are sorted by POSIX path, then
  permuted by numpy's PCG64 seeded with ``(seed, sha256(label))``. Adding a class does not
  reshuffle the others.
* An explicit ``split`` (manifest column) is honoured; only samples without one are split.
* Duplicates: the same content (sha256 of the file bytes; for a frame directory, of its
  frames in natural order) in two different splits leaks test data into training.
  ``duplicates="warn"`` logs each pair, ``"refuse"`` raises ``InputError`` naming it, ``"off"``
  skips the check. Only files whose sizes collide across splits are hashed. The same content
  under two labels (:func:`find_copies`) is a contradiction that ``mmvgm dataset`` reports.
"""
from __future__ import annotations

import hashlib
import logging
import math
from collections import defaultdict
from pathlib import Path, PurePath
from typing import Dict, List, Mapping, NamedTuple, Optional, Sequence, Tuple, Union

import numpy as np

from mmvgm.data.labels import LabelSet
from mmvgm.errors import InputError
from mmvgm.io.discovery import SPLITS, Sample
from mmvgm.io.frames_dir import list_frames as _frames
from mmvgm.progress import track
from mmvgm.runtime import file_sha256

log = logging.getLogger("mmvgm.data")

DEFAULT_SEED = 2024
DEFAULT_RATIOS = (0.8, 0.1, 0.1)
DUPLICATE_POLICIES = ("warn", "refuse", "off")

Ratios = Union[Sequence[float], Mapping[str, float]]


def split_samples(samples: Sequence[Sample], ratios: Ratios = DEFAULT_RATIOS, seed: int = DEFAULT_SEED,
                  duplicates: str = "warn", progress: bool = False) -> Dict[str, List[Sample]]:
    """``{"train": [...], "val": [...], "test": [...]}``, each list sorted by path.

    ``ratios``: (train, val[, test]) or a mapping with those keys, summing to 1.
    Returned samples carry their split in ``.split``.
    """
    if duplicates not in DUPLICATE_POLICIES:
        raise InputError(f"duplicates must be one of {', '.join(DUPLICATE_POLICIES)}, got '{duplicates}'")
    fractions = _ratios(ratios)
    out: Dict[str, List[Sample]] = {name: [] for name in SPLITS}
    by_label: Dict[Optional[str], List[Sample]] = defaultdict(list)
    for sample in samples:
        if sample.split is not None:
            if sample.split not in out:
                raise InputError(f"unknown split '{sample.split}' (use train, val or test)", sample.path)
            out[sample.split].append(sample)
        else:
            by_label[sample.label].append(sample)
    explicit = sum(len(v) for v in out.values())
    if explicit and by_label:
        log.info("honouring the explicit split of %d sample(s); splitting the other %d by ratio",
                 explicit, sum(len(v) for v in by_label.values()))
    for label in sorted(by_label, key=lambda x: "" if x is None else x):
        group = sorted(by_label[label], key=_path_key)
        counts = allocate(len(group), fractions)
        if len(group) < sum(1 for f in fractions.values() if f > 0):
            missing = [name for name, f in fractions.items() if f > 0 and counts[name] == 0]
            log.warning("class '%s' has only %d sample(s): it is missing from %s", label, len(group),
                        ", ".join(missing))
        order = np.random.default_rng([int(seed) % 2**63, _stable_int(label)]).permutation(len(group))
        cursor = 0
        for name in SPLITS:
            for i in order[cursor:cursor + counts[name]]:
                s = group[int(i)]
                out[name].append(Sample(s.path, s.label, name))
            cursor += counts[name]
    out = {name: sorted(items, key=_path_key) for name, items in out.items()}
    if duplicates != "off":
        check_duplicates(out, policy=duplicates, progress=progress)
    return out


def allocate(n: int, fractions: Mapping[str, float]) -> Dict[str, int]:
    """Split ``n`` items by ``fractions`` (largest remainder), at least one per non-zero split when possible."""
    names = list(fractions)
    exact = {k: n * fractions[k] for k in names}
    counts = {k: int(math.floor(exact[k] + 1e-9)) for k in names}
    remainder = n - sum(counts.values())
    by_fraction = sorted(names, key=lambda k: (-(exact[k] - counts[k]), names.index(k)))
    for k in by_fraction[:remainder]:
        counts[k] += 1
    active = [k for k in names if fractions[k] > 0]
    if n >= len(active):
        for k in active:
            if counts[k] == 0:
                donor = max(active, key=lambda d: (counts[d], -names.index(d)))
                counts[donor] -= 1
                counts[k] += 1
    else:  # too few samples: fill train, then val, then test
        counts = {k: 0 for k in names}
        for k in active[:n]:
            counts[k] = 1
    return counts


def check_duplicates(splits: Mapping[str, Sequence[Sample]], policy: str = "warn",
                     progress: bool = False) -> List[Tuple[Sample, Sample]]:
    """Pairs of samples with identical content in different splits; warn or refuse per ``policy``."""
    if policy not in DUPLICATE_POLICIES:
        raise InputError(f"duplicate policy must be one of {', '.join(DUPLICATE_POLICIES)}, got '{policy}'")
    if policy == "off":
        return []
    pairs = find_duplicates(splits, progress=progress)
    for a, b in pairs:
        message = f"same content in {a.split} and {b.split}: {a.path} and {b.path}"
        if policy == "refuse":
            more = f" (and {len(pairs) - 1} more pair(s))" if len(pairs) > 1 else ""
            raise InputError(message + more + "; remove the copies, or pass duplicates='warn'")
        log.warning("duplicate across splits: %s", message)
    return pairs


def find_duplicates(splits: Mapping[str, Sequence[Sample]], progress: bool = False) -> List[Tuple[Sample, Sample]]:
    """Pairs of samples with identical content in different splits (earlier split first)."""
    samples = [s if s.split == name else Sample(s.path, s.label, name)
               for name, items in splits.items() for s in items]
    return find_copies(samples, labels=False, progress=progress).across_splits


class Copies(NamedTuple):
    """Pairs of samples with identical content, ``(a, b)`` with ``a`` first in split order, then path.

    ``across_splits``: in two different splits (test data leaking into training);
    ``across_labels``: under two different labels, whatever their splits (a contradiction:
    one video cannot be, say, both real and generated)."""

    across_splits: List[Tuple[Sample, Sample]]
    across_labels: List[Tuple[Sample, Sample]]


def find_copies(samples: Sequence[Sample], labels: bool = True, progress: bool = False) -> Copies:
    """Identical content (:func:`content_hash`) in two splits and, with ``labels``, under two labels.

    Samples without a split or label take no part in that comparison. Only samples whose size
    matches one in another split (or under another label) are hashed, so a dataset without
    copies is rarely read at all.
    """
    def apart(s: Sample) -> tuple:
        return (s.split, s.label) if labels else (s.split,)

    by_size: Dict[Tuple[int, int], List[Sample]] = defaultdict(list)
    for sample in samples:
        by_size[_size_signature(Path(sample.path))].append(sample)
    candidates = [s for group in by_size.values() if len({apart(x) for x in group}) > 1 for s in group]
    by_hash: Dict[str, List[Sample]] = defaultdict(list)
    for sample in track(candidates, "hashing for duplicates", disable=not progress or len(candidates) < 50):
        by_hash[content_hash(sample.path)].append(sample)
    splits: List[Tuple[Sample, Sample]] = []
    labelled: List[Tuple[Sample, Sample]] = []
    for group in by_hash.values():
        group = sorted(group, key=lambda s: (SPLITS.index(s.split) if s.split in SPLITS else 9, s.path))
        for i, a in enumerate(group):
            for b in group[i + 1:]:
                if a.split is not None and b.split is not None and a.split != b.split:
                    splits.append((a, b))
                if labels and a.label is not None and b.label is not None and a.label != b.label:
                    labelled.append((a, b))
    return Copies(splits, labelled)


def content_hash(path: Union[str, Path]) -> str:
    """sha256 of a file's bytes; for a frame directory, over its frames' digests in natural order."""
    path = Path(path)
    if not path.is_dir():
        try:
            return file_sha256(path)
        except OSError as exc:
            raise InputError(f"cannot read for hashing: {exc.strerror or exc}", path) from None
    digest = hashlib.sha256()
    for frame in _frames(path):
        digest.update(bytes.fromhex(file_sha256(frame)))
    return digest.hexdigest()


def split_counts(splits: Mapping[str, Sequence[Sample]],
                 labels: Optional[Union[LabelSet, Sequence[str]]] = None) -> Dict[str, Dict[str, int]]:
    """``{split: {label: n}}`` with every label present (0 when empty), in label-set order."""
    names = list(labels.names if isinstance(labels, LabelSet) else labels) if labels is not None else \
        sorted({s.label for items in splits.values() for s in items if s.label is not None})
    table = {}
    for split, items in splits.items():
        row = {name: 0 for name in names}
        for s in items:
            if s.label is not None:
                row[s.label] = row.get(s.label, 0) + 1
        table[split] = row
    return table


def _ratios(ratios: Ratios) -> Dict[str, float]:
    if isinstance(ratios, Mapping):
        unknown = [k for k in ratios if k not in SPLITS]
        if unknown:
            raise InputError(f"unknown split name(s) in ratios: {', '.join(map(str, unknown))}")
        given = [ratios.get(name, 0.0) for name in SPLITS]
    else:
        given = ratios
    try:
        values = [float(r) for r in given]
    except (TypeError, ValueError):
        raise InputError(f"split ratios must be numbers (train, val[, test]), got {ratios!r}") from None
    if len(values) not in (2, 3):  # a mapping always gives 3
        raise InputError(f"split ratios must be (train, val) or (train, val, test), got {len(values)} values")
    values += [0.0] * (3 - len(values))
    if any(v < 0 or not math.isfinite(v) for v in values):
        raise InputError(f"split ratios must be non-negative numbers, got {values}")
    if abs(sum(values) - 1.0) > 1e-6:
        raise InputError(f"split ratios must sum to 1, got {values} (sum {sum(values):g})")
    if values[0] <= 0:
        raise InputError("the train ratio must be > 0")
    return dict(zip(SPLITS, values))


def _path_key(sample: Sample) -> str:
    # '/' on every OS: a Windows checkout of the same tree sorts, hence splits, identically
    return PurePath(sample.path).as_posix()


def _stable_int(label: Optional[str]) -> int:
    return int.from_bytes(hashlib.sha256(("" if label is None else label).encode("utf-8")).digest()[:8], "big")


def _size_signature(path: Path) -> Tuple[int, int]:
    try:
        if path.is_dir():
            frames = _frames(path)
            return len(frames), sum(p.stat().st_size for p in frames)
        return 1, path.stat().st_size
    except OSError as exc:
        raise InputError(f"cannot read: {exc.strerror or exc}", path) from None


def summarize(splits: Mapping[str, Sequence[Sample]], labels: Optional[Union[LabelSet, Sequence[str]]] = None
              ) -> str:
    """A small plain-text table of counts per split and label (for logs and CLI output)."""
    table = split_counts(splits, labels)
    names = next(iter(table.values())).keys() if table else []
    width = max([len(n) for n in names] + [5])
    lines = [f"{'label':<{width}}  " + "  ".join(f"{s:>6}" for s in table)]
    for name in names:
        lines.append(f"{name:<{width}}  " + "  ".join(f"{table[s][name]:>6}" for s in table))
    return "\n".join(lines)
